"""Live peer test against Hugging Face ``transformers`` (a test-only
dependency): a randomly initialised ``SwinForImageClassification`` of Swin-T
size, converted with :func:`swinlab.weights.to_swinlab`, must give the same
logits and attention probabilities as swinlab's model; and swinlab weights
exported with :func:`swinlab.weights.swinlab_to_hf` must load back into
transformers.

Padding (non-square 256x320): both pad each block's normalised map to a
window multiple and build the shift mask on the padded size. They differ in
one respect, which the tests pin down: swinlab (like the official code and
timm) applies the "map not larger than the window -> no shift" rule at
construction for ``img_size``, so a model built for 224 keeps its last stage
(7x7 there) unshifted at every size; transformers applies it at run time and
*mutates* the block (``SwinLayer.set_shift_and_window_size``), so a fresh HF
model shifts stage 4 at 256x320 (8x10 map) while one that has already run at
224 does not. A swinlab model built with ``img_size=(256, 320)`` matches the
fresh HF model; one built for 224 matches the HF model that ran at 224 first.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import SwinConfig, SwinForImageClassification, Swinv2Config, Swinv2ForImageClassification

from swinlab import create_model
from swinlab.models.swin import SwinTransformer
from swinlab.models.swin_v2 import SwinTransformerV2
from swinlab.weights import (
    detect_layout,
    hf_config_from_swin,
    swin_kwargs_from_hf_config,
    swinlab_to_hf,
    swinv2_kwargs_from_hf_config,
    to_swinlab,
)

LOGIT_TOL = 1e-4
ATTN_TOL = 1e-5
SWIN_T = dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7)


def _hf_model(config: SwinConfig) -> SwinForImageClassification:
    return SwinForImageClassification._from_config(config, attn_implementation="eager").eval()


@torch.no_grad()
def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Perturb every parameter so that no mapping mistake hides behind ones
    and zeros (LayerNorm weights/biases, biases, bias tables included)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        if "relative_position_bias_table" in name or "position_embeddings" in name:
            p.copy_(0.5 * noise)
        elif name.endswith("logit_scale"):  # Swin V2: log(1/tau) per head, around log(10)
            p.add_(0.5 * noise)
        elif p.ndim == 1 and name.endswith("weight"):  # LayerNorm scales
            p.copy_(1.0 + 0.2 * noise)
        elif name.endswith("bias"):
            p.copy_(0.1 * noise)
        else:
            p.add_(0.02 * noise)


@pytest.fixture(scope="module")
def hf_state() -> tuple[SwinConfig, dict[str, torch.Tensor]]:
    config = SwinConfig(image_size=224, patch_size=4, num_labels=10, **SWIN_T)
    model = _hf_model(config)
    _randomise(model, seed=0)
    return config, {k: v.clone() for k, v in model.state_dict().items()}


def _hf_from_state(config, state) -> SwinForImageClassification:
    model = _hf_model(config)
    model.load_state_dict(state, strict=True)
    return model


def _ours(state, **kwargs) -> SwinTransformer:
    model = create_model("swin_tiny_patch4_window7_224", num_classes=10, **kwargs).eval()
    model.load_state_dict(to_swinlab(state), strict=True)
    return model


def _last_block_per_stage(depths) -> list[int]:
    return [n - 1 for n in itertools.accumulate(depths)]


def _compare_attentions(hf_attn, our_attn, depths) -> None:
    # transformers 5.x returns one entry per stage (its last block), each
    # (B * num_windows, heads, N, N); ours: every block, (B, nW, heads, N, N)
    assert len(hf_attn) == len(depths)
    for stage, k in enumerate(_last_block_per_stage(depths)):
        ours = our_attn[k]
        assert ours.ndim == 5
        B, nW, h, N, _ = ours.shape
        assert hf_attn[stage].shape == (B * nW, h, N, N), (stage, hf_attn[stage].shape, ours.shape)
        diff = (hf_attn[stage] - ours.reshape(B * nW, h, N, N)).abs().max().item()
        assert diff <= ATTN_TOL, (stage, diff)


def test_hf_state_dict_is_detected(hf_state):
    _, state = hf_state
    assert detect_layout(state) == "hf"
    # transformers 5.x module names (renamed from the Hub's at load time)
    assert any(".attention.q_proj." in k for k in state)


def test_logits_and_attention_224(hf_state):
    config, state = hf_state
    hf = _hf_from_state(config, state)
    ours = _ours(state)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = hf(pixel_values=x, output_attentions=True)
        logits, attn = ours.forward_attention(x)
        plain = ours(x)
    assert out.logits.abs().max() > 0.1  # non-trivial outputs
    assert (out.logits - logits).abs().max().item() <= LOGIT_TOL
    assert (out.logits - plain).abs().max().item() <= LOGIT_TOL
    assert len(attn) == sum(SWIN_T["depths"])
    _compare_attentions(out.attentions, attn, SWIN_T["depths"])


def test_logits_and_attention_non_square(hf_state):
    config, state = hf_state
    x = torch.randn(1, 3, 256, 320, generator=torch.Generator().manual_seed(2))
    # fresh HF model (stage 4 is 8x10 > window: shifted) vs swinlab built for 256x320
    hf = _hf_from_state(config, state)
    ours = _ours(state, img_size=(256, 320))
    assert ours.layers[3].blocks[1].shift_size == 3
    with torch.no_grad():
        out = hf(pixel_values=x, output_attentions=True)
        logits, attn = ours.forward_attention(x)
    assert (out.logits - logits).abs().max().item() <= LOGIT_TOL
    _compare_attentions(out.attentions, attn, SWIN_T["depths"])
    # stage 1: 64x80 tokens padded to 70x84 -> 10x12 windows
    assert attn[0].shape[1] == 120


def test_non_square_after_224_matches_construction_rule():
    """swinlab built for 224 keeps stage 4 (7x7 there) unshifted at 256x320
    (construction rule, as official/timm); an HF model does so only after it
    has run at 224 (its run-time rule mutates the block). Small model of the
    same stage geometry as Swin-T, to keep it quick."""
    arch = dict(embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=7)
    hf = _hf_model(SwinConfig(image_size=224, patch_size=4, num_labels=10, **arch))
    _randomise(hf, seed=6)
    ours = SwinTransformer(img_size=224, num_classes=10, **arch).eval()
    ours.load_state_dict(to_swinlab(hf.state_dict()), strict=True)
    assert ours.layers[3].blocks[1].shift_size == 0
    x = torch.randn(1, 3, 256, 320, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        hf(pixel_values=torch.zeros(1, 3, 224, 224))
        assert hf.swin.encoder.layers[3].blocks[1].shift_size == 0
        diff = (hf(pixel_values=x).logits - ours(x)).abs().max().item()
    assert diff <= LOGIT_TOL


def test_export_loads_into_transformers(hf_state):
    config, state = hf_state
    ours = _ours(state)
    exported = swinlab_to_hf(ours.state_dict(), naming="transformers")
    assert exported.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(exported[key], value), key
    _hf_from_state(config, exported)  # strict load


def test_roundtrip_swinlab_hf_swinlab():
    model = create_model("swin_tiny_patch4_window7_224", num_classes=10)
    _randomise(model, seed=3)
    sd = model.state_dict()
    for naming in ("hub", "transformers"):
        back = to_swinlab(swinlab_to_hf(sd, naming=naming))
        assert back.keys() == sd.keys(), naming
        for key, value in sd.items():
            assert torch.equal(back[key], value), (naming, key)


def test_hub_names_load_with_from_pretrained(reference_dir, reference_io, tmp_path):
    """Our Hub-style export is read by transformers' own loader (which renames
    the keys for its 5.x modules) and reproduces the reference logits."""
    ckpt = torch.load(reference_dir / "swin_ref_official.pth", map_location="cpu", weights_only=True)
    model = SwinTransformer(embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], num_classes=10)
    model.load_state_dict(to_swinlab(ckpt), strict=True)
    exported = swinlab_to_hf(model.state_dict(), naming="hub")
    save_file({k: v.contiguous() for k, v in exported.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(hf_config_from_swin(model)))
    hf = SwinForImageClassification.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    with torch.no_grad():
        logits = hf(pixel_values=reference_io["input_224"]).logits
    assert (logits - reference_io["logits_official"]).abs().max().item() <= 1e-5


def test_absolute_position_embedding():
    config = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[1, 2],
                        window_size=4, num_labels=5, use_absolute_embeddings=True)
    hf = _hf_model(config)
    _randomise(hf, seed=4)
    state = hf.state_dict()
    assert state["swin.embeddings.position_embeddings"].shape == (1, 256, 16)
    ours = SwinTransformer(img_size=64, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[1, 2],
                           window_size=4, num_classes=5, ape=True).eval()
    converted = to_swinlab(state)
    ours.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        diff = (hf(pixel_values=x).logits - ours(x)).abs().max().item()
    assert diff <= LOGIT_TOL
    # transformers 4.x shape (1, N+1, C): the unused leading slot is dropped
    legacy = dict(state)
    pos = state["swin.embeddings.position_embeddings"]
    legacy["swin.embeddings.position_embeddings"] = torch.cat([torch.full_like(pos[:, :1], 7.0), pos], dim=1)
    assert torch.equal(to_swinlab(legacy)["absolute_pos_embed"], converted["absolute_pos_embed"])


def test_hf_config_to_swinlab_kwargs(reference_dir, reference_io):
    config = json.loads((reference_dir / "swin_ref_hf" / "config.json").read_text())
    kwargs = swin_kwargs_from_hf_config(config)
    assert kwargs["num_classes"] == 10 and kwargs["embed_dim"] == 16 and kwargs["window_size"] == 7
    model = SwinTransformer(**kwargs).eval()
    model.load_state_dict(to_swinlab(load_file(str(reference_dir / "swin_ref_hf" / "model.safetensors"))))
    with torch.no_grad():
        diff = (model(reference_io["input_224"]) - reference_io["logits_official"]).abs().max().item()
    assert diff <= 1e-5
    # and back: the exported config describes the same architecture
    back = hf_config_from_swin(model)
    for key in ("embed_dim", "depths", "num_heads", "window_size", "image_size", "patch_size", "qkv_bias"):
        assert back[key] == config[key], key
    with pytest.raises(ValueError, match="swinv2"):
        swin_kwargs_from_hf_config({**config, "model_type": "swinv2"})
    with pytest.raises(ValueError, match="hidden_act"):
        swin_kwargs_from_hf_config({**config, "hidden_act": "relu"})


def test_hf_config_rejects_what_transformers_cannot_express():
    s3 = create_model("swin_s3_tiny_224", num_classes=10)
    with pytest.raises(ValueError, match="one window size"):
        hf_config_from_swin(s3)
    tiny = SwinTransformer(embed_dim=16, depths=[2, 2], num_heads=[1, 2], num_classes=3)
    with pytest.raises(ValueError, match="labels"):
        hf_config_from_swin(tiny, labels=["a", "b"])


# --------------------------------------------------------------- Swin V2
SWINV2_T = dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=8)


@pytest.fixture(scope="module")
def hf_v2() -> Swinv2ForImageClassification:
    """A random SwinV2-T-sized ``Swinv2ForImageClassification`` (256 px, window
    8), every parameter perturbed (``logit_scale`` and the cpb MLP too)."""
    config = Swinv2Config(image_size=256, patch_size=4, num_labels=10, **SWINV2_T)
    model = Swinv2ForImageClassification._from_config(config, attn_implementation="eager").eval()
    _randomise(model, seed=10)
    with torch.no_grad():  # one head above the clamp at log(100)
        model.swinv2.encoder.layers[2].blocks[0].attention.self.logit_scale[0].fill_(5.0)
    return model


def _ours_v2(hf_model, **kwargs) -> SwinTransformerV2:
    config = hf_model.config.to_dict()
    model = SwinTransformerV2(**{**swinv2_kwargs_from_hf_config(config), **kwargs}).eval()
    model.load_state_dict(to_swinlab(hf_model.state_dict()), strict=True)
    return model


@pytest.mark.parametrize("size", [(256, 256), (256, 320)])
def test_swinv2_logits_match_transformers(hf_v2, size):
    """256x256 and a non-default 256x320 (stage 4: 8x10, one unshifted 8x8
    window row padded to 8x16 in both; transformers fixes windows and shifts at
    construction, as swinlab's construction rule does for img_size 256)."""
    state = hf_v2.state_dict()
    assert detect_layout(state) == "hf"
    assert any(k.endswith("continuous_position_bias_mlp.0.weight") for k in state)
    ours = _ours_v2(hf_v2)
    assert ours.layers[3].blocks[1].shift_size == 0
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        want = hf_v2(pixel_values=x).logits
        got, attn = ours.forward_attention(x)
        fused = ours(x)
    assert want.abs().max() > 0.1
    assert (want - got).abs().max().item() <= LOGIT_TOL
    assert (want - fused).abs().max().item() <= LOGIT_TOL
    assert len(attn) == sum(SWINV2_T["depths"])
