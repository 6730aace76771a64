"""The graph step (``train_step="graph"``): per-image device augmentation (DeviceAugment,
per-image RandAugment), no host synchronisation, one compiled graph, training runs with it."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from swinlab.data import AugmentConfig, BatchAugment, DeviceAugment, draw_randaugment, randaugment
from swinlab.data.device_augment import crop_theta, first_fit_boxes, mix_batch, random_erase, smooth_targets
from swinlab.data.randaugment import RANDAUGMENT_OPS, SIGNED_OPS
from swinlab.factory import create_model
from swinlab.training.config import ConfigError, TrainConfig, load_config
from swinlab.training.engine import train
from swinlab.training.graph_step import GraphStep, HostSyncError, NoHostSync
from swinlab.training.optim import build_optimizer
from swinlab.training.schedule import WarmupCosineSchedule
from test_training_engine import make_squares, tiny_config

REF003 = load_config("ref003_tiny_imagenet")
#: reference 003's Swin-T shrunk to two one-block stages: Inductor's compile of the full
#: Swin-T step takes minutes on two cores (the augmentation alone ~80 s cold).
SHRUNK = dict(embed_dim=16, depths=[1, 1], num_heads=[1, 2])


@pytest.fixture()
def one_thread():
    """One intra-op thread: compiled CPU kernels on a shared 2-core machine otherwise spin
    against each other (seconds per tiny step)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _batch(b: int = 4, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=g), torch.randint(0, 200, (b,),
                                                                                                     generator=g)


# ---------------------------------------------------------------------- augmentation
def test_device_augment_outputs_for_each_geometry() -> None:
    base = REF003.aug.with_size(32)
    x, y = _batch(6)
    for cfg in (base, AugmentConfig(img_size=32, pad_crop=4), AugmentConfig(img_size=32, random_resized_crop=False,
                                                                           interpolation="bilinear")):
        torch.manual_seed(0)
        out, t = DeviceAugment(cfg, 200)(x, y)
        torch.manual_seed(0)
        again, _ = DeviceAugment(cfg, 200)(x, y)
        assert out.shape == (6, 3, 32, 32) and t.shape == (6, 200) and torch.equal(out, again)
        assert torch.allclose(t.sum(1), torch.ones(6)) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="expects images"):
        DeviceAugment(base, 200)(x[0], y)


def test_crop_theta_resamples_whole_pixel_boxes_exactly() -> None:
    x = torch.rand(2, 3, 8, 8)
    one = torch.ones(2)
    grid = lambda theta, size: torch.nn.functional.affine_grid(theta, [2, 3, size, size], align_corners=False)
    sample = lambda theta, size: torch.nn.functional.grid_sample(x, grid(theta, size), mode="nearest",
                                                                 align_corners=False)
    flip = torch.tensor([False, True])
    full = sample(crop_theta(0 * one, 0 * one, 8 * one, 8 * one, flip, 8, 8), 8)
    assert torch.equal(full[0], x[0]) and torch.equal(full[1], x[1].flip(-1))
    box = sample(crop_theta(2 * one, 4 * one, 4 * one, 4 * one, torch.zeros(2, dtype=torch.bool), 8, 8), 8)
    assert torch.equal(box, x[:, :, 2:6, 4:8].repeat_interleave(2, -1).repeat_interleave(2, -2))


def _torchvision_box(height: int, width: int, scale: tuple, ratio: tuple, rng: random.Random) -> tuple | None:
    """torchvision ``RandomResizedCrop.get_params``' size draw, written out (None: no try fits)."""
    for _ in range(10):
        area = height * width * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return h, w
    return None


def test_first_fit_boxes_follow_torchvision_draws() -> None:
    torch.manual_seed(0)
    n, scale, ratio = 20000, (0.08, 1.0), (3 / 4, 4 / 3)
    h, w, found = first_fit_boxes(n, 48, 64, scale, ratio, torch.device("cpu"), strict=False)
    rng = random.Random(0)
    ref = torch.tensor([b for b in (_torchvision_box(48, 64, scale, ratio, rng) for _ in range(n)) if b]).float()
    assert found.float().mean() == pytest.approx(len(ref) / n, abs=0.005)
    ours = torch.stack([h[found], w[found]], 1)
    assert (ours[:, 0] <= 48).all() and (ours[:, 1] <= 64).all() and (ours == ours.round()).all()
    for f in (lambda b: b[:, 0] * b[:, 1], lambda b: b[:, 1] / b[:, 0]):  # area, aspect
        a, b = f(ours), f(ref)
        assert abs(a.mean() - b.mean()) < 5 * math.sqrt(a.var() / len(a) + b.var() / len(b))
    _, _, none = first_fit_boxes(50, 8, 8, (0.9, 1.0), (3.0, 4.0), torch.device("cpu"), strict=True)
    assert not none.any()  # nothing that wide fits: the callers fall back (centre crop / no erasing)


