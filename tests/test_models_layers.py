"""Tests of swinlab.models.layers.drop_path_residual: stochastic depth that
skips the branch work of dropped samples must give DropPath's result
(Huang et al. 2016; official Swin / timm multiply by the mask)."""

from __future__ import annotations

import pytest
import torch

from swinlab.models import layers as L
from swinlab.models.layers import DropPath, drop_path_residual
from swinlab.models.swin import SwinTransformer
from swinlab.models.vit import VisionTransformer


def test_drop_path_residual_all_dropped_eval_and_identity():
    dp = DropPath(0.999).train()
    x = torch.randn(4, 3)
    calls = []

    def branch(t):
        calls.append(t.shape[0])
        return t * 2, "extra"

    torch.manual_seed(0)
    out, extra = drop_path_residual(x, branch, dp)
    # every sample dropped: the branch still runs on the whole batch, times zero
    assert calls == [4] and extra == "extra" and torch.equal(out, x)
    dp.eval()
    out, extra = drop_path_residual(x, branch, dp)
    assert calls == [4, 4] and extra == "extra" and torch.allclose(out, 3 * x)
    out, _ = drop_path_residual(x, branch, torch.nn.Identity())
    assert torch.allclose(out, 3 * x)
    dp = DropPath(0.5).train()

    def kept_after(seed: int) -> int:  # the draws drop_path_residual makes first
        torch.manual_seed(seed)
        return int(torch.empty(4).bernoulli_(0.5).sum())

    seed = next(s for s in range(100) if 0 < kept_after(s) < 4)
    torch.manual_seed(seed)
    drop_path_residual(x, branch, dp)  # some samples dropped: the branch sees the kept ones
    assert 0 < calls[-1] < 4
    torch.manual_seed(seed)
    out, _ = drop_path_residual(x, branch, dp, skip_dropped=False)  # masks instead of skipping
    assert calls[-1] == 4
    out, _ = drop_path_residual(x, branch, torch.nn.Dropout(0.0))  # any other module: applied as is
    assert calls[-1] == 4 and torch.allclose(out, 3 * x)
    half = torch.nn.Module()
    half.forward = lambda t: t / 2
    out, _ = drop_path_residual(x, branch, half)
    assert torch.allclose(out, 2 * x)


def _swin() -> torch.nn.Module:
    return SwinTransformer(img_size=32, patch_size=2, embed_dim=16, depths=(2, 2), num_heads=(2, 4),
                           window_size=4, num_classes=5, drop_path_rate=0.5)


def _vit() -> torch.nn.Module:
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2,
                             num_classes=4, drop_path_rate=0.6)


def test_all_dropped_branch_parameters_get_zero_gradients():
    """As with DropPath's mask: a block whose branch dropped every sample
    still gives its parameters zero gradients (not None), so AdamW steps them
    (momentum, weight decay) and DistributedDataParallel sees them used."""
    lin = torch.nn.Linear(3, 3)
    x = torch.randn(4, 3, requires_grad=True)
    torch.manual_seed(0)
    out, _ = drop_path_residual(x, lambda t: (lin(t), None), DropPath(0.999).train())
    out.sum().backward()
    assert lin.weight.grad is not None and torch.equal(lin.weight.grad, torch.zeros_like(lin.weight))
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("module, build", [("swin", _swin), ("vit", _vit)])
def test_training_step_with_stochastic_depth_equals_masking(monkeypatch, module, build):
    """A whole training step: skipping the dropped samples gives the loss and
    gradients of the masking formulation (official code)."""
    torch.manual_seed(0)
    model = build().train()
    x = torch.randn(8, 3, 32, 32)

    def step():
        model.zero_grad()
        torch.manual_seed(3)
        loss = model(x).square().mean()
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in model.parameters()]

    skipped = step()
    real = L.drop_path_residual
    monkeypatch.setattr(f"swinlab.models.{module}.drop_path_residual",
                        lambda x, b, d, skip_dropped=True: real(x, b, d, False))
    masked = step()
    assert len(skipped) == len(masked)
    for a, b in zip(skipped, masked):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------ dropout with cheap masks
