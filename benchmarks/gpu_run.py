"""The prepared GPU run of reference 003 (issue 22): one call of at most 9 minutes on a lent
GPU machine, which has no package registry and receives at most 64 MiB per call.

Two commands:

``prepare`` (here, before any device time is spent): split the Tiny ImageNet zip into
pieces of at most 60 MiB and download the wheels the GPU machine lacks (kornia and
kornia_rs, for its Python), one folder per device call under ``.gpu/`` (ignored by git):
``.gpu/carry1`` .. ``.gpu/carry4``, each well under the 64 MiB a call carries beside the
~2 MiB source tree, plus ``manifest.json`` (sizes, sha256)::

    python benchmarks/gpu_run.py prepare --zip ../shared/data/tiny-imagenet-200.zip --python-version 3.12

``run`` (there, in one call; also the CPU dry run): reassemble the zip from the pieces and
check its sha256, ``pip install --no-index`` the wheels when kornia is missing, print the
environment (GPU, torch, CUDA), build the ``ref003_gpu_budget`` step on random batches and
profile it for ``--profile-s`` seconds after compilation (steps/s, images/s, the fraction of
the GPU's bf16 peak, host vs device time per step, the top operators), then train
``ref003_gpu_budget`` on the reassembled data for the time left and evaluate on the full
val set every ``eval_every`` epochs and at the end.  Small result files go to ``--out-dir``
(default ``$OUT`` when set: the device tool brings that folder back)::

    # one device call per folder (carry the folder, copy it out of the tree):
    #   run(carry=[".gpu/carryK"], command="mkdir -p /tmp/gpu && cp -r .gpu/carryK/* /tmp/gpu/")
    # then, in the last call (carrying .gpu/carry4), the run itself:
    python benchmarks/gpu_run.py run --pieces /tmp/gpu --device cuda --total-min 9

    # dry run on the CPU (about a minute; see tests/test_gpu_run.py):
    python benchmarks/gpu_run.py run --pieces DIR --device cpu --total-min 1 --profile-s 5 --cpu-model-tiny
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ZIP_NAME = "tiny-imagenet-200.zip"
PIECE_MIB = 60
CALLS = 4
H200_BF16_TFLOPS = 989.0  # dense bf16 tensor-core peak (NVIDIA H200 SXM datasheet)
TINY = {"model_overrides.embed_dim": 16, "model_overrides.depths": [1, 1], "model_overrides.num_heads": [1, 2],
        "batch_size": 8, "eval_batch_size": 16, "warmup_epochs": 0.5}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------- prepare (here)
def prepare(args: argparse.Namespace) -> None:
    """Pieces and wheels in ``--dest``/carry1..carryN plus ``manifest.json``."""
    src, dest = Path(args.zip), Path(args.dest)
    piece = int(args.piece_mib * 2**20)
    dest.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    parts = [data[i:i + piece] for i in range(0, len(data), piece)]
    folders = [dest / f"carry{k + 1}" for k in range(max(len(parts), 1))]
    for folder, blob, k in zip(folders, parts, range(len(parts))):
        folder.mkdir(exist_ok=True)
        (folder / f"{ZIP_NAME}.part{k:02d}").write_bytes(blob)
    manifest = {"zip": ZIP_NAME, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "parts": len(parts)}
    if args.python_version != "none":
        wheels = folders[-1] / "wheels"
        platforms = [a for plat in args.platform for a in ("--platform", plat)]
        subprocess.run([sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps", "--dest",
                        str(wheels), "--python-version", args.python_version, *platforms, *args.wheels], check=True)
    for folder in folders:
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        print(f"{folder}: {size / 2**20:.1f} MiB")
    print(f"{len(parts)} piece(s) of {src} (sha256 {manifest['sha256'][:12]}...); one device call per folder")


# ---------------------------------------------------------------------- run (there)
def unpack(pieces: list[Path], work: Path) -> Path:
    """Reassemble the zip from every ``*.partNN`` under ``pieces`` and check its sha256;
    install the wheels found there when kornia is missing.

    Raises:
        SystemExit: a piece is missing or the checksum differs.
    """
    manifests = [json.loads(p.read_text()) for d in pieces for p in d.rglob("manifest.json")]
    if not manifests:
        raise SystemExit(f"no manifest.json under {', '.join(map(str, pieces))}: run 'prepare' and carry its folders")
    manifest = manifests[0]
    parts = sorted({p.name: p for d in pieces for p in d.rglob(f"{ZIP_NAME}.part*")}.values(), key=lambda p: p.name)
    if len(parts) != manifest["parts"]:
        raise SystemExit(f"{len(parts)} of {manifest['parts']} pieces found: {[p.name for p in parts]}")
    out = work / ZIP_NAME
    work.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        for p in parts:
            f.write(p.read_bytes())
    if sha256(out) != manifest["sha256"]:
        raise SystemExit(f"{out}: sha256 differs from the manifest's {manifest['sha256']}")
    print(f"data: {out} ({out.stat().st_size / 2**20:.1f} MiB, sha256 ok)", flush=True)
    _install_wheels(pieces)
    return out


def _install_wheels(pieces: list[Path]) -> None:
    try:
        import kornia  # noqa: F401
        return
    except ImportError:
        pass
    wheels = sorted({str(w.parent) for d in pieces for w in d.rglob("*.whl")})
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--quiet"]
    for w in wheels:
        cmd += ["--find-links", w]
    subprocess.run(cmd + ["kornia"], check=True)
    print(f"installed kornia from {', '.join(wheels)}", flush=True)


def environment(device: str) -> dict[str, Any]:
    """Print and return what the run ran on."""
    import torch

    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda": torch.version.cuda, "cpus": os.cpu_count(), "device": device,
                           "dynamo_traces_backward": hasattr(torch._dynamo.config, "trace_autograd_ops")}
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                   bf16=torch.cuda.is_bf16_supported(), cudnn=torch.backends.cudnn.version())
    else:
        env.update(cpu_isa=torch.backends.cpu.get_cpu_capability())
    try:
        import kornia

        env["kornia"] = kornia.__version__
    except ImportError:
        env["kornia"] = None
    for k, v in env.items():
        print(f"  {k}: {v}")
    return env


def budget_config(args: argparse.Namespace, data_root: Path | None, minutes: float | None) -> Any:
    """``ref003_gpu_budget`` with this call's device, data, budget and ``--set`` overrides."""
    from swinlab.training.config import apply_overrides, load_config, parse_set_items

    over: dict[str, Any] = {"device": args.device, "progress": False, "tensorboard": False}
    if args.cpu_model_tiny:
        over.update(TINY)
    over.update(compile=_compile(args))
    if data_root is not None:
        over.update(data_root=str(data_root), out=str(Path(args.work) / "run"), overwrite=True)
    if minutes is not None:
        over["time_budget_min"] = minutes
    over.update(parse_set_items(args.set))
    return apply_overrides(load_config("ref003_gpu_budget"), over, source="gpu_run")