def test_random_erasing_and_mixing() -> None:
    torch.manual_seed(0)
    x = torch.ones(4000, 3, 16, 16)
    erased = random_erase(x, 0.25)
    hit = (erased == 0).flatten(1).any(1).float().mean().item()
    assert 0.2 < hit < 0.3  # p = 0.25, a few tries miss
    assert ((erased == 0) | (erased == 1)).all()
    y = smooth_targets(torch.arange(8), 8, 0.1)  # own label 0.9125, others 0.0125
    img = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 16, 16)
    mixed, t = mix_batch(img, y, 1.0, 0.0, 1.0, 0.5)  # mixup only: every pixel lam x + (1 - lam) flip
    lam = (t[:, :].diagonal() - 0.0125) / 0.9
    assert torch.allclose(mixed, img * lam.view(-1, 1, 1, 1) + img.flip(0) * (1 - lam.view(-1, 1, 1, 1)), atol=1e-5)
    assert torch.allclose(t.sum(1), torch.ones(8)) and torch.allclose(lam, lam[0].expand(8))  # one lam per batch
    cut, t = mix_batch(img, y, 0.0, 1.0, 1.0, 0.5)  # cutmix only: lam is the share of own pixels
    own = (cut == img).float()[:, 0].mean((1, 2))
    assert torch.allclose(own, (t.diagonal() - 0.0125) / 0.9, atol=1e-5) and (own < 1).any()


# ---------------------------------------------------------------------- RandAugment per image (item 2)
def test_randaugment_operations_are_drawn_per_image() -> None:
    """Each image draws its own operations, uniformly among torchvision's 14, independently
    of the others: two images of a batch get different first operations 13/14 of the time
    and different pairs 195/196 of the time (kornia's per-batch draw: never)."""
    torch.manual_seed(0)
    n = 28000
    ops, mags = draw_randaugment(n, 2, 9.0)
    counts = torch.bincount(ops.flatten(), minlength=14).float()
    expected = 2 * n / 14
    assert ((counts - expected).abs() < 5 * math.sqrt(expected)).all(), counts
    a, b = ops[0::2], ops[1::2]  # disjoint pairs of images of one batch
    differ_first = (a[:, 0] != b[:, 0]).float().mean().item()
    differ_pair = (a != b).any(1).float().mean().item()
    sd = math.sqrt(13 / 14 / 14 / (n / 2))
    assert abs(differ_first - 13 / 14) < 5 * sd and differ_pair > 0.99
    assert (ops[:, 0] != ops[:, 1]).float().mean().item() == pytest.approx(13 / 14, abs=0.01)  # with replacement


def test_randaugment_images_get_their_own_operation_at_the_expected_rate() -> None:
    """One layer on identical images: two outputs are equal only when the two images drew the
    same operation (and sign): 5 unsigned ops at 1/14 and 9 signed ones at 1/28 per sign give
    P(equal) = 5/14^2 + 18/28^2 = 38/784."""
    torch.manual_seed(0)
    n = 4000
    img = 0.2 + 0.6 * torch.rand(1, 3, 16, 16)  # away from 0 and 1: no op is the identity on it
    img = (img * 255).round() / 255 + 0.5 / 255  # posterize/equalize read 8-bit levels
    ops, mags = draw_randaugment(n, 1, 9.0)
    out = randaugment(img.expand(n, 3, 16, 16).contiguous(), ops, mags)
    equal = (out[0::2] - out[1::2]).abs().flatten(1).amax(1) < 1e-6
    rate, p = equal.float().mean().item(), 38 / 784
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / (n / 2)), rate
    same_draw = (ops[0::2, 0] == ops[1::2, 0]) & (mags[0::2, 0] == mags[1::2, 0])
    assert torch.equal(equal, same_draw)


