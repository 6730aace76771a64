"""Acceptance tests of the Swin model (``swinlab.models.swin``) and of MAC
counting (``swinlab.models.flops``).

Reference numbers: parameter counts of the official / timm models and the
complexity figures of the Swin paper (Table 1) and AutoFormerV2 (Swin-S3).
"""

from __future__ import annotations

import math

import pytest
import torch

from swinlab import create_model
from swinlab.models.flops import count_macs, count_params
from swinlab.models.swin import (
    MASK_FILL,
    SpeedOptions,
    SwinTransformer,
    relative_position_index,
    shift_attention_mask,
    window_order,
    window_partition,
    window_reverse,
)
from swinlab.models.fast import drop_path_residual
from swinlab.models.layers import DropPath

# name -> (parameters with the 1000-class head, GMACs per image at its img_size)
OFFICIAL = {
    "swin_tiny_patch4_window7_224": (28_288_354, 4.49),
    "swin_small_patch4_window7_224": (49_606_258, 8.74),
    "swin_base_patch4_window7_224": (87_768_224, 15.43),
    "swin_base_patch4_window12_384": (87_903_584, 47.08),
    "swin_large_patch4_window7_224": (196_532_476, 34.48),
    "swin_large_patch4_window12_384": (196_735_516, 103.92),
    "swin_s3_tiny_224": (28_328_674, 4.62),
    "swin_s3_small_224": (49_737_298, 9.40),
    "swin_s3_base_224": (71_125_762, 13.66),
}


def _tiny(**kw) -> SwinTransformer:
    """A very small Swin (2 stages, shifted windows) for fast checks."""
    cfg = dict(img_size=32, patch_size=2, embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=4,
               num_classes=5, drop_path_rate=0.0)
    cfg.update(kw)
    torch.manual_seed(0)
    return SwinTransformer(**cfg)


def _ref_model(reference_dir) -> SwinTransformer:
    sd = torch.load(reference_dir / "swin_ref_official.pth", weights_only=True)["model"]
    sd = {k: v for k, v in sd.items() if not k.endswith(("relative_position_index", "attn_mask"))}
    model = SwinTransformer(embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], num_classes=10)
    model.load_state_dict(sd, strict=True)
    return model.eval()


# --------------------------------------------------------------- reference parity
def test_official_checkpoint_logits(reference_dir, reference_io):
    """Official checkpoint -> official logits (fused SDPA path and explicit path)."""
    model = _ref_model(reference_dir)
    x, want = reference_io["input_224"], reference_io["logits_official"]
    with torch.no_grad():
        assert (model(x) - want).abs().max().item() <= 1e-5
        logits, attns = model.forward_attention(x)
        assert (logits - want).abs().max().item() <= 1e-5
        # batch of one, twice (exercises the mask caches) and inference mode
        for i in range(2):
            assert (model(x[i : i + 1]) - want[i : i + 1]).abs().max().item() <= 1e-5
    with torch.inference_mode():
        assert (model(x) - want).abs().max().item() <= 1e-5
    assert len(attns) == 8


def test_official_checkpoint_train_mode_path(reference_dir, reference_io):
    """With gradients into the bias table the explicit path runs; same logits."""
    model = _ref_model(reference_dir)
    x, want = reference_io["input_224"], reference_io["logits_official"]
    for m in model.modules():  # stochastic depth off, explicit (training) attention path on
        if isinstance(m, DropPath):
            m.drop_prob = 0.0
    logits = model.train()(x)
    assert (logits.detach() - want).abs().max().item() <= 1e-5
    logits.sum().backward()
    table = model.layers[0].blocks[1].attn.relative_position_bias_table
    assert table.grad is not None and table.grad.abs().sum() > 0


# --------------------------------------------------------------- counts
@pytest.mark.parametrize("name", list(OFFICIAL))
def test_parameter_count_and_macs(name):
    params, gmacs = OFFICIAL[name]
    with torch.device("meta"):
        model = create_model(name)
    assert count_params(model) == params
    size = model.img_size[0]
    macs = count_macs(model, (3, size, size))
    assert abs(macs / 1e9 - gmacs) / gmacs < 0.02, (name, macs)


