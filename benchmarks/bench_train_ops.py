"""The two small-op speed paths of CPU training, each against what it replaces
(a script, not a test): times in ms, same process, the CPU's ISA printed.

* dropout, forward + backward: the 16-bit masks (``dropout_mask``) against
  drawing only the dropped positions (``dropped_positions`` +
  ``SparseDropoutFunction``) for several p -- where the crossover lies
  (``SpeedOptions.sparse_dropout_max_p``);
* softmax over the last dim, forward: ``Tensor.softmax`` against the
  written-out form (``ShortRowSoftmaxFunction``) for several row lengths --
  which rows PyTorch's kernel runs scalar.

Usage (idle machine, ~1 min; ``ATEN_CPU_CAPABILITY=avx2`` to see the AVX2 kernels)::

    python benchmarks/bench_train_ops.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from swinlab.models import fast as L


def ms(fn, iters: int = 20, repeats: int = 3) -> float:
    """Median over ``repeats`` of the mean time of ``iters`` calls, in ms."""
    for _ in range(3):
        fn()
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        runs.append((time.perf_counter() - t) / iters * 1e3)
    return statistics.median(runs)


def dropout_part() -> None:
    print("dropout forward + backward (ms): masks vs positions")
    for p in (0.01, 0.03, 0.1, 0.2, 0.3):
        for shape in ((32768, 64), (32768, 256)):
            x = torch.randn(*shape, requires_grad=True)
            g = torch.randn(*shape)
            scale = 1.0 / (1.0 - p)
            masks = ms(lambda: (x * L.dropout_mask(x.shape, p, x.device)).backward(g))
            positions = ms(lambda: L.SparseDropoutFunction.apply(
                x, L.dropped_positions(x.numel(), p), scale).backward(g))
            print(f"  p {p:<5} {str(shape):<12} masks {masks:7.2f}  positions {positions:7.2f}  "
                  f"({masks / positions:.2f}x)")


def softmax_part() -> None:
    print("softmax over the last dim, forward, 2M elements (ms): torch vs written out")
    for n in (4, 7, 8, 9, 12, 16, 49):
        x = torch.randn((1 << 21) // (n * n), n, n)
        torch_ms = ms(lambda: x.softmax(-1))
        explicit = ms(lambda: L.ShortRowSoftmaxFunction.apply(x))
        taken = "taken" if n < 16 and n % L.cpu_float_lanes() != 0 else "not taken"
        print(f"  rows of {n:<3} softmax {torch_ms:6.2f}  written out {explicit:6.2f}  "
              f"({torch_ms / explicit:.2f}x; speed path {taken} here)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU ISA {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, {args.threads} threads")
    dropout_part()
    softmax_part()


if __name__ == "__main__":
    main()