def test_randaugment_magnitudes_on_torchvision_scale() -> None:
    torch.manual_seed(0)
    ops, mags = draw_randaugment(20000, 2, 9.0)
    signed = torch.tensor([name in SIGNED_OPS for name in RANDAUGMENT_OPS])[ops]
    assert (mags.abs() == 9.0).all() and (mags[~signed] > 0).all()
    assert (mags[signed] < 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    _, noisy = draw_randaugment(20000, 1, 9.0, 1.5)
    assert 0 <= noisy.abs().min() and noisy.abs().max() <= 30
    assert noisy.abs().mean().item() == pytest.approx(9.0, abs=0.05) and noisy.abs().std().item() == pytest.approx(
        1.5, abs=0.05)
    with pytest.raises(ValueError, match="0, 30"):
        draw_randaugment(2, 1, 31.0)
    # magnitude 9 of 30 -> torchvision's parameters
    x = torch.rand(1, 3, 32, 32)
    one = lambda name, m=9.0: randaugment(x, torch.tensor([[RANDAUGMENT_OPS.index(name)]]), torch.tensor([[m]]))
    assert torch.allclose(one("Brightness"), (x * 1.27).clamp(0, 1)) and torch.allclose(one("Brightness", -9.0),
                                                                                           x * 0.73)
    assert torch.equal(one("Solarize"), torch.where(x >= 0.7, 1 - x, x))
    shifted = one("TranslateX")  # trunc(150/331 * 32 * 9/30) = 4 pixels, black fill
    assert torch.equal(shifted[..., 4:], x[..., :-4]) and (shifted[..., :4] == 0).all()
    levels = (one("Posterize") * 255).round()
    assert (levels % 2 == 0).all()  # 8 - round(9 / 7.5) = 7 bits
    assert torch.allclose(one("Rotate", 0.0), x)


def test_batch_augment_refuses_magnitude_noise() -> None:
    with pytest.raises(ValueError, match="randaugment_mstd"):
        BatchAugment(AugmentConfig(img_size=32, randaugment_n=2, randaugment_mstd=0.5), 10)


# ---------------------------------------------------------------------- the step
def _graph_step(device: str, compile: bool = False, options: dict[str, Any] | None = None,
                shrunk: bool = True, amp: torch.dtype | None = None,
                ddp: bool = False) -> tuple[GraphStep, WarmupCosineSchedule]:
    torch.manual_seed(0)
    model = create_model(REF003.model, num_classes=200, drop_path_rate=REF003.drop_path_rate,
                         **(SHRUNK if shrunk else {})).to(device)
    optimizer = build_optimizer(model, REF003.lr, REF003.weight_decay, REF003.betas)
    schedule = WarmupCosineSchedule(optimizer, REF003.lr, 100, 2, REF003.warmup_lr_init, REF003.min_lr)
    step = GraphStep(model, optimizer, REF003.aug, 200, torch.device(device), amp, REF003.clip_grad,
                     compile=compile, options=options, ddp=ddp)
    return step, schedule


def _run(step: GraphStep, schedule: WarmupCosineSchedule, batches: list, seed: int = 1) -> list[float]:
    torch.manual_seed(seed)
    for x, y in batches:
        step(x, y, 64)
        schedule.step()
    return step.read()[0]


def test_host_sync_guard_catches_each_kind_of_read() -> None:
    t = torch.ones(3)
    reads = (lambda: t.item(), lambda: bool(t.sum() > 0), lambda: float(t[0]), lambda: t.tolist(),
             lambda: t.nonzero(), lambda: t[t > 0], lambda: torch.where(t > 0), lambda: t.unique(),
             lambda: t.to("meta").to("cpu"))
    for read in reads:
        with pytest.raises(HostSyncError), NoHostSync():
            read()
    with NoHostSync():
        assert (t * 2 + 1).shape == (3,)


def test_reference_003_step_has_no_host_synchronisation() -> None:
    """Reference 003's whole eager step (the full Swin-T) on the meta device, where values do
    not exist (a read would fail even unguarded) and the model takes its non-CPU paths, under
    :class:`NoHostSync`; then the AdamW update on the CPU under the guard (the fused kernel
    has no meta implementation)."""
    step, schedule = _graph_step("meta", shrunk=False)
    updates: list[int] = []
    step._adamw = lambda grads: updates.append(len(grads))
    x, y = _batch()
    with NoHostSync():
        for _ in range(2):
            step(x.to("meta"), y.to("meta"), 64)
            schedule.step()
    assert updates == [len(step.params)] * 2
    step, schedule = _graph_step("cpu")
    step._bind_state()
    grads = [torch.randn_like(p) for p in step.params]
    before = [p.detach().clone() for p in step.params]
    with NoHostSync():
        step._adamw(grads)
        schedule.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, step.params))


def test_reference_003_step_traces_as_one_graph(one_thread: None) -> None:
    """``fullgraph=True`` with Dynamo's defaults (``capture_scalar_outputs`` and
    ``capture_dynamic_output_shape_ops`` off) fails on any ``.item()``, host read or
    data-dependent shape; the ``aot_eager`` backend traces augmentation, forward, backward
    and update into one graph without Inductor's code generation."""
    torch._dynamo.reset()
    step, schedule = _graph_step("cpu", compile=True)
    assert step.fullgraph
    step._fn = torch.compile(step._step, fullgraph=True, dynamic=False, backend="aot_eager")
    losses = _run(step, schedule, [_batch(seed=i) for i in range(2)])
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)