def test_count_macs_real_equals_meta_and_leaves_model_alone():
    model = _tiny().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    meta = count_macs(model, (3, 32, 32))
    real = count_macs(model, (3, 32, 32), meta=False)
    assert meta == real > 0
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # larger input -> more MACs; a hand count of the patch embedding alone is a lower bound
    assert count_macs(model, (3, 64, 64)) > meta > 16 * 16 * 16 * 3 * 2 * 2


@pytest.mark.parametrize("bad", [(224, 224), (3, 0, 224), (3, 224.0, 224), "3x224x224"])
def test_count_macs_rejects_bad_size(bad):
    with pytest.raises(ValueError, match="input_size"):
        count_macs(_tiny(), bad)


# --------------------------------------------------------------- any size
@pytest.fixture(scope="module")
def swin_t() -> SwinTransformer:
    torch.manual_seed(0)
    return create_model("swin_tiny_patch4_window7_224", drop_path_rate=0.0).eval()


def test_any_size_and_no_state_change(swin_t):
    x224 = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        before = swin_t(x224)
        for size in (32, 64, 112, 160, (250, 300), 384, 512):
            h, w = (size, size) if isinstance(size, int) else size
            out = swin_t(torch.randn(1, 3, h, w))
            assert out.shape == (1, 1000) and torch.isfinite(out).all()
        after = swin_t(x224)
    assert torch.equal(before, after)


def test_forward_intermediates_and_pooled_shapes(swin_t):
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        stages = swin_t.forward_intermediates(x, intermediates_only=True)
        feats = swin_t.forward_features(x)
        pooled = swin_t.forward_pooled(x)
    assert [tuple(s.shape) for s in stages] == [(1, 96, 56, 56), (1, 192, 28, 28), (1, 384, 14, 14), (1, 768, 7, 7)]
    assert feats.shape == (1, 768, 7, 7) and pooled.shape == (1, 768)
    assert torch.allclose(swin_t.head(pooled), swin_t.forward_head(feats), atol=1e-6)
    with torch.no_grad():
        odd = swin_t.forward_intermediates(torch.randn(1, 3, 250, 300), intermediates_only=True)
    assert [tuple(s.shape[-2:]) for s in odd] == [(63, 75), (32, 38), (16, 19), (8, 10)]


def test_num_classes_zero_gives_pooled_features():
    model = _tiny(num_classes=0).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (3, 32)
        assert torch.allclose(out, model.forward_pooled(x))


def test_forward_attention_shapes_and_consistency():
    model = _tiny().eval()
    x = torch.randn(2, 3, 32, 32)  # 16x16 tokens: stage 1 window 4 (16 windows), stage 2 8x8 map
    with torch.no_grad():
        logits, attns = model.forward_attention(x)
        fused = model(x)
    assert torch.allclose(logits, fused, atol=1e-5)
    assert [tuple(a.shape) for a in attns] == [(2, 16, 2, 16, 16)] * 2 + [(2, 4, 4, 16, 16)] * 2
    for a in attns:
        assert torch.allclose(a.sum(-1), torch.ones(()), atol=1e-5)
    # shifted block: tokens of different regions get (exactly) zero weight
    shifted = attns[1][0]  # (nW, heads, N, N)
    mask = shift_attention_mask(16, 16, 4, 2) != 0  # (nW, N, N)
    assert shifted.permute(1, 0, 2, 3)[:, mask].abs().max() == 0


def test_run_time_window_shrink_matches_model_built_small():
    """A model built for 224 px run at 64 px (stages 2-4 smaller than the window)
    equals a model built for 64 px carrying the matching bias sub-tables."""
    torch.manual_seed(0)
    big = SwinTransformer(img_size=224, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                          num_classes=7, drop_path_rate=0.0).eval()
    small = SwinTransformer(img_size=64, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                            num_classes=7, drop_path_rate=0.0).eval()
    assert small.window_sizes == [7, 7, 4, 2] and big.window_sizes == [7, 7, 7, 7]
    sd = big.state_dict()
    for key, table in list(sd.items()):
        if key.endswith("relative_position_bias_table"):
            i = int(key.split(".")[1])
            m, t = small.window_sizes[i], 7
            grid = table.view(2 * t - 1, 2 * t - 1, -1)
            sd[key] = grid[t - m : t + m - 1, t - m : t + m - 1].reshape(-1, table.shape[-1])
    small.load_state_dict(sd)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(big(x), small(x), atol=1e-5)
        _, attns = big.forward_attention(x)
    # stage 2 (8x8 map, window 7) is padded to 14x14: 4 windows of 49 tokens; stage 3 shrinks to 4x4
    assert [tuple(a.shape[1:]) for a in attns[2:6]] == [(4, 2, 49, 49)] * 2 + [(1, 4, 16, 16)] * 2
    assert big.layers[2].blocks[1].window_and_shift(4, 4) == (4, 0)


