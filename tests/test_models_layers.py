"""Tests of the speed paths of swinlab.models.fast against the plain
formulation: stochastic depth that skips the branch work of dropped samples
must give DropPath's result (Huang et al. 2016; official Swin / timm multiply
by the mask), the cheap dropout must be Bernoulli dropout, the short-row
softmax and the blocked MLP must give the plain values. Paths are chosen by
building with a SpeedOptions; nothing here patches a models module."""

from __future__ import annotations

import pytest
import torch

from swinlab.models import fast as L
from swinlab.models.fast import SpeedOptions
from swinlab.models.layers import DropPath, Mlp
from swinlab.models.swin import SwinTransformer
from swinlab.models.vit import VisionTransformer

FAST = L.resolve_speed(None)


def drop_path_residual(x, branch, drop_path, skip_dropped=True, speed=FAST):
    return L.drop_path_residual(x, branch, drop_path, speed, skip_dropped)


def test_drop_path_residual_all_dropped_eval_and_identity():
    dp = DropPath(0.999).train()
    x = torch.randn(4, 3)
    calls = []

    def branch(t):
        calls.append(t.shape[0])
        return t * 2

    torch.manual_seed(0)
    out = drop_path_residual(x, branch, dp)
    # every sample dropped: the branch still runs on the whole batch, times zero
    assert calls == [4] and torch.equal(out, x)
    dp.eval()
    out = drop_path_residual(x, branch, dp)
    assert calls == [4, 4] and torch.allclose(out, 3 * x)
    out = drop_path_residual(x, branch, torch.nn.Identity())
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
    out = drop_path_residual(x, branch, dp, skip_dropped=False)  # masks instead of skipping
    assert calls[-1] == 4
    torch.manual_seed(seed)
    drop_path_residual(x, branch, dp, speed=SpeedOptions(skip_dropped_samples=False))  # option off: masks
    assert calls[-1] == 4
    out = drop_path_residual(x, branch, torch.nn.Dropout(0.0))  # any other module: applied as is
    assert calls[-1] == 4 and torch.allclose(out, 3 * x)
    half = torch.nn.Module()
    half.forward = lambda t: t / 2
    out = drop_path_residual(x, branch, half)
    assert torch.allclose(out, 2 * x)


def _swin(speed=None) -> torch.nn.Module:
    return SwinTransformer(img_size=32, patch_size=2, embed_dim=16, depths=(2, 2), num_heads=(2, 4),
                           window_size=4, num_classes=5, drop_path_rate=0.5, speed=speed)


def _vit(speed=None) -> torch.nn.Module:
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2,
                             num_classes=4, drop_path_rate=0.6, speed=speed)


def test_all_dropped_branch_parameters_get_zero_gradients():
    """As with DropPath's mask: a block whose branch dropped every sample
    still gives its parameters zero gradients (not None), so AdamW steps them
    (momentum, weight decay) and DistributedDataParallel sees them used."""
    lin = torch.nn.Linear(3, 3)
    x = torch.randn(4, 3, requires_grad=True)
    torch.manual_seed(0)
    out = drop_path_residual(x, lin, DropPath(0.999).train())
    out.sum().backward()
    assert lin.weight.grad is not None and torch.equal(lin.weight.grad, torch.zeros_like(lin.weight))
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("build", [_swin, _vit])
def test_training_step_with_stochastic_depth_equals_masking(build):
    """A whole training step: skipping the dropped samples gives the loss and
    gradients of the masking formulation (official code): the same model
    built with skip_dropped_samples off, in the same process."""
    x = torch.randn(8, 3, 32, 32)

    def step(speed):
        torch.manual_seed(0)
        model = build(speed).train()
        torch.manual_seed(3)
        loss = model(x).square().mean()
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in model.parameters()]

    skipped = step(None)
    masked = step(SpeedOptions(skip_dropped_samples=False))
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


def _node(out: torch.Tensor) -> str:
    return type(out.grad_fn).__name__