@pytest.mark.slow
def test_compiled_reference_003_step_matches_eager(one_thread: None) -> None:
    """Inductor, ``fullgraph=True``, on the CPU: reference 003's step (augmentation, forward,
    loss, backward, clipping, AdamW) with the Swin-T shrunk to two one-block stages (the full
    model's compile takes minutes on 2 cores), batch 4, 3 steps, the same random draws
    (``fallback_random``): losses within 1e-3 of eager. Measured here: 104 s with an empty
    Inductor cache on a busy 2-core machine (load ~4), 8 s with a warm one; the full Swin-T
    step took 260 s to compile (benchmarks/bench_step_ops.py)."""
    torch._dynamo.reset()
    batches = [_batch(seed=i) for i in range(3)]
    eager = _run(*_graph_step("cpu"), batches)
    t0 = time.time()
    step, schedule = _graph_step("cpu", compile=True, options={"fallback_random": True})
    compiled = _run(step, schedule, batches)
    assert step.fullgraph and len(compiled) == 3
    assert max(abs(a - b) for a, b in zip(eager, compiled)) < 1e-3, (eager, compiled, time.time() - t0)


# ---------------------------------------------------------------------- training runs
@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_squares(tmp_path_factory.mktemp("squares"))


def _graph_config(root: Path, out: Path, **kw: Any) -> dict[str, Any]:
    aug = dict(img_size=32, crop_scale=[0.5, 1.0], label_smoothing=0.1, mixup_alpha=0.8, cutmix_alpha=1.0,
               randaugment_n=2, randaugment_m=3, color_jitter=0.4, random_erasing=0.25)
    return tiny_config(root, out, train_step="graph", aug=aug, epochs=3, clip_grad=1.0, ema_decay=0.9,
                       drop_path_rate=0.1, log_every=2, **kw)


class Killed(Exception):
    pass


def test_graph_step_run_logs_and_resumes_exactly(squares: Path, tmp_path: Path) -> None:
    full = train(_graph_config(squares, tmp_path / "full", tensorboard=True))
    assert full["epochs_completed"] == 3 and len(full["step_losses"]) == full["steps"] == 18
    rows = (tmp_path / "full" / "metrics_steps.csv").read_text().splitlines()
    assert len(rows) == 1 + 18 // 2
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_images"] for r in records] == [48, 48, 48]

    def kill(epoch: int, record: dict) -> None:
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train(_graph_config(squares, tmp_path / "part"), on_epoch_end=kill)
    resumed = train(_graph_config(squares, tmp_path / "part", resume=str(tmp_path / "part")))
    assert resumed["step_losses"] == full["step_losses"][-12:]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_graph_step_settings_are_checked(squares: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="accum_steps"):
        TrainConfig.from_dict(dict(train_step="graph", accum_steps=2))
    with pytest.raises(ConfigError, match="amp"):
        TrainConfig.from_dict(dict(train_step="graph", amp="fp16"))
    assert load_config("ref003_tiny_imagenet").train_step == "graph"
    budget = load_config("ref003_gpu_budget")
    assert (budget.model, budget.aug, budget.drop_path_rate) == (REF003.model, REF003.aug, REF003.drop_path_rate)
    assert budget.lr * budget.batch_size / budget.lr_scale_batch == pytest.approx(REF003.lr * 1024 / 128)


def test_schedule_fills_a_tensor_lr_in_place() -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=0.1)
    schedule = WarmupCosineSchedule(opt, 0.1, 10, 2, 0.0, 0.0)
    lr = torch.tensor(0.0)
    opt.param_groups[0]["lr"] = lr
    schedule.step()
    assert opt.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.05)


def test_backward_form_for_ddp_gives_the_same_step() -> None:
    """``ddp=True`` takes its gradients from ``loss.backward()`` (what DDP's all-reduce hooks
    need) instead of ``torch.autograd.grad``: the same losses and weights, ``.grad`` cleared."""
    batches = [_batch(seed=i) for i in range(2)]
    step, schedule = _graph_step("cpu")
    plain = _run(step, schedule, batches)
    backward, schedule = _graph_step("cpu", ddp=True)
    assert _run(backward, schedule, batches) == plain
    assert all(p.grad is None for p in backward.model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(backward.model.parameters(), step.model.parameters()))
