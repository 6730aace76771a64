"""Checkpoint layouts -> swinlab: the reference checkpoints (official, timm,
Hugging Face, torchvision; ``shared/reference/checkpoints``) must convert, load with
``strict=True`` and reproduce the reference implementations' logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from swinlab.models.swin import SwinTransformer
from swinlab.weights import detect_layout, swinlab_to_hf, to_swinlab, unwrap_checkpoint

TOL = 1e-5


def _ref_model(window_size=7) -> SwinTransformer:
    # configs.json -> swin_ref / swin_s3_ref
    return SwinTransformer(
        img_size=224, patch_size=4, embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8],
        window_size=window_size, num_classes=10,
    ).eval()


def _load(reference_dir: Path, kind: str) -> dict:
    if kind == "official":
        return torch.load(reference_dir / "swin_ref_official.pth", map_location="cpu", weights_only=True)
    if kind == "timm":
        return load_file(str(reference_dir / "swin_ref_timm.safetensors"))
    if kind == "hf":
        return load_file(str(reference_dir / "swin_ref_hf" / "model.safetensors"))
    if kind == "torchvision":
        return load_file(str(reference_dir / "swin_ref_torchvision.safetensors"))
    if kind == "s3_timm":
        return load_file(str(reference_dir / "swin_s3_ref_timm.safetensors"))
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["official", "timm", "hf", "torchvision"])
def test_layout_detected(reference_dir, kind):
    assert detect_layout(unwrap_checkpoint(_load(reference_dir, kind))) == kind


@pytest.mark.parametrize("kind", ["official", "timm", "hf", "torchvision"])
def test_reference_logits(reference_dir, reference_io, kind):
    model = _ref_model()
    model.load_state_dict(to_swinlab(_load(reference_dir, kind)), strict=True)
    with torch.no_grad():
        logits = model(reference_io["input_224"])
    assert logits.shape == (2, 10)
    assert (logits - reference_io["logits_official"]).abs().max().item() <= TOL


def test_s3_reference_logits(reference_dir, reference_io):
    ckpt = _load(reference_dir, "s3_timm")
    assert detect_layout(ckpt) == "timm"
    model = _ref_model(window_size=[7, 7, 14, 7])
    model.load_state_dict(to_swinlab(ckpt), strict=True)
    with torch.no_grad():
        logits = model(reference_io["input_224"])
    assert (logits - reference_io["logits_s3_timm"]).abs().max().item() <= TOL


def test_three_layouts_give_identical_tensors(reference_dir):
    converted = {k: to_swinlab(_load(reference_dir, k)) for k in ("official", "timm", "hf", "torchvision")}
    base = converted["official"]
    assert not any(k.endswith(("relative_position_index", "attn_mask")) for k in base)
    for kind in ("timm", "hf", "torchvision"):
        assert converted[kind].keys() == base.keys(), kind
        for key, value in base.items():
            assert torch.equal(converted[kind][key], value), (kind, key)


def test_wrappers_and_prefixes(reference_dir):
    sd = unwrap_checkpoint(_load(reference_dir, "official"))
    wrapped = {"state_dict": {f"module._orig_mod.{k}": v for k, v in sd.items()}, "epoch": 3}
    out = unwrap_checkpoint(wrapped)
    assert out.keys() == sd.keys()
    lightning = {"state_dict": {f"model.{k}": v for k, v in sd.items()}}
    assert unwrap_checkpoint(lightning).keys() == sd.keys()
    # EMA weights are taken only when asked for (or when nothing else is there)
    ema = {k: v + 1 for k, v in sd.items()}
    both = {"model": sd, "model_ema": {f"module.{k}": v for k, v in ema.items()}}
    key = "head.bias"
    assert torch.equal(unwrap_checkpoint(both)[key], sd[key])
    assert torch.equal(unwrap_checkpoint(both, use_ema=True)[key], ema[key])
    assert torch.equal(unwrap_checkpoint({"model_ema": ema})[key], ema[key])
    assert detect_layout(unwrap_checkpoint(wrapped)) == "official"


def test_old_timm_layout_is_swinlab(reference_dir, reference_io):
    # timm < 0.9 / our own saves: official names, no buffers, head.weight
    sd = {
        k: v for k, v in unwrap_checkpoint(_load(reference_dir, "official")).items()
        if not k.endswith(("relative_position_index", "attn_mask"))
    }
    assert detect_layout(sd) == "swinlab"
    model = _ref_model()
    model.load_state_dict(to_swinlab(sd), strict=True)
    with torch.no_grad():
        assert (model(reference_io["input_224"]) - reference_io["logits_official"]).abs().max() <= TOL


def test_vit_names_are_swinlab():
    from swinlab.models.vit import VisionTransformer

    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=3)
    sd = vit.state_dict()
    assert detect_layout(sd) == "swinlab"
    out = to_swinlab(sd)
    assert out.keys() == sd.keys()


def test_mangled_keys_raise_clear_error(reference_dir):
    sd = unwrap_checkpoint(_load(reference_dir, "official"))
    mangled = {f"backbone_{i}.tensor": v for i, v in enumerate(sd.values())}
    with pytest.raises(ValueError, match="unknown checkpoint layout") as err:
        detect_layout(mangled)
    assert "backbone_0.tensor" in str(err.value)
    with pytest.raises(ValueError, match="unknown checkpoint layout"):
        to_swinlab(mangled)
    with pytest.raises(ValueError, match="'caffe'"):
        to_swinlab(sd, layout="caffe")
    with pytest.raises(ValueError, match="empty"):
        detect_layout({})


def test_bad_checkpoint_objects_raise():
    with pytest.raises(ValueError, match="checkpoint dict"):
        unwrap_checkpoint([torch.zeros(1)])
    with pytest.raises(ValueError, match="'epoch'"):
        unwrap_checkpoint({"patch_embed.proj.weight": torch.zeros(1), "epoch": 3})


def test_hf_unknown_or_incomplete_keys_raise(reference_dir):
    hf = _load(reference_dir, "hf")
    extra = dict(hf)
    extra["swin.encoder.layers.0.blocks.0.attention.self.rotary.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="rotary"):
        to_swinlab(extra)
    missing = {k: v for k, v in hf.items() if k != "swin.encoder.layers.1.blocks.0.attention.self.key.weight"}
    with pytest.raises(ValueError, match=r"layers\.1\.blocks\.0.*key"):
        to_swinlab(missing)


def test_swinlab_to_hf_matches_hub_file(reference_dir):
    hub = _load(reference_dir, "hf")
    ours = swinlab_to_hf(to_swinlab(_load(reference_dir, "official")), naming="hub")
    assert ours.keys() == hub.keys()
    for key, value in hub.items():
        assert torch.equal(ours[key], value), key
    with pytest.raises(ValueError, match="naming"):
        swinlab_to_hf(ours, naming="tf")
    with pytest.raises(ValueError, match="no Hugging Face"):
        swinlab_to_hf({"layers.0.blocks.0.gamma": torch.zeros(1)})