@pytest.mark.parametrize("p", [0.03, 0.1, 0.5])
def test_cheap_dropout_masks_are_bernoulli_with_the_right_rate(p):
    """The 16-bit masks (four per 64-bit draw) are independent Bernoulli
    draws whose drop rate is p quantised to 2**-16, and the scale makes the
    expectation exact (Srivastava et al. 2014)."""
    torch.manual_seed(0)
    n = 1 << 22
    mask = L.dropout_mask((n,), p, torch.device("cpu"))
    assert mask.dtype == torch.float32 and mask.shape == (n,)
    values = mask.unique()
    assert values.numel() == 2 and values[0] == 0.0
    realised = 1 - 1 / values[1].item()  # kept elements carry 1 / (1 - realised p)
    keep = mask != 0
    assert abs(realised - p) <= 2**-17 + 1e-7
    kept = keep.double().mean().item()
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs((1 - kept) - realised) < 5 * sigma
    # neighbours (same 64-bit draw, and across draws) are uncorrelated
    k = keep.double() - kept
    for lag in (1, 2, 3, 4, 5):
        corr = (k[:-lag] * k[lag:]).mean().item() / (kept * (1 - kept))
        assert abs(corr) < 5 / n**0.5, lag
    # the dropout output has the input's expectation
    out = L.Dropout(p).train()(torch.ones(n))
    assert abs(out.double().mean().item() - 1.0) < 5 * (p / (1 - p) / n) ** 0.5


def test_cheap_dropout_matches_the_bernoulli_rate_and_is_seeded():
    torch.manual_seed(1)
    cheap = L.dropout_mask((1 << 20,), 0.25, torch.device("cpu")) != 0
    torch.manual_seed(1)
    again = L.dropout_mask((1 << 20,), 0.25, torch.device("cpu")) != 0
    assert torch.equal(cheap, again)  # reproducible from the global seed
    reference = torch.empty(1 << 20).bernoulli_(0.75).bool()
    # two-proportion z-test: same keep rate as torch's Bernoulli sampler
    a, b, n = cheap.double().mean().item(), reference.double().mean().item(), 1 << 20
    pooled = (a + b) / 2
    assert abs(a - b) < 5 * (2 * pooled * (1 - pooled) / n) ** 0.5


@pytest.mark.parametrize("p", [0.01, 0.03, 0.1])
def test_sparse_dropout_positions_are_bernoulli(p):
    """dropped_positions draws Geometric(p) gaps: the positions must be a
    Bernoulli(p) sequence -- the right rate, no correlation between
    neighbours, the same rate at every position (also the first ones)."""
    torch.manual_seed(0)
    n = 1 << 22
    pos = L.dropped_positions(n, p)
    assert pos.dtype == torch.int64 and int(pos[0]) >= 0 and int(pos[-1]) < n
    assert bool((pos[1:] > pos[:-1]).all())  # sorted and distinct
    drop = torch.zeros(n, dtype=torch.float64)
    drop[pos] = 1.0
    rate = drop.mean().item()
    assert abs(rate - p) < 5 * (p * (1 - p) / n) ** 0.5
    d = drop - rate
    for lag in (1, 2, 3, 7):
        corr = (d[:-lag] * d[lag:]).mean().item() / (rate * (1 - rate))
        assert abs(corr) < 5 / n**0.5, lag
    reps, small = 20000, 48
    counts = torch.zeros(small)
    for _ in range(reps):
        counts[L.dropped_positions(small, p)] += 1
    sigma = (reps * p * (1 - p)) ** 0.5
    assert float((counts - reps * p).abs().max()) < 5 * sigma
    assert L.dropped_positions(0, p).numel() == 0


def test_sparse_dropout_positions_drawn_over_several_rounds():
    """Gaps drawn a few at a time (the rounds that follow when the first
    one falls short of the end) give the same Bernoulli sequence; one
    element alone is dropped with probability p; p outside (0, 1) is refused."""
    torch.manual_seed(0)
    n, p = 1 << 16, 0.1
    pos = L.dropped_positions(n, p, _chunk=7)
    assert bool((pos[1:] > pos[:-1]).all()) and int(pos[0]) >= 0 and int(pos[-1]) < n
    assert abs(pos.numel() / n - p) < 5 * (p * (1 - p) / n) ** 0.5
    ones = sum(L.dropped_positions(1, 0.25, _chunk=1).numel() for _ in range(4000))
    assert abs(ones / 4000 - 0.25) < 5 * (0.25 * 0.75 / 4000) ** 0.5
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="drop probability"):
            L.dropped_positions(10, bad)


def test_sparse_dropout_matches_torch_bernoulli_and_is_seeded():
    torch.manual_seed(1)
    first = L.dropped_positions(1 << 20, 0.05)
    torch.manual_seed(1)
    assert torch.equal(first, L.dropped_positions(1 << 20, 0.05))  # reproducible from the global seed
    reference = torch.empty(1 << 20).bernoulli_(0.05)
    a, b, n = first.numel() / (1 << 20), reference.mean().item(), 1 << 20
    pooled = (a + b) / 2
    assert abs(a - b) < 5 * (2 * pooled * (1 - pooled) / n) ** 0.5