def _compile(args: argparse.Namespace) -> bool:
    return args.compile == "on" or (args.compile == "auto" and args.device.startswith("cuda"))


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _profiled_step(cfg: Any, device: Any) -> tuple[Any, Any, Any, int]:
    """The budget recipe's graph step on random uint8 batches of its shape."""
    import torch

    from swinlab.factory import create_model
    from swinlab.models.flops import count_macs
    from swinlab.training.graph_step import GraphStep
    from swinlab.training.optim import build_optimizer, scaled_lr

    torch.manual_seed(0)
    model = create_model(cfg.model, num_classes=200, drop_path_rate=cfg.drop_path_rate, **cfg.model_overrides)
    macs = count_macs(model, (3, 64, 64))
    model = model.to(device)
    lr = scaled_lr(cfg.lr, cfg.batch_size, cfg.lr_scale_batch)
    opt = build_optimizer(model, lr, cfg.weight_decay, cfg.betas)
    amp = torch.bfloat16 if cfg.amp in ("bf16", "auto") else None
    step = GraphStep(model, opt, cfg.aug, 200, device, amp, cfg.clip_grad, compile=cfg.compile,
                     mode=cfg.compile_mode)
    x = torch.randint(0, 256, (cfg.batch_size, 3, 64, 64), dtype=torch.uint8, device=device)
    y = torch.randint(0, 200, (cfg.batch_size,), device=device)
    return step, x, y, macs