def test_drop_path_rises_linearly():
    model = create_model("swin_tiny_patch4_window7_224", drop_path_rate=0.3, num_classes=0)
    probs = [blk.drop_path.drop_prob if isinstance(blk.drop_path, DropPath) else 0.0
             for layer in model.layers for blk in layer.blocks]
    assert len(probs) == 12
    assert probs == pytest.approx(torch.linspace(0, 0.3, 12).tolist())
    assert probs[0] == 0.0 and probs[-1] == pytest.approx(0.3)


# --------------------------------------------------------------- internals
@pytest.mark.parametrize("shift", [0, 2])
def test_window_order_equals_roll_and_partition(shift):
    x = torch.randn(2, 12, 8, 3)
    order, inverse = window_order(12, 8, 4, shift)
    ref = window_partition(torch.roll(x, (-shift, -shift), (1, 2)), 4)
    got = x.reshape(2, 96, 3).index_select(1, order).view(-1, 16, 3)
    assert torch.equal(got, ref)
    back = got.reshape(2, 96, 3).index_select(1, inverse).view(2, 12, 8, 3)
    assert torch.equal(back, x)
    assert torch.equal(window_reverse(ref, 4, 12, 8), torch.roll(x, (-shift, -shift), (1, 2)))


def test_relative_position_index_sub_window():
    full = relative_position_index(7)
    assert full.shape == (49, 49) and full.max() == 168 and full.min() == 0
    sub = relative_position_index(3, 7)
    assert sub.shape == (9, 9) and sub.max() < 169
    with pytest.raises(ValueError, match="smaller than window"):
        relative_position_index(5, 3)


def test_shift_mask_values():
    official = shift_attention_mask(14, 14, 7, 3)
    assert official.shape == (4, 49, 49)
    assert set(official.unique().tolist()) == {-100.0, 0.0}
    ours = shift_attention_mask(14, 14, 7, 3, fill=MASK_FILL)
    assert torch.equal(ours != 0, official != 0)
    assert (official[0] == 0).all()  # the top-left window is not split


def test_gradients_match_finite_differences():
    """float64 gradcheck through the gathers, in-place residual adds and the
    explicit attention path, for the input and a shifted block's bias table."""
    model = _tiny(img_size=8, patch_size=1, embed_dim=4, depths=(2,), num_heads=(2,), window_size=4,
                  num_classes=3).double().train()
    table_name = "layers.0.blocks.1.attn.relative_position_bias_table"
    params = dict(model.named_parameters())

    def fn(x, table):
        return torch.func.functional_call(model, {**params, table_name: table}, (x,))

    x = torch.randn(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    table = params[table_name].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (x, table), eps=1e-6, atol=1e-5)


def test_inference_then_training_and_cache_invalidation():
    """Caches filled under inference_mode must not break training, and loading
    new weights must invalidate the cached masks."""
    model = _tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        model(x)
        model(x[:1])
    model.train()
    model(x).sum().backward()  # raised "Inference tensors cannot be saved for backward" once
    model.eval()
    with torch.no_grad():
        a = model(x)
        other = _tiny()
        other.load_state_dict({k: v + 0.01 * torch.randn_like(v) for k, v in model.state_dict().items()})
        model.load_state_dict(other.state_dict())
        assert torch.allclose(model(x), other.eval()(x), atol=1e-6)
        assert not torch.allclose(model(x), a)


