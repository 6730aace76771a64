"""20 training steps of the main job's model and of reference 000's model,
from a fixed seed on fixed synthetic data in fp32, give the losses recorded
at commit 0866af8 (issue 20, acceptance 1): a refactoring of the model core
must not change what training computes (speed paths at their defaults).

The recorded values came from ``python tests/test_training_losses_recorded.py``
run at 0866af8 (2 threads, Sapphire Rapids, AVX512); they are constants here
and must not be regenerated to make a failing run pass.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from swinlab.models.registry import build_model
from swinlab.training.optim import build_optimizer

# case: (model name, build overrides, batch, side, classes, optimizer kwargs, clip_grad)
CASES = {
    # the main job (configs/quick_cpu_tiny_imagenet.json): Keras init, no stochastic depth
    "main_job_micro": ("swin_micro_patch4_window4_64", dict(num_classes=200, img_size=64, drop_path_rate=0.0,
                                                             init="keras"),
                       16, 64, 200, dict(lr=2e-3, weight_decay=0.05), 5.0),
    # the same model with its registry stochastic depth (0.05): the skip-dropped-samples path
    "micro_drop_path": ("swin_micro_patch4_window4_64", dict(), 16, 64, 200, dict(lr=2e-3, weight_decay=0.05), 5.0),
    # reference 000 (configs/ref000_cifar100.json): dropout 0.03 everywhere, MLP twice, Keras AdamW
    "ref000": ("swin_keras_cifar100_patch2_window2_32", dict(), 128, 32, 100,
               dict(lr=1e-3, weight_decay=1e-4, eps=1e-7, decay_all=True), None),
}

STEPS = 20

RECORDED: dict[str, list[float]] = {  # at 0866af8, 2026-12-04 03:13-03:15 UTC, AVX512, 2 threads
    "main_job_micro": [5.59383, 5.689703, 5.851285, 5.938334, 5.580017, 5.754004, 6.21821, 6.343755, 5.610364,
                       5.75025, 5.83983, 5.784409, 5.69107, 6.045772, 5.627168, 5.61762, 6.023695, 6.022014,
                       5.880301, 5.78406],
    "micro_drop_path": [5.295929, 5.257371, 5.277263, 5.37381, 5.373833, 5.365475, 5.383128, 5.350093, 5.349077,
                        5.258691, 5.461113, 5.308958, 5.230267, 5.412733, 5.397216, 5.156539, 5.255477, 5.414765,
                        5.34102, 5.386559],
    "ref000": [4.653672, 4.649931, 4.609954, 4.625043, 4.610312, 4.643952, 4.640226, 4.661436, 4.637643, 4.63331,
               4.628435, 4.653642, 4.640252, 4.630529, 4.632955, 4.636859, 4.628841, 4.637419, 4.638087, 4.630291],
}


def train_losses(case: str) -> list[float]:
    """Seed 0, build, then ``STEPS`` AdamW steps on fixed random batches; the loss of each step."""
    name, overrides, batch, side, classes, opt_kwargs, clip = CASES[case]
    torch.manual_seed(0)
    model = build_model(name, **overrides)
    model.train()
    opt = build_optimizer(model, **opt_kwargs)
    data = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(STEPS):
        x = torch.randn(batch, 3, side, side, generator=data)
        y = torch.randint(0, classes, (batch,), generator=data)
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_training_losses_equal_the_recorded_ones(case):
    losses = train_losses(case)
    assert len(RECORDED[case]) == STEPS
    for step, (got, want) in enumerate(zip(losses, RECORDED[case])):
        assert abs(got - want) <= 1e-4, f"{case}: step {step} loss {got:.6f}, recorded {want:.6f}"


if __name__ == "__main__":  # print the values to record
    torch.set_printoptions(precision=8)
    for c in sys.argv[1:] or sorted(CASES):
        print(f"    {c!r}: {[round(v, 6) for v in train_losses(c)]},")
