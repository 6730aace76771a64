"""Check an exported model against the eager PyTorch model on random inputs.

fp32 exports must match the eager logits to ``tolerance`` (max absolute
difference, default 1e-4) at every batch size checked. int8 exports cannot:
their check is the agreement of the logits, the cosine similarity of each
image's int8 and fp32 logit vectors, which must be at least
``min_cosine`` (default 0.99; measured 0.9988-0.9998 for Swin-T, ViT-S and
the micro Swin with random weights); the top-1 agreement is reported too but
not enforced, since with random weights near-tied logits make it noisy.

Random inputs are standard normal, like normalised images, drawn from a
seeded generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RunError

__all__ = ["FP32_TOLERANCE", "INT8_MIN_COSINE", "VerificationError", "VerifyReport", "verify_outputs", "verify_on_images"]

#: default max |exported - eager| of fp32 logits.
FP32_TOLERANCE = 1e-4
#: default lowest cosine similarity of int8 and fp32 logits per image.
INT8_MIN_COSINE = 0.99


class VerificationError(RunError):
    """An exported model whose outputs differ from the eager model's (exit 1)."""


@dataclass
class VerifyReport:
    """Result of :func:`verify_outputs`.

    Attributes:
        runtime: what ran the export (e.g. ``"ONNX Runtime"``).
        batch_sizes: batches checked. max_abs_diff: per batch, max |exported - eager|.
        cosine: per batch, the lowest per-image cosine similarity of the logits.
        top1_agreement: fraction of all images with the same arg-max.
        int8: which check applies. tolerance: fp32 max abs diff. min_cosine: int8 bound.
        reference: what the outputs were compared with (named in messages).
    """

    runtime: str
    batch_sizes: list[int]
    max_abs_diff: list[float] = field(default_factory=list)
    cosine: list[float] = field(default_factory=list)
    top1_agreement: float = 1.0
    int8: bool = False
    tolerance: float = FP32_TOLERANCE
    min_cosine: float = INT8_MIN_COSINE
    reference: str = "PyTorch"

    @property
    def ok(self) -> bool:
        """The check passed (NaN never passes)."""
        if self.int8:
            return all(c >= self.min_cosine for c in self.cosine)
        return all(d <= self.tolerance for d in self.max_abs_diff)

    def failure(self) -> str:
        """One line naming the worst batch and the bound it broke ("" when ok)."""
        if self.ok:
            return ""
        if self.int8:
            i = min(range(len(self.cosine)), key=lambda k: self.cosine[k] if self.cosine[k] == self.cosine[k] else -2)
            return (f"cosine similarity of {self.runtime} and {self.reference} logits {self.cosine[i]:.6f} at batch "
                    f"{self.batch_sizes[i]} is below {self.min_cosine}")
        i = max(range(len(self.max_abs_diff)),
                key=lambda k: self.max_abs_diff[k] if self.max_abs_diff[k] == self.max_abs_diff[k] else float("inf"))
        return (f"max |{self.runtime} - {self.reference}| = {self.max_abs_diff[i]:.3g} at batch {self.batch_sizes[i]} "
                f"exceeds the tolerance {self.tolerance:g}")

    def summary(self) -> str:
        """One line per batch size and the verdict, e.g.
        ``batch 1: max |diff| 3.1e-07 ...``."""
        lines = []
        for b, d, c in zip(self.batch_sizes, self.max_abs_diff, self.cosine):
            lines.append(f"  batch {b:>3}: max |{self.runtime} - {self.reference}| = {d:.3g}, min cosine {c:.6f}")
        if self.int8:
            rule = f"int8: min cosine >= {self.min_cosine}; top-1 agreement {self.top1_agreement:.1%} (not enforced)"
        else:
            rule = f"fp32: max |diff| <= {self.tolerance:g}"
        lines.append(f"  {'ok' if self.ok else 'FAILED'} ({rule})")
        return "\n".join(lines)


@torch.no_grad()
def verify_outputs(
    reference: nn.Module,
    candidate: Callable[[torch.Tensor], torch.Tensor],
    img_hw: tuple[int, int],
    runtime: str,
    batch_sizes: Sequence[int] = (1, 3),
    int8: bool = False,
    tolerance: float = FP32_TOLERANCE,
    min_cosine: float = INT8_MIN_COSINE,
    seed: int = 0,
) -> VerifyReport:
    """Run ``reference`` (eager, eval mode) and ``candidate`` on the same random
    ``(B, 3, H, W)`` inputs for each B in ``batch_sizes`` and compare the ``(B, C)`` logits.

    Returns:
        the :class:`VerifyReport` (check ``.ok``; this function never raises on a mismatch).

    Raises:
        RunError: the candidate returned a shape other than the reference's.
    """
    reference.eval()
    device = next(reference.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    report = VerifyReport(runtime, list(batch_sizes), int8=int8, tolerance=tolerance, min_cosine=min_cosine)
    agree, total = 0, 0
    for b in batch_sizes:
        x = torch.randn(b, 3, int(img_hw[0]), int(img_hw[1]), generator=gen)
        ref = reference(x.to(device)).float().cpu()
        agree += _compare(report, ref, candidate(x), b)
        total += b
    report.top1_agreement = agree / max(total, 1)
    return report


def _compare(report: VerifyReport, ref: torch.Tensor, candidate_out: object, b: int) -> int:
    """Add one batch's max |diff| and lowest cosine to ``report``; returns its top-1 agreements.

    Raises:
        RunError: the candidate returned a shape other than the reference's.
    """
    out = torch.as_tensor(candidate_out).float().cpu()
    if out.shape != ref.shape:
        raise RunError(f"{report.runtime} returned shape {tuple(out.shape)} at batch {b}, {report.reference} {tuple(ref.shape)}")
    diff = (out - ref).abs().max()
    report.max_abs_diff.append(float(diff) if torch.isfinite(diff) else float("nan"))
    report.cosine.append(float(F.cosine_similarity(out, ref, dim=1).min()))
    return int((out.argmax(1) == ref.argmax(1)).sum())


@torch.no_grad()
def verify_on_images(
    reference: Callable[[torch.Tensor], torch.Tensor],
    candidate: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    runtime: str,
    int8: bool = True,
    batch_size: int = 16,
    tolerance: float = FP32_TOLERANCE,
    min_cosine: float = INT8_MIN_COSINE,
    reference_name: str = "PyTorch",
) -> VerifyReport:
    """:func:`verify_outputs` for callables on given images ``(n, 3, H, W)``
    (preprocessed, or random ones drawn by the caller), in batches of
    ``batch_size``; ``reference`` need not be an ``nn.Module`` (e.g. an
    OpenVINO fp32 graph).

    Returns:
        the :class:`VerifyReport` (check ``.ok``).

    Raises:
        RunError: the candidate returned a shape other than the reference's.
    """
    sizes = [len(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    report = VerifyReport(runtime, sizes, int8=int8, tolerance=tolerance, min_cosine=min_cosine,
                          reference=reference_name)
    agree = sum(_compare(report, torch.as_tensor(reference(images[i:i + batch_size])).float().cpu(),
                         candidate(images[i:i + batch_size]), b)
                for i, b in zip(range(0, len(images), batch_size), sizes))
    report.top1_agreement = agree / max(len(images), 1)
    return report