def test_sparse_dropout_forward_backward_same_elements(monkeypatch):
    """For p <= SPARSE_DROPOUT_MAX_P the CPU path drops positions; the
    gradient is zero exactly where the output was dropped, 1 / (1 - p)
    elsewhere, also for a non-contiguous input; the mask path is taken above."""
    drop = L.Dropout(0.1).train()
    x = torch.randn(64, 48, requires_grad=True)
    taken = []
    real = L.SparseDropoutFunction.apply
    monkeypatch.setattr(L.SparseDropoutFunction, "apply", lambda *a: taken.append(1) or real(*a))
    torch.manual_seed(3)
    out = drop(x.t())  # non-contiguous
    w = torch.randn(48, 64)
    (out * w).sum().backward()
    kept = out != 0
    assert taken and 0 < int((~kept).sum()) < kept.numel()
    assert torch.allclose(out[kept], x.t()[kept] / 0.9)
    assert torch.allclose(x.grad.t(), torch.where(kept, w / 0.9, 0.0))
    taken.clear()
    L.Dropout(0.3).train()(x)
    assert not taken


@pytest.mark.parametrize("n", [4, 9, 16])
def test_short_row_softmax_equals_torch_softmax(monkeypatch, n):
    """The explicit softmax for short rows (2x2 and 3x3 windows) gives
    torch's values and gradients; 16-element rows keep torch's kernel."""
    taken = []
    real = L.ShortRowSoftmaxFunction.apply
    monkeypatch.setattr(L.ShortRowSoftmaxFunction, "apply", lambda x: taken.append(1) or real(x))
    torch.manual_seed(0)
    x = (torch.randn(64, 3, n, n) * 5).requires_grad_()
    x[0, 0, 0, 0].data.fill_(-1e4)  # a masked entry (windows.MASK_FILL)
    g = torch.randn(64, 3, n, n)
    out = L.softmax_last_dim(x)
    (grad,) = torch.autograd.grad(out, x, g)
    ref = x.detach().requires_grad_()
    (ref_grad,) = torch.autograd.grad(ref.softmax(-1), ref, g)
    assert torch.allclose(out, ref.softmax(-1), atol=1e-6)
    assert torch.allclose(grad, ref_grad, atol=1e-6)
    assert bool(taken) == (n in (4, 9))  # 2x2 and 3x3 windows; rows of 16 keep torch's kernel
    # double backward (gradient penalties, Hessian-vector products) as with torch's softmax
    (g1,) = torch.autograd.grad((L.softmax_last_dim(x) * g).sum(), x, create_graph=True)
    (h1,) = torch.autograd.grad((g1 ** 2).sum(), x)
    (g2,) = torch.autograd.grad((ref.softmax(-1) * g).sum(), ref, create_graph=True)
    (h2,) = torch.autograd.grad((g2 ** 2).sum(), ref)
    assert torch.allclose(h1, h2, atol=1e-5, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        taken.clear()
        L.softmax_last_dim(x)
        assert not taken  # autocast keeps torch's softmax and its casting policy


def test_dropout_eval_identity_and_gradient():
    drop = L.Dropout(0.3)
    x = torch.randn(64, 32, requires_grad=True)
    assert drop.eval()(x) is x and L.Dropout(0.0).train()(x) is x
    drop.train()
    torch.manual_seed(2)
    out = drop(x)
    out.sum().backward()
    kept = out != 0
    scale = 1 / (1 - round(0.3 * 65536) / 65536)
    assert torch.allclose(out[kept], x[kept] * scale)
    assert torch.allclose(x.grad, kept.float() * scale)
    with pytest.raises(ValueError, match="dropout probability"):
        L.Dropout(1.0)


def test_blocked_mlp_inference_equals_plain(monkeypatch):
    """The inference speed path BLOCKED_MLP_INFERENCE gives the plain MLP's values
    (a token count that is not a multiple of the block), and is not taken with
    autograd on."""
    torch.manual_seed(0)
    mlp = L.Mlp(8, 32).eval()
    x = torch.randn(3, 700, 8)
    plain = mlp.fc2(mlp.act(mlp.fc1(x)))
    monkeypatch.setattr(L, "MLP_BLOCK_ELEMENTS", 256 * 32)  # blocks of 256 tokens: 9 blocks
    taken = []
    blocked_fn = L.Mlp.forward_blocked
    monkeypatch.setattr(L.Mlp, "forward_blocked", lambda self, t: taken.append(1) or blocked_fn(self, t))
    with torch.no_grad():
        blocked = mlp(x)
    assert taken and blocked.shape == (3, 700, 8)
    assert torch.allclose(blocked, plain, atol=1e-6)
    taken.clear()
    out = mlp(x.clone().requires_grad_(True))  # autograd: the plain, differentiable path
    assert not taken and out.grad_fn is not None and torch.allclose(out, plain, atol=1e-6)
    monkeypatch.setattr(L, "BLOCKED_MLP_INFERENCE", False)
    with torch.no_grad():
        assert torch.allclose(mlp(x), blocked, atol=1e-6) and not taken


def test_blocked_mlp_training_gradients_equal_plain(monkeypatch):
    """The training speed path BLOCKED_MLP_TRAINING (BlockedMlpFunction, blocks
    that do not divide the token count) gives the plain MLP's outputs and the
    gradients of the input and of all four parameters; switched off, or with
    active dropout, the plain path runs."""
    torch.manual_seed(0)
    mlp = L.Mlp(8, 32).train()
    x = torch.randn(3, 700, 8, requires_grad=True)
    grad_out = torch.randn(3, 700, 8)
    monkeypatch.setattr(L, "MLP_BLOCK_ELEMENTS", 256 * 32)  # blocks of 256 tokens
    monkeypatch.setattr(L, "MLP_RECOMPUTE_MIN_BYTES", 1)

    def run(flag: bool):
        monkeypatch.setattr(L, "BLOCKED_MLP_TRAINING", flag)
        mlp.zero_grad()
        x.grad = None
        out = mlp(x)
        out.backward(grad_out)
        return out.detach(), out.grad_fn, [x.grad.clone()] + [p.grad.clone() for p in mlp.parameters()]

    plain, plain_fn, plain_grads = run(False)
    fast, fast_fn, fast_grads = run(True)
    assert "BlockedMlpFunction" in type(fast_fn.next_functions[0][0]).__name__
    assert "BlockedMlpFunction" not in type(plain_fn.next_functions[0][0]).__name__
    assert torch.allclose(fast, plain, atol=1e-6)
    for a, b in zip(fast_grads, plain_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    frozen = L.Mlp(8, 32, drop=0.1).train()
    out = frozen(x)
    assert "BlockedMlpFunction" not in type(out.grad_fn.next_functions[0][0]).__name__


def test_in_place_inference_residual(monkeypatch):
    """Without autograd the residual sum is written into the branch output and
    equals x + branch(x); the caller's input is untouched."""
    x = torch.randn(2, 5, 4)
    before = x.clone()
    branch_out = []

    def branch(t):
        branch_out.append(t * 2.0)
        return branch_out[-1], None

    with torch.no_grad():
        y, _ = L.drop_path_residual(x, branch, torch.nn.Identity())
    assert y.data_ptr() == branch_out[-1].data_ptr()
    assert torch.equal(x, before) and torch.allclose(y, 3 * before)
    monkeypatch.setattr(L, "IN_PLACE_INFERENCE_RESIDUAL", False)
    with torch.no_grad():
        y2, _ = L.drop_path_residual(x, branch, torch.nn.Identity())
    assert y2.data_ptr() != branch_out[-1].data_ptr() and torch.equal(y2, y)


def test_blocked_mlp_training_frozen_layers(monkeypatch):
    """With fc1 frozen, the training speed path gives fc1 no gradient and the
    same input and fc2 gradients as the plain path."""
    torch.manual_seed(0)
    monkeypatch.setattr(L, "MLP_BLOCK_ELEMENTS", 256 * 32)
    monkeypatch.setattr(L, "MLP_RECOMPUTE_MIN_BYTES", 1)
    mlp = L.Mlp(8, 32).train()
    mlp.fc1.requires_grad_(False)
    x = torch.randn(2, 600, 8, requires_grad=True)
    grads = []
    for flag in (False, True):
        monkeypatch.setattr(L, "BLOCKED_MLP_TRAINING", flag)
        x.grad, mlp.fc2.weight.grad, mlp.fc2.bias.grad = None, None, None
        mlp(x).square().sum().backward()
        assert mlp.fc1.weight.grad is None and mlp.fc1.bias.grad is None
        grads.append([x.grad.clone(), mlp.fc2.weight.grad.clone(), mlp.fc2.bias.grad.clone()])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-5)