@pytest.mark.parametrize("batch", [1, 3])
def test_fused_and_explicit_paths_agree_with_padding(batch):
    model = _tiny(drop_path_rate=0.0).eval()
    x = torch.randn(batch, 3, 42, 38)  # 21x19 tokens: padded to windows, odd merging
    with torch.no_grad():
        fused = model(x)
        explicit, _ = model.forward_attention(x)
        again = model(x)
    assert torch.allclose(fused, explicit, atol=1e-5)
    assert torch.equal(fused, again)


@pytest.mark.parametrize("speed_path", ["one_gather_shift", "fused_attn", "all"])
def test_speed_paths_equal_the_plain_formulation(speed_path):
    """The one-gather shift + partition (vs roll + reshape, official), the
    fused SDPA (vs matmuls + softmax) and all speed paths together give the
    plain formulation's outputs, and in training its gradients: two models
    with the same weights built with different SpeedOptions."""
    x = torch.randn(3, 3, 42, 38)  # padding, shifted windows, odd merging

    def run(speed):
        torch.manual_seed(0)
        model = _tiny(drop_path_rate=0.0, speed=speed)
        frozen_table = [p for n, p in model.named_parameters() if "relative_position_bias_table" in n]
        model.eval()
        with torch.no_grad():
            logits = model(x)
        model.train()
        model.zero_grad()
        for p in frozen_table:  # a frozen table lets training take the SDPA path too
            p.requires_grad_(speed_path == "one_gather_shift")
        loss = model(x).square().mean()
        loss.backward()
        return [logits, loss.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None]

    fast = run(None)
    plain = run(SpeedOptions.plain() if speed_path == "all" else SpeedOptions(**{speed_path: False}))
    assert len(fast) == len(plain)
    for a, b in zip(fast, plain):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------- stochastic depth
def _kept_after_seed(seed: int, batch: int, keep: float) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.empty(batch).bernoulli_(keep).nonzero().squeeze(1)


@pytest.mark.parametrize("branch_name", ["attention", "mlp"])
def test_drop_path_skips_dropped_samples_with_droppath_result(branch_name):
    """drop_path_residual runs a Swin block's branch on the kept samples only
    and gives x + DropPath(branch(x)) -- same random draws, same values and
    gradients (to float rounding of the smaller matmuls)."""
    model = _tiny(drop_path_rate=0.9).train()
    blk = model.layers[1].blocks[1]  # SW-MSA block, drop probability 0.9
    assert isinstance(blk.drop_path, DropPath) and blk.drop_path.drop_prob == pytest.approx(0.9)
    keep, batch = 1 - blk.drop_path.drop_prob, 6
    seed = next(s for s in range(100) if 1 < len(_kept_after_seed(s, batch, keep)) < batch)
    kept = _kept_after_seed(seed, batch, keep)
    x0 = torch.randn(batch, 8, 8, 32)

    def branch(t):
        if branch_name == "attention":
            return blk.attention_branch(t)
        return blk.mlp(blk.norm2(t))

    def run(fn):
        model.zero_grad()
        x = x0.clone().requires_grad_(True)
        torch.manual_seed(seed)
        out = fn(x)
        out.backward(torch.ones_like(out) + x0)
        return [out.detach(), x.grad] + [p.grad.clone() for p in blk.parameters() if p.grad is not None]

    ref = run(lambda x: x + blk.drop_path(branch(x)))  # DropPath draws after the branch
    seen = []

    def counting(t):
        seen.append(t.shape[0])
        return branch(t)

    ours = run(lambda x: drop_path_residual(x, counting, blk.drop_path, blk.speed))
    assert seen == [len(kept)]  # the branch saw the kept samples only
    assert len(ref) == len(ours)
    for a, b in zip(ref, ours):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)
    dropped = sorted(set(range(batch)) - set(kept.tolist()))
    assert torch.equal(ours[0][dropped], x0[dropped])  # dropped samples pass through unchanged


# --------------------------------------------------------------- trace / compile
def test_jit_trace_batch1_runs_batch3():
    model = _tiny().eval()
    x1, x3 = torch.randn(1, 3, 32, 32), torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        traced = torch.jit.trace(model, x1, check_trace=False)
        assert torch.allclose(traced(x3), model(x3), atol=1e-5)  # the batch size is not baked in
        assert torch.allclose(traced(x1), model(x1), atol=1e-5)