def test_sparse_dropout_forward_backward_same_elements():
    """For p <= sparse_dropout_max_p the CPU path drops positions; the
    gradient is zero exactly where the output was dropped, 1 / (1 - p)
    elsewhere, also for a non-contiguous input; the mask path is taken above."""
    drop = L.Dropout(0.1).train()
    x = torch.randn(64, 48, requires_grad=True)
    torch.manual_seed(3)
    out = drop(x.t())  # non-contiguous
    w = torch.randn(48, 64)
    (out * w).sum().backward()
    kept = out != 0
    assert "SparseDropoutFunction" in _node(out) and 0 < int((~kept).sum()) < kept.numel()
    assert torch.allclose(out[kept], x.t()[kept] / 0.9)
    assert torch.allclose(x.grad.t(), torch.where(kept, w / 0.9, 0.0))
    assert "SparseDropoutFunction" not in _node(L.Dropout(0.3).train()(x))
    assert type(L.make_dropout(0.1, SpeedOptions.plain())) is torch.nn.Dropout  # the plain path


@pytest.mark.parametrize("n", [4, 9, 16])
def test_short_row_softmax_equals_torch_softmax(n):
    """The explicit softmax for short rows (2x2 and 3x3 windows) gives
    torch's values and gradients; 16-element rows keep torch's kernel."""
    lanes = FAST.float_lanes
    torch.manual_seed(0)
    x = (torch.randn(64, 3, n, n) * 5).requires_grad_()
    x[0, 0, 0, 0].data.fill_(-1e4)  # a masked entry (windows.MASK_FILL)
    g = torch.randn(64, 3, n, n)
    out = L.softmax_last_dim(x, lanes)
    (grad,) = torch.autograd.grad(out, x, g)
    ref = x.detach().requires_grad_()
    (ref_grad,) = torch.autograd.grad(ref.softmax(-1), ref, g)
    assert torch.allclose(out, ref.softmax(-1), atol=1e-6)
    assert torch.allclose(grad, ref_grad, atol=1e-6)
    taken = "ShortRowSoftmaxFunction" in _node(out)
    assert taken == (n in (4, 9))  # 2x2 and 3x3 windows; rows of 16 keep torch's kernel
    # double backward (gradient penalties, Hessian-vector products) as with torch's softmax
    (g1,) = torch.autograd.grad((L.softmax_last_dim(x, lanes) * g).sum(), x, create_graph=True)
    (h1,) = torch.autograd.grad((g1 ** 2).sum(), x)
    (g2,) = torch.autograd.grad((ref.softmax(-1) * g).sum(), ref, create_graph=True)
    (h2,) = torch.autograd.grad((g2 ** 2).sum(), ref)
    assert torch.allclose(h1, h2, atol=1e-5, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps torch's softmax and its casting policy
        assert "ShortRowSoftmaxFunction" not in _node(L.softmax_last_dim(x, lanes))


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


SMALL_BLOCKS = SpeedOptions(mlp_block_elements=256 * 32, mlp_recompute_min_bytes=1)  # blocks of 256 tokens


def _fc1_calls(mlp) -> list[int]:
    calls: list[int] = []
    mlp.fc1.register_forward_hook(lambda m, a, out: calls.append(out.shape[0]))
    return calls


def test_blocked_mlp_inference_equals_plain():
    """The inference speed path (blocked_mlp_inference) gives the plain MLP's values
    (a token count that is not a multiple of the block), runs fc1's forward
    hooks once per block, and is not taken with autograd on or when off."""
    torch.manual_seed(0)
    mlp = L.FastMlp(8, 32, speed=SpeedOptions(mlp_block_elements=256 * 32)).eval()  # recompute only > 32 MiB
    x = torch.randn(3, 700, 8)
    plain = mlp.fc2(mlp.act(mlp.fc1(x)))
    calls = _fc1_calls(mlp)
    with torch.no_grad():
        blocked = mlp(x)
    assert calls == [256] * 8 + [2100 - 8 * 256] and blocked.shape == (3, 700, 8)
    assert torch.allclose(blocked, plain, atol=1e-6)
    calls.clear()
    out = mlp(x.clone().requires_grad_(True))  # autograd in eval: the plain, differentiable path
    assert len(calls) == 1 and out.grad_fn is not None and torch.allclose(out, plain, atol=1e-6)
    off = L.FastMlp(8, 32, speed=SpeedOptions(blocked_mlp_inference=False, mlp_block_elements=256 * 32)).eval()
    off.load_state_dict(mlp.state_dict())
    calls = _fc1_calls(off)
    with torch.no_grad():
        assert torch.allclose(off(x), blocked, atol=1e-6) and len(calls) == 1


def _run_mlp(mlp, x, grad_out):
    mlp.zero_grad()
    x.grad = None
    out = mlp(x)
    out.backward(grad_out)
    return out.detach(), out.grad_fn, [x.grad.clone()] + [p.grad.clone() for p in mlp.parameters()]


def test_blocked_mlp_training_gradients_equal_plain():
    """The training speed path (blocked_mlp_training: BlockedMlpFunction, blocks
    that do not divide the token count) gives the plain MLP's outputs and the
    gradients of the input and of all four parameters; the plain Mlp with
    the same weights is the reference; with active dropout the plain path runs."""
    torch.manual_seed(0)
    fast_mlp = L.FastMlp(8, 32, speed=SMALL_BLOCKS).train()
    plain_mlp = Mlp(8, 32).train()
    plain_mlp.load_state_dict(fast_mlp.state_dict())
    x = torch.randn(3, 700, 8, requires_grad=True)
    grad_out = torch.randn(3, 700, 8)
    plain, plain_fn, plain_grads = _run_mlp(plain_mlp, x, grad_out)
    fast, fast_fn, fast_grads = _run_mlp(fast_mlp, x, grad_out)
    assert "BlockedMlpFunction" in type(fast_fn.next_functions[0][0]).__name__
    assert "BlockedMlpFunction" not in type(plain_fn.next_functions[0][0]).__name__
    assert torch.allclose(fast, plain, atol=1e-6)
    for a, b in zip(fast_grads, plain_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    dropping = L.FastMlp(8, 32, drop=0.1, speed=SMALL_BLOCKS).train()
    out = dropping(x)
    assert "BlockedMlpFunction" not in type(out.grad_fn.next_functions[0][0]).__name__


def test_blocked_mlp_training_runs_hooks_and_uses_what_they_return():
    """fc1 / fc2 forward hooks run on the training path (once per block, and
    again in the recomputation, as under torch.utils.checkpoint), and a hook
    that changes the output changes the values and gradients as on the plain path."""
    torch.manual_seed(0)
    fast_mlp = L.FastMlp(8, 32, speed=SMALL_BLOCKS).train()
    plain_mlp = Mlp(8, 32).train()
    plain_mlp.load_state_dict(fast_mlp.state_dict())
    for m in (fast_mlp, plain_mlp):
        m.fc1.register_forward_hook(lambda mod, a, out: out * 2.0)
    calls = _fc1_calls(fast_mlp)
    x = torch.randn(3, 700, 8, requires_grad=True)
    grad_out = torch.randn(3, 700, 8)
    plain, _, plain_grads = _run_mlp(plain_mlp, x, grad_out)
    fast, fast_fn, fast_grads = _run_mlp(fast_mlp, x, grad_out)
    assert "BlockedMlpFunction" in type(fast_fn.next_functions[0][0]).__name__
    assert len(calls) == 2 * 9  # 9 blocks in forward, 9 in the recomputation
    assert torch.allclose(fast, plain, atol=1e-5)
    for a, b in zip(fast_grads, plain_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-5)


def test_in_place_inference_residual():
    """Without autograd the residual sum is written into the branch output and
    equals x + branch(x); the caller's input is untouched; off, a fresh sum."""
    x = torch.randn(2, 5, 4)
    before = x.clone()
    branch_out = []

    def branch(t):
        branch_out.append(t * 2.0)
        return branch_out[-1]

    with torch.no_grad():
        y = drop_path_residual(x, branch, torch.nn.Identity())
    assert y.data_ptr() == branch_out[-1].data_ptr()
    assert torch.equal(x, before) and torch.allclose(y, 3 * before)
    with torch.no_grad():
        y2 = drop_path_residual(x, branch, torch.nn.Identity(), speed=SpeedOptions(in_place_residual=False))
    assert y2.data_ptr() != branch_out[-1].data_ptr() and torch.equal(y2, y)


def test_blocked_mlp_training_frozen_layers():
    """With fc1 frozen, the training speed path gives fc1 no gradient and the
    same input and fc2 gradients as the plain path."""
    torch.manual_seed(0)
    grads = []
    x = torch.randn(2, 600, 8, requires_grad=True)
    state = L.FastMlp(8, 32).state_dict()
    for mlp in (Mlp(8, 32), L.FastMlp(8, 32, speed=SMALL_BLOCKS)):
        mlp.load_state_dict(state)
        mlp.train().fc1.requires_grad_(False)
        x.grad = None
        mlp(x).square().sum().backward()
        assert mlp.fc1.weight.grad is None and mlp.fc1.bias.grad is None
        grads.append([x.grad.clone(), mlp.fc2.weight.grad.clone(), mlp.fc2.bias.grad.clone()])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-5)
