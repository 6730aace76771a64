"""PyTorch's two ONNX exporters on swinlab models: which graph to ship.

For each model (random weights, seeded) and each exporter --
``torchscript`` (``torch.onnx.export(dynamo=False)``, traced at batch 1) and
``dynamo`` (``torch.onnx.export(dynamo=True)``, needs onnxscript; example batch
2, since a batch-1 example is specialised to a constant batch of 1) -- it
prints the export time, whether the graph runs in ONNX Runtime and OpenVINO
(CPU, f32) at batch 1, 3 and 17 and its max |difference| from eager PyTorch,
and the ONNX Runtime time of one batch of 17 (median of ``--iters`` calls
after a warm-up), all in this one process. ``swinlab.export.onnx_export``
uses the exporter these figures favour; `benchmarks/RESULTS_deploy.md` records them.

    python benchmarks/bench_onnx_exporters.py --models swin_tiny_patch4_window7_224 swin_micro_patch4_window4_64
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from swinlab import create_model
from swinlab.export.onnx_export import torch_to_onnx
from swinlab.export.runtime import open_session

BATCHES = (1, 3, 17)


def _side(model: torch.nn.Module) -> int:
    size = model.img_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def _check(name: str, exporter: str, tmp: Path, iters: int) -> str:
    torch.manual_seed(0)
    model = create_model(name).eval()
    s = _side(model)
    path = tmp / f"{name}.{exporter}.onnx"
    t0 = time.perf_counter()
    try:
        torch_to_onnx(model, path, (s, s), exporter=exporter)
    except Exception as e:  # report and go on with the next exporter
        return f"{name:<30} {exporter:<11} export FAILED: {str(e).splitlines()[0][:120]}"
    export_s = time.perf_counter() - t0
    xs = {b: torch.randn(b, 3, s, s, generator=torch.Generator().manual_seed(b)) for b in BATCHES}
    with torch.inference_mode():
        refs = {b: model(x).numpy() for b, x in xs.items()}
    cells = []
    session = open_session(path)
    name_in = session.get_inputs()[0].name
    for b in BATCHES:
        try:
            out = session.run(None, {name_in: xs[b].numpy()})[0]
            cells.append(f"ort@{b} {np.abs(out - refs[b]).max():.1e}")
        except Exception as e:
            cells.append(f"ort@{b} FAIL({type(e).__name__})")
    try:
        session.run(None, {name_in: xs[17].numpy()})
        times = []
        for _ in range(iters):
            t1 = time.perf_counter()
            session.run(None, {name_in: xs[17].numpy()})
            times.append(time.perf_counter() - t1)
        ort_ms = f"{1e3 * statistics.median(times):.0f} ms"
    except Exception:
        ort_ms = "n/a"
    try:
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        for b in BATCHES:
            try:
                cells.append(f"ov@{b} {np.abs(compiled(xs[b].numpy())[0] - refs[b]).max():.1e}")
            except Exception as e:
                cells.append(f"ov@{b} FAIL({type(e).__name__})")
    except Exception as e:
        cells.append(f"openvino FAIL({type(e).__name__})")
    return f"{name:<30} {exporter:<11} export {export_s:5.1f} s  ORT batch 17: {ort_ms:>7}  " + "  ".join(cells)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["swin_micro_patch4_window4_64", "swin_tiny_patch4_window7_224"])
    p.add_argument("--exporters", nargs="+", default=["torchscript", "dynamo"])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU ISA: {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for exporter in args.exporters:
                print(_check(name, exporter, Path(tmp), args.iters), flush=True)


if __name__ == "__main__":
    main()
