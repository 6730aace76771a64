"""Swin Transformer V2 (``swinlab.models.swin_v2``): parity with the reference
implementations on ``shared/reference/checkpoints`` (official, timm, Hugging
Face and torchvision layouts; the official fine-tuning loads at another
window), the zoo's parameter counts and pretrained configs, and the speed
paths against the plain formulation (fused cosine attention, the cached
position-bias table and its invalidation)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from swinlab import create_model
from swinlab.models import get_model_spec, list_models, pretrained_cfg
from swinlab.models.fast import CosineLogitsFunction, SpeedOptions
from swinlab.models.flops import count_macs, count_params
from swinlab.models.layers import DropPath
from swinlab.models.swin_v2 import LOGIT_SCALE_MAX, SwinTransformerV2, WindowAttentionV2
from swinlab.models.windows import relative_coords_table, relative_position_index
from swinlab.weights import (
    detect_layout,
    load_pretrained,
    swinv2_kwargs_from_hf_config,
    to_swinlab,
    unwrap_checkpoint,
)
from swinlab.weights.adapt import load_map22kto1k

TOL = 1e-5
REF = dict(embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8])  # configs_v2.json -> swinv2_ref

# name -> (parameters, GMACs at 256 px of the V2 paper's Table: T/S/B at window 8 / 16)
OFFICIAL = {
    "swinv2_tiny_window8_256": (28_347_154, 5.9),
    "swinv2_tiny_window16_256": (28_347_154, 6.6),
    "swinv2_small_window8_256": (49_728_418, 11.5),
    "swinv2_small_window16_256": (49_728_418, 12.6),
    "swinv2_base_window8_256": (87_918_816, 20.3),
    "swinv2_base_window16_256": (87_918_816, 21.8),
    "swinv2_base_window12_192": (109_280_841, None),
    "swinv2_large_window12_192": (228_772_549, None),
    "swinv2_base_window12to16_192to256": (87_918_816, None),
    "swinv2_base_window12to24_192to384": (87_918_816, None),
    "swinv2_large_window12to16_192to256": (196_739_932, None),
    "swinv2_large_window12to24_192to384": (196_739_932, None),
}


@pytest.fixture(scope="module")
def io_v2(reference_dir: Path) -> dict[str, torch.Tensor]:
    """``reference_io_v2.safetensors``: ``input_256`` (2,3,256,256), ``logits_*``
    (2,10), ``input_384`` and the fine-tuning features (1,128)."""
    return load_file(str(reference_dir / "reference_io_v2.safetensors"))


def _load(reference_dir: Path, kind: str) -> dict:
    if kind == "official":
        return torch.load(reference_dir / "swinv2_ref_official.pth", map_location="cpu", weights_only=True)
    if kind == "hf":
        return load_file(str(reference_dir / "swinv2_ref_hf" / "model.safetensors"))
    return load_file(str(reference_dir / f"swinv2_ref_{kind}.safetensors"))


def _ref_model(speed: SpeedOptions | None = None, **kw) -> SwinTransformerV2:
    cfg = dict(img_size=256, patch_size=4, window_size=8, num_classes=10, **REF)
    cfg.update(kw)
    return SwinTransformerV2(**cfg, speed=speed).eval()


def _loaded(reference_dir, speed=None, **kw) -> SwinTransformerV2:
    model = _ref_model(speed, **kw)
    model.load_state_dict(to_swinlab(_load(reference_dir, "official")), strict=True)
    return model


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# --------------------------------------------------------------- parity (acceptance 1)
@pytest.mark.parametrize("kind", ["official", "timm", "hf", "torchvision"])
def test_layout_detected_and_reference_logits(reference_dir, io_v2, kind):
    sd = _load(reference_dir, kind)
    assert detect_layout(unwrap_checkpoint(sd)) == kind
    model = _ref_model()
    model.load_state_dict(to_swinlab(sd), strict=True)
    with torch.no_grad():
        logits = model(io_v2["input_256"])
    assert logits.abs().max() > 0.1
    assert _maxdiff(logits, io_v2["logits_official"]) <= TOL
    assert _maxdiff(logits, io_v2[f"logits_{kind}"]) <= TOL


def test_four_layouts_give_identical_tensors(reference_dir):
    converted = {k: to_swinlab(_load(reference_dir, k)) for k in ("official", "timm", "hf", "torchvision")}
    base = converted["official"]
    assert not any(k.endswith(("relative_position_index", "attn_mask", "relative_coords_table")) for k in base)
    assert any(k.endswith(".attn.q_bias") for k in base) and not any(".attn.qkv.bias" in k for k in base)
    for kind in ("timm", "hf", "torchvision"):
        assert converted[kind].keys() == base.keys(), kind
        for key, value in base.items():
            assert torch.equal(converted[kind][key], value), (kind, key)


def test_plain_fused_recorded_and_inference_mode_paths(reference_dir, io_v2):
    """Fused SDPA + cached bias (default), the plain formulation, the explicit
    path under record_attention and inference mode all give the official logits."""
    x, want = io_v2["input_256"], io_v2["logits_official"]
    fast, plain = _loaded(reference_dir), _loaded(reference_dir, SpeedOptions.plain())
    with torch.no_grad():
        assert _maxdiff(fast(x), want) <= TOL
        assert _maxdiff(fast(x), want) <= TOL  # second call: the cached tables
        assert _maxdiff(plain(x), want) <= TOL
        logits, attns = fast.forward_attention(x)
        for i in range(2):
            assert _maxdiff(fast(x[i:i + 1]), want[i:i + 1]) <= TOL
    with torch.inference_mode():
        assert _maxdiff(fast(x), want) <= TOL
    assert _maxdiff(logits, want) <= TOL
    assert len(attns) == 8 and attns[0].shape == (2, 64, 1, 64, 64)
    assert torch.allclose(attns[0].sum(-1), torch.ones(()), atol=1e-5)


def test_train_mode_gradients_reach_cpb_and_logit_scale(reference_dir, io_v2):
    model = _loaded(reference_dir)
    for m in model.modules():
        if isinstance(m, DropPath):
            m.drop_prob = 0.0
    logits = model.train()(io_v2["input_256"])
    assert _maxdiff(logits.detach(), io_v2["logits_official"]) <= TOL
    logits.sum().backward()
    attn = model.layers[0].blocks[1].attn
    for p in (attn.cpb_mlp[0].weight, attn.cpb_mlp[2].weight, attn.logit_scale, attn.q_bias, attn.v_bias):
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("case", [0, 1])
def test_finetune_loads_at_new_window(reference_dir, io_v2, case):
    """The official fine-tuning load (configs_v2.json -> swinv2_ref_finetune):
    buffers dropped, head dropped, built with pretrained_window_sizes."""
    cfg = json.loads((reference_dir / "configs_v2.json").read_text())["swinv2_ref_finetune"][case]
    x = io_v2["input_256"][:1] if cfg["img_size"] == 256 else io_v2["input_384"]
    want = io_v2[f"features_official_w{cfg['window_size']}_{cfg['img_size']}"]
    model = SwinTransformerV2(patch_size=4, **REF, **cfg).eval()
    report = load_pretrained(model, reference_dir / "swinv2_ref_official.pth")
    assert report.ok and report.layout == "official"
    assert model.window_sizes == ([16, 16, 16, 8] if case == 0 else [12, 12, 12, 12])
    with torch.no_grad():
        assert _maxdiff(model(x), want) <= TOL
    # the pre-training window matters: normalised by the new window the features differ
    wrong = SwinTransformerV2(patch_size=4, **REF, **{**cfg, "pretrained_window_sizes": 0}).eval()
    load_pretrained(wrong, reference_dir / "swinv2_ref_official.pth")
    with torch.no_grad():
        assert _maxdiff(wrong(x), want) > 1e-3


def test_hf_config_kwargs(reference_dir):
    config = json.loads((reference_dir / "swinv2_ref_hf" / "config.json").read_text())
    kwargs = swinv2_kwargs_from_hf_config(config)
    assert kwargs["pretrained_window_sizes"] == [0, 0, 0, 0] and kwargs["window_size"] == 8
    model = SwinTransformerV2(**kwargs)
    assert count_params(model) == sum(v.numel() for v in to_swinlab(_load(reference_dir, "hf")).values())
    with pytest.raises(ValueError, match="'swin'"):
        swinv2_kwargs_from_hf_config({**config, "model_type": "swin"})
    with pytest.raises(ValueError, match="pretrained_window_sizes"):
        swinv2_kwargs_from_hf_config({**config, "pretrained_window_sizes": [8, 8]})


def test_bad_v2_checkpoints_raise(reference_dir):
    hf = _load(reference_dir, "hf")
    no_value = {k: v for k, v in hf.items() if k != "swinv2.encoder.layers.1.blocks.0.attention.self.value.bias"}
    with pytest.raises(ValueError, match=r"layers\.1\.blocks\.0.*bias.*value"):
        to_swinlab(no_value)
    tv = dict(_load(reference_dir, "torchvision"))
    sd = to_swinlab({**tv, "features.1.0.attn.rotary.weight": torch.zeros(1)})  # block leaves pass through
    with pytest.raises(RuntimeError, match="rotary"):
        _ref_model().load_state_dict(sd, strict=True)
    with pytest.raises(ValueError, match=r"torchvision.*features\.9\.weight"):
        to_swinlab({**tv, "features.9.weight": torch.zeros(1)})


def test_head_22k_to_1k_mapping():
    small = dict(img_size=64, embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4)
    torch.manual_seed(0)
    src = SwinTransformerV2(num_classes=21841, **small)
    dst = SwinTransformerV2(num_classes=1000, **small)
    report = load_pretrained(dst, src.state_dict())
    rows = torch.tensor(load_map22kto1k())
    assert report.ok and any("map22kto1k" in a for a in report.adapted)
    assert torch.equal(dst.head.weight, src.head.weight[rows]) and torch.equal(dst.head.bias, src.head.bias[rows])


# --------------------------------------------------------------- zoo (acceptance 2)
def test_zoo_names():
    assert set(list_models("swinv2*")) == set(OFFICIAL)


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_parameter_counts_and_macs(name):
    params, gmacs = OFFICIAL[name]
    with torch.device("meta"):
        model = create_model(name)
    assert isinstance(model, SwinTransformerV2)
    assert count_params(model) == params == get_model_spec(name).num_params
    if gmacs is not None:
        macs = count_macs(model, (3, 256, 256)) / 1e9
        assert abs(macs - gmacs) / gmacs < 0.02, (name, macs)


def test_pretrained_configs():
    cfg = pretrained_cfg("swinv2_tiny_window8_256")
    assert cfg.input_size == (256, 256) and cfg.eval_crop_ratio() == 0.9 and cfg.num_classes == 1000
    assert cfg.url.endswith("/v2.0.0/swinv2_tiny_patch4_window8_256.pth")
    assert cfg.hf_hub_id == "microsoft/swinv2-tiny-patch4-window8-256"
    cfg = pretrained_cfg("swinv2_large_window12_192")
    assert cfg.num_classes == 21841 and cfg.input_size == (192, 192) and cfg.url.endswith("_192_22k.pth")
    cfg = pretrained_cfg("swinv2_base_window12to24_192to384")
    assert cfg.input_size == (384, 384) and cfg.eval_crop_ratio() == 1.0
    assert cfg.url.endswith("swinv2_base_patch4_window12to24_192to384_22kto1k_ft.pth")
    spec = get_model_spec("swinv2_large_window12to16_192to256")
    assert spec.kwargs["pretrained_window_sizes"] == (12, 12, 12, 6) and spec.kwargs["window_size"] == 16
    with torch.device("meta"):
        model = create_model("swinv2_base_window12to24_192to384")
    assert model.window_sizes == [24, 24, 24, 12]
    assert [b.attn.pretrained_window_size for b in model.layers[3].blocks] == [6, 6]


def test_no_weight_decay_and_init():
    torch.manual_seed(0)
    model = SwinTransformerV2(img_size=64, embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4)
    assert {"cpb_mlp", "logit_scale"} <= model.no_weight_decay_keywords()
    block = model.layers[0].blocks[0]
    assert torch.all(block.norm1.weight == 0) and torch.all(block.norm2.bias == 0)  # res-post-norm at zero
    assert torch.allclose(block.attn.logit_scale, torch.full_like(block.attn.logit_scale, math.log(10)))
    assert block.attn.qkv.bias is None and block.attn.q_bias is not None
    assert model.layers[0].downsample.norm.normalized_shape == (32,)  # reduce, then norm(2C)
    with pytest.raises(ValueError, match="pretrained_window_sizes"):
        SwinTransformerV2(pretrained_window_sizes=(8, 1, 8, 8))
    with pytest.raises(ValueError, match="pretrained_window_sizes"):
        SwinTransformerV2(pretrained_window_sizes=(8, 8))


# --------------------------------------------------------------- geometry
def test_coords_table_matches_the_paper_formula():
    table = relative_coords_table(3, 0).view(5, 5, 2)
    d = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]) / 2 * 8
    want = torch.sign(d) * torch.log2(d.abs() + 1) / 3
    assert torch.allclose(table[:, 0, 0], want) and torch.allclose(table[0, :, 1], want)
    # normalised by the pre-training window: window 8 with P=4 reaches beyond [-1, 1]
    assert relative_coords_table(8, 4).abs().max() > relative_coords_table(8, 0).abs().max()
    assert relative_coords_table(1, 0).abs().max() == 0  # a 1-token window: no offsets
    with pytest.raises(ValueError, match="pretrained_window_size"):
        relative_coords_table(8, 1)


def _perturbed_v2(speed=None, seed=0, **kw) -> SwinTransformerV2:
    cfg = dict(img_size=64, patch_size=2, embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=4,
               num_classes=5, drop_path_rate=0.0)
    cfg.update(kw)
    torch.manual_seed(seed)
    model = SwinTransformerV2(**cfg, speed=speed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # post-norms start at zero: perturb so that every block computes something
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.3 * noise if p.ndim == 1 and name.endswith("weight") else p + 0.1 * noise)
    return model.eval()


def test_run_time_window_shrink_matches_model_built_small():
    """A 64x64 model (window 4) on a 12x12 input: stage 2's 3x3 map uses a
    3x3 window from the 4x4 coordinate table, as a model built for 12 px
    with pretrained window 4 does."""
    big = _perturbed_v2(patch_size=2)
    small = SwinTransformerV2(img_size=12, patch_size=2, embed_dim=16, depths=(2, 2), num_heads=(2, 4),
                              window_size=4, pretrained_window_sizes=4, num_classes=5).eval()
    assert small.window_sizes == [4, 3]
    small.load_state_dict(big.state_dict())
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        assert _maxdiff(big(x), small(x)) <= 1e-5


def test_any_size_and_no_state_change():
    model = _perturbed_v2()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        for size in ((50, 70), (17, 33), (130, 96)):
            out = model(torch.randn(2, 3, *size))
            assert out.shape == (2, 5) and torch.isfinite(out).all()
        assert torch.equal(model(x), before)


# --------------------------------------------------------------- speed paths
@pytest.mark.parametrize("field", ["fused_attn", "cached_position_bias", "one_gather_shift", "cosine_logits_function",
                                   "all"])
def test_speed_paths_equal_the_plain_formulation(field):
    speed = SpeedOptions() if field == "all" else SpeedOptions(**{**SpeedOptions.plain().__dict__, field: True})
    fast, plain = _perturbed_v2(speed), _perturbed_v2(SpeedOptions.plain())
    x = torch.randn(3, 3, 50, 70)
    with torch.no_grad():
        assert _maxdiff(fast(x), plain(x)) <= 1e-5
        assert _maxdiff(fast(x), plain(x)) <= 1e-5  # again: cached tables
    fast.train(), plain.train()
    fast(x).sum().backward(), plain(x).sum().backward()
    for (name, a), (_, b) in zip(fast.named_parameters(), plain.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), name


def _bias_tables(model) -> list:
    return [m.bias_cache.get(k) for m in model.modules() if isinstance(m, WindowAttentionV2)
            for k in [m.bias_cache._key] if k is not None]


def test_position_bias_cache_use_and_invalidation():
    model = _perturbed_v2()
    attn = model.layers[0].blocks[0].attn
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        model(x)
    assert len(_bias_tables(model)) == 4  # one per block, kept for inference
    calls = []
    attn.cpb_mlp.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        model(x)
    assert not calls  # served from the cache
    # load_state_dict -> cleared; new weights used
    other = _perturbed_v2(seed=1)
    model.load_state_dict(other.state_dict())
    assert not _bias_tables(model)
    with torch.no_grad():
        assert _maxdiff(model(x), other(x)) <= 1e-6
    # an in-place updater that writes into state_dict() tensors (the EMA's way)
    ema = copy.deepcopy(model)
    with torch.no_grad():
        ema(x)
        for v in ema.state_dict().values():
            if v.dtype.is_floating_point:
                v.mul_(0.5).add_(1.0, alpha=0.5)
        fresh = SwinTransformerV2(img_size=64, patch_size=2, embed_dim=16, depths=(2, 2), num_heads=(2, 4),
                                  window_size=4, num_classes=5, speed=SpeedOptions.plain()).eval()
        fresh.load_state_dict(ema.state_dict())
        assert _maxdiff(ema(x), fresh(x)) <= 1e-5  # a stale table: differences of order 1
    # train() / eval() clear it; training never caches
    model.train()
    assert not _bias_tables(model)
    model(x).sum().backward()
    assert not _bias_tables(model)
    # gradients wanted into cpb_mlp in eval mode: no cache
    model.eval()
    model(x)
    assert not _bias_tables(model)
    # functional_call with other weights is not served from the cache
    with torch.no_grad():
        model(x)
        params = {k: v + 0.5 for k, v in model.state_dict().items() if "cpb_mlp" in k}
        swapped = torch.func.functional_call(model, params, (x,), strict=False)
        assert _maxdiff(swapped, model(x)) > 1e-4


def test_two_models_in_one_process_differ_in_speed_only():
    a, b = _perturbed_v2(SpeedOptions()), _perturbed_v2(SpeedOptions(cached_position_bias=False, fused_attn=False))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        diff = _maxdiff(a(x), b(x))
    assert _bias_tables(a) and not _bias_tables(b)
    assert diff <= 1e-5


def test_sub_window_index_uses_constructed_table():
    """The run-time 3x3 window of a 4x4 attention reads the table rows of its offsets."""
    index = relative_position_index(3, 4)
    assert index.max() < (2 * 4 - 1) ** 2
    attn = WindowAttentionV2(8, 4, 2).eval()
    with torch.no_grad():
        full = attn.position_bias_table()
        sub = attn.relative_position_bias(3)
    assert torch.equal(sub, full[index.reshape(-1)].view(9, 9, 2).permute(2, 0, 1))


def test_logit_scale_is_clamped_at_log_100():
    attn = WindowAttentionV2(8, 4, 2).eval()
    with torch.no_grad():
        attn.logit_scale.fill_(10.0)
    assert torch.allclose(attn.logit_scale_factor(), torch.full((2, 1, 1), 100.0))
    assert math.isclose(LOGIT_SCALE_MAX, math.log(100.0))


def test_save_pretrained_round_trip(tmp_path):
    from swinlab.weights import from_pretrained, save_pretrained

    torch.manual_seed(0)
    model = create_model("swinv2_tiny_window8_256", num_classes=3, embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                         img_size=64, window_size=4, pretrained_window_sizes=[8, 4]).eval()
    save_pretrained(model, tmp_path / "v2")
    back = from_pretrained(tmp_path / "v2").eval()
    assert isinstance(back, SwinTransformerV2) and back.pretrained_window_sizes == (8, 4)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), back(x))


def test_bf16_autocast_runs_and_keeps_its_own_cached_table():
    model = _perturbed_v2()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x).float()
        again = model(x)  # fp32 after bf16: not served the bf16 table
    assert torch.nn.functional.cosine_similarity(low, ref).min() > 0.99
    assert torch.equal(again, ref)


def test_cosine_logits_function_gradients():
    """CosineLogitsFunction (the written-out backward of Swin V2's logits): the values of
    ``normalize(q) normalize(k)^T * s`` and gradients that pass torch's numerical gradcheck
    in float64 for q, k and the per-head scale."""
    torch.manual_seed(0)
    q = torch.randn(2, 3, 4, 5, 8, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 3, 4, 5, 8, dtype=torch.float64, requires_grad=True)
    s = (torch.rand(4, 1, 1, dtype=torch.float64) * 3 + 1).requires_grad_()
    want = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * s
    assert torch.allclose(CosineLogitsFunction.apply(q, k, s), want, atol=1e-12)
    assert torch.autograd.gradcheck(CosineLogitsFunction.apply, (q, k, s))
    assert torch.autograd.gradcheck(lambda a, b: CosineLogitsFunction.apply(a, b, s.detach()), (q, k))


def test_cosine_logits_function_in_training_under_bf16_autocast():
    """The training path takes CosineLogitsFunction (and the plain formulation does not);
    under bf16 autocast its gradients are as close to the fp32 gradients as the plain
    formulation's under bf16 autocast (mean relative error per parameter, within 1.5x)."""
    fast, plain = _perturbed_v2(SpeedOptions()), _perturbed_v2(SpeedOptions.plain())
    attn, plain_attn = fast.layers[0].blocks[0].attn, plain.layers[0].blocks[0].attn
    q = torch.randn(4, attn.num_heads, 16, attn.head_dim, requires_grad=True)
    assert type(attn.attention_logits(q, q, 2).grad_fn).__name__ == "CosineLogitsFunctionBackward"
    assert "CosineLogits" not in type(plain_attn.attention_logits(q, q, 2).grad_fn).__name__
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))

    def grads(model, bf16):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.train()(x).float().square().sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    want = grads(plain, False)
    errors = {}
    for label, model in (("fast", fast), ("plain", plain)):
        got = grads(model, True)
        errors[label] = sum(float((got[n] - g).norm() / g.norm()) for n, g in want.items()) / len(want)
    assert errors["fast"] <= 1.5 * errors["plain"] + 1e-3, errors