def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    model = SwinTransformer(img_size=32, patch_size=4, embed_dim=8, depths=(2,), num_heads=(1,), window_size=4,
                            num_classes=3, drop_path_rate=0.0).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model)(x)
    assert (compiled - eager).abs().max().item() <= 1e-4


def test_torch_compile_training_follows_eager():
    """The training path ``compile: true`` (``torch.compile(model, dynamic=False)``,
    as ``swinlab.training.engine`` wraps it): the same loss curve as eager over
    a few AdamW steps, with dropout and stochastic depth off."""

    def losses(compile_: bool) -> list[float]:
        model = SwinTransformer(img_size=16, patch_size=2, embed_dim=8, depths=(2,), num_heads=(1,), window_size=4,
                                num_classes=3, drop_path_rate=0.0).train()
        torch.manual_seed(1)
        x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
        step_model = torch.compile(model, dynamic=False) if compile_ else model
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        out = []
        for _ in range(4):
            loss = torch.nn.functional.cross_entropy(step_model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(loss.item())
        return out

    torch.manual_seed(0)
    eager = losses(False)
    torch.manual_seed(0)
    compiled = losses(True)
    assert eager[-1] < eager[0]  # it learns
    assert max(abs(a - b) for a, b in zip(eager, compiled)) <= 1e-4, (eager, compiled)


@pytest.mark.parametrize("train", [False, True])
def test_compiled_graph_of_an_off_cpu_model_computes_nothing_on_the_cpu(train: bool):
    """Under torch.compile the window order, shift masks and clipped-window bias index are
    built inside the traced graph; they must be built on the model's device, else Inductor
    compiles CPU kernels into a GPU model (it failed so on an H200). The model lives on the
    meta device here, and a backend lists every graph value that is a CPU tensor. Swin-T at
    64 px pads stage 1 (16 -> 21 tokens), shifts, and clips the window in stages 3-4."""
    on_cpu: list[str] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        for node in gm.graph.nodes:
            value = node.meta.get("example_value")
            for t in value if isinstance(value, (tuple, list)) else [value]:
                if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                    on_cpu.append(f"{node.op} {node.target} {tuple(t.shape)}")
        return gm.forward

    model = create_model("swin_tiny_patch4_window7_64", num_classes=10).to("meta").train(train)
    torch.compiler.reset()
    out = torch.compile(model, backend=backend, dynamic=False)(torch.empty(2, 3, 64, 64, device="meta"))
    torch.compiler.reset()
    assert out.shape == (2, 10) and out.device.type == "meta"
    assert on_cpu == [], on_cpu[:5]


# --------------------------------------------------------------- errors
def test_error_wrong_channels():
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\), got \(1, 4, 32, 32\)"):
        _tiny()(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="expected images"):
        _tiny()(torch.randn(3, 32, 32))


def test_error_size_not_divisible_without_padding():
    model = _tiny(pad_input=False)
    with pytest.raises(ValueError, match=r"input size 33x32 is not divisible by the patch size 2x2.*pad=False"):
        model(torch.randn(1, 3, 33, 32))
    assert model(torch.randn(1, 3, 34, 32)).shape == (1, 5)  # divisible: fine


def test_error_bad_constructor_arguments():
    with pytest.raises(ValueError, match="num_heads has 3 entries"):
        SwinTransformer(depths=(2, 2), num_heads=(1, 2, 3))
    with pytest.raises(ValueError, match="drop_path_rate"):
        SwinTransformer(drop_path_rate=1.5)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        SwinTransformer(embed_dim=10, num_heads=(3, 6, 12, 24))


def test_padding_rule_matches_math():
    model = _tiny(patch_size=4).eval()
    with torch.no_grad():
        stages = model.forward_intermediates(torch.randn(1, 3, 30, 45), intermediates_only=True)
    h, w = math.ceil(30 / 4), math.ceil(45 / 4)
    assert tuple(stages[0].shape[-2:]) == (h, w)
    assert tuple(stages[1].shape[-2:]) == (math.ceil(h / 2), math.ceil(w / 2))