def profile(cfg: Any, seconds: float, peak_tflops: float) -> dict[str, Any]:
    """Compile, then run the step for ``seconds``: steps/s, images/s, TFLOP/s, host vs device
    time per step and the top operators (``torch.profiler`` over 10 steps)."""
    import torch

    device = torch.device(cfg.device if cfg.device != "auto" else "cuda")
    step, x, y, macs = _profiled_step(cfg, device)
    t0 = time.time()
    for _ in range(3):
        step(x, y, 64)
    _sync(device)
    compile_s = time.time() - t0
    n, t0 = 0, time.time()
    while time.time() - t0 < seconds:
        for _ in range(10):
            step(x, y, 64)
        n += 10
        _sync(device)
    wall = (time.time() - t0) / n
    step.read()
    out = {"compile_s": compile_s, "fullgraph": step.fullgraph, "steps": n, "steps_per_s": 1 / wall,
           "images_per_s": cfg.batch_size / wall, "gflop_per_image": 6 * macs / 1e9}
    out["tflops"] = out["images_per_s"] * out["gflop_per_image"] / 1e3
    out["peak_fraction"] = out["tflops"] / peak_tflops if device.type == "cuda" else None
    out.update(_operator_profile(step, x, y, device))
    return out


def _operator_profile(step: Any, x: Any, y: Any, device: Any, steps: int = 10) -> dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, record_function

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(steps):
            with record_function("graph_step"):
                step(x, y, 64)
        _sync(device)
    step.read()
    avg = prof.key_averages()
    host = sum(e.cpu_time_total for e in avg if e.key == "graph_step") / steps / 1e3

    def dev(e: Any) -> float:
        return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)))

    device_ms = sum(dev(e) for e in avg) / steps / 1e3
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = avg.table(sort_by=key, row_limit=20)
    print(table, flush=True)
    return {"host_ms_per_step": host, "device_ms_per_step": device_ms if device.type == "cuda" else None,
            "top_operators": table}


def train_budget(cfg: Any) -> dict[str, Any]:
    """Train the budget recipe, printing each epoch; returns the summary and the logged speeds."""
    from swinlab.training.engine import train

    def show(epoch: int, r: dict[str, Any]) -> None:
        val = f", val top-1 {r['val_top1']:.2f}% top-5 {r['val_top5']:.2f}%" if "val_top1" in r else ""
        print(f"epoch {r['epoch_frac']:.2f}: train loss {r['train_loss']:.4f}{val}, "
              f"{r['images_per_s'] or 0:.0f} img/s, lr {r['lr']:.3g}, {r['time_s']:.0f} s", flush=True)

    summary = train(cfg, on_epoch_end=show)
    speeds = _logged_speeds(Path(summary["run_dir"]) / "metrics_steps.csv")
    summary.update(step_speeds=speeds, median_images_per_s=statistics.median(speeds[1:]) if len(speeds) > 1 else None)
    summary.pop("step_losses", None)
    return summary


def _logged_speeds(path: Path) -> list[float]:
    """images/s of the logged intervals (``metrics_steps.csv``); the first holds compilation."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    col = lines[0].split(",").index("images_per_s")
    return [float(v) for row in lines[1:] if (v := row.split(",")[col])]


def run(args: argparse.Namespace) -> None:
    t_start = time.time()
    sys.path.insert(0, str(REPO / "src"))  # the GPU machine runs the source tree (swinlab not installed)
    out_dir = Path(args.out_dir or os.environ.get("OUT") or REPO / "runs" / "gpu_run")
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = unpack([Path(p) for p in args.pieces], Path(args.work))
    print("environment:", flush=True)
    result: dict[str, Any] = {"environment": environment(args.device)}
    cfg = budget_config(args, None, None)
    print(f"profile: {cfg.model}, batch {cfg.batch_size}, compile {cfg.compile} ({cfg.compile_mode}), "
          f"{args.profile_s:.0f} s", flush=True)
    result["profile"] = profile(cfg, args.profile_s, args.peak_tflops)
    _print_profile(result["profile"])
    _free_device_memory()
    left_min = (args.total_min * 60 - (time.time() - t_start) - args.margin_s) / 60
    print(f"training ref003_gpu_budget for {left_min:.2f} min (this call's time left)", flush=True)
    result["train"] = train_budget(budget_config(args, zip_path, left_min))
    result["total_s"] = time.time() - t_start
    _report(result, out_dir)


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _print_profile(p: dict[str, Any]) -> None:
    frac = f", {100 * p['peak_fraction']:.2f}% of the bf16 peak" if p["peak_fraction"] is not None else ""
    dev = f", device {p['device_ms_per_step']:.2f} ms" if p["device_ms_per_step"] is not None else ""
    print(f"compiled in {p['compile_s']:.0f} s (fullgraph {p['fullgraph']}); {p['steps']} steps: "
          f"{p['steps_per_s']:.2f} steps/s, {p['images_per_s']:.0f} images/s, {p['tflops']:.1f} TFLOP/s{frac}; "
          f"per step: host {p['host_ms_per_step']:.2f} ms{dev}, wall {1e3 / p['steps_per_s']:.2f} ms", flush=True)


def _report(result: dict[str, Any], out_dir: Path) -> None:
    t = result["train"]
    print(f"done in {result['total_s']:.0f} s: {t['epochs_completed']} epochs, val top-1 {t['val_top1']}% "
          f"top-5 {t['val_top5']}% on the full val set, median {t['median_images_per_s']} images/s", flush=True)
    (out_dir / "gpu_run.json").write_text(json.dumps(result, indent=1, default=str))
    run_dir = Path(t["run_dir"])
    for name in ("metrics.jsonl", "metrics.csv", "metrics_steps.csv", "config.json", "curves.png"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, out_dir / name)
    print(f"results in {out_dir}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("prepare", help="split the zip and fetch the wheels into .gpu/ (here)")
    a.add_argument("--zip", default=str(REPO.parent / "shared" / "data" / ZIP_NAME))
    a.add_argument("--dest", default=str(REPO / ".gpu"))
    a.add_argument("--piece-mib", type=float, default=PIECE_MIB)
    a.add_argument("--python-version", default="3.12", help="the GPU machine's Python; 'none': no wheels")
    a.add_argument("--platform", nargs="+", default=["manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                                                     "manylinux2014_x86_64"])
    a.add_argument("--wheels", nargs="+", default=["kornia==0.9.0", "kornia_rs==0.2.0"])
    r = sub.add_parser("run", help="unpack, profile, train (there; or the CPU dry run)")
    r.add_argument("--pieces", nargs="+", required=True, help="folders holding the carried pieces")
    r.add_argument("--work", default="/tmp/swinlab_gpu_run", help="where the zip and the run folder go")
    r.add_argument("--out-dir", default=None, help="small result files (default $OUT)")
    r.add_argument("--device", default="cuda")
    r.add_argument("--total-min", type=float, default=9.0, help="the whole call's wall-clock budget")
    r.add_argument("--margin-s", type=float, default=40.0, help="kept for the final evaluation and files")
    r.add_argument("--profile-s", type=float, default=60.0)
    r.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="auto: on for CUDA")
    r.add_argument("--peak-tflops", type=float, default=H200_BF16_TFLOPS)
    r.add_argument("--cpu-model-tiny", action="store_true", help="the dry run's two-block Swin, batch 8")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe overrides")
    args = p.parse_args(argv)
    prepare(args) if args.command == "prepare" else run(args)


if __name__ == "__main__":
    main()
