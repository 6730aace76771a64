"""End-to-end tests of ``swinlab evaluate`` / ``predict`` / ``features`` on a
tiny checkpoint (training-checkpoint format) and a synthetic folder data set."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from swinlab import create_model
from swinlab.cli import evaluate as cli_evaluate
from swinlab.cli import features as cli_features
from swinlab.cli import predict as cli_predict
from swinlab.cli.main import main
from swinlab.inference import load_features, load_model, predict

from runs_helpers import save_folder_run, save_swinv2_ref_run

MODEL = "swin_micro_patch4_window4_64"
FOLDERS = ["c0", "c1", "c2"]  # class ids (folder names, sorted)
NAMES = ["zero", "one", "two"]
PER_CLASS = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    data = tmp / "data"
    for k, cls in enumerate(FOLDERS):
        for i in range(PER_CLASS):
            size = (64 + 8 * i, 56 + 4 * k)  # different sizes on purpose
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            p = data / "val" / cls / f"img{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(p)
    torch.manual_seed(0)
    model = create_model(MODEL, num_classes=3)
    run = save_folder_run(tmp / "runs" / "tiny", model, MODEL, NAMES, FOLDERS, data, epoch=3)
    zpath = tmp / "imgs.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(data / "val" / "c1" / "img0.png", "imgs/a.png")
    return {"tmp": tmp, "data": data, "run": run, "zip": zpath}


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*.png"))


@pytest.mark.parametrize("command,flag", [("evaluate", "--max-batches"), ("predict", "--attention-out"), ("features", "--out")])
def test_help(command, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert flag in capsys.readouterr().out


def test_register_sets_run():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    for mod in (cli_evaluate, cli_predict, cli_features):
        mod.register(sub)
    args = parser.parse_args(["predict", "src", "a.png", "--topk", "3"])
    assert args.func is cli_predict.run and args.topk == 3 and args.inputs == ["a.png"]
    with pytest.raises(SystemExit):
        parser.parse_args(["predict", "src", "a.png", "--topk", "0"])


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "swinlab.cli.main", "features", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "--out" in out.stdout


def test_evaluate_end_to_end(setup, capsys):
    run = setup["run"]
    rc = main(["evaluate", str(run), "--batch-size", "5", "--no-progress", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0, out
    ev = run / "eval"
    metrics = json.loads((ev / "metrics.json").read_text())
    n = len(FOLDERS) * PER_CLASS
    assert metrics["num_images"] == n and metrics["data"] == "folder" and metrics["split"] == "val"

    # cross-check top-1 / top-5 with the predict path on the same files and labels
    model, info = load_model(run)
    files = _files(setup["data"] / "val")
    labels = [FOLDERS.index(Path(f).parent.name) for f in files]
    preds = predict(model, info, files, topk=3)
    top1 = 100.0 * sum(p[0][0] == y for p, y in zip(preds, labels)) / n
    assert metrics["top1"] == pytest.approx(top1)
    assert metrics["top5"] == 100.0  # 3 classes
    assert f"top-1:  {top1:.2f} %" in out and f"images: {n}" in out

    rows = list(csv.DictReader((ev / "per_class_accuracy.csv").open()))
    assert [r["class_name"] for r in rows] == NAMES
    assert [int(r["count"]) for r in rows] == [PER_CLASS] * 3
    per_class = [100.0 * sum(p[0][0] == y for p, y in zip(preds, labels) if y == k) / PER_CLASS for k in range(3)]
    assert [float(r["accuracy"]) for r in rows] == pytest.approx(per_class, abs=1e-3)
    assert (ev / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"

    out_dir = setup["tmp"] / "ev2"
    rc = main(["evaluate", str(run / "best.pt"), "--max-batches", "1", "--batch-size", "4", "--no-progress",
               "--out", str(out_dir)])
    assert rc == 0
    assert json.loads((out_dir / "metrics.json").read_text())["num_images"] == 4


def test_evaluate_user_errors(setup, capsys):
    run = setup["run"]
    rc = main(["evaluate", str(setup["tmp"] / "missing_run"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("swinlab evaluate: error:") and "missing_run" in err
    rc = main(["evaluate", str(run), "--num-classes", "2", "--no-progress", "--out", str(setup["tmp"] / "e")])
    err = capsys.readouterr().err
    assert rc == 2 and "2 classes" in err and "3 outputs" in err
    rc = main(["evaluate", MODEL, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "--data" in err

    ckpt = torch.load(run / "best.pt", weights_only=True)
    ckpt["classes"] = list(reversed(FOLDERS))
    torch.save(ckpt, setup["tmp"] / "reordered.pt")
    rc = main(["evaluate", str(setup["tmp"] / "reordered.pt"), "--no-progress", "--out", str(setup["tmp"] / "e")])
    err = capsys.readouterr().err
    assert rc == 2 and "class order differs" in err and "'c0' vs 'c2'" in err


def test_predict_end_to_end(setup, capsys):
    run, data = setup["run"], setup["data"]
    rc = main(["predict", str(run), str(data / "val"), "--topk", "2", "--json", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    output = json.loads(captured.out)
    assert output["skipped"] == []
    result = output["results"]
    files = _files(data / "val")
    assert [r["input"] for r in result] == files
    for r in result:
        probs = [p["probability"] for p in r["predictions"]]
        assert [p["rank"] for p in r["predictions"]] == [1, 2]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
        assert all(p["class"] == NAMES[p["index"]] for p in r["predictions"])

    member = f"{setup['zip']}::imgs/a.png"
    att = setup["tmp"] / "att"
    rc = main(["predict", str(run), member, str(data / "val" / "c1" / "img0.png"), "--attention-out", str(att)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0].split() == ["input", "rank", "class", "probability"]
    assert len(lines) == 1 + 2 * 3  # 3 classes < topk 5
    assert lines[1].startswith(member)
    assert sorted(p.name for p in att.iterdir()) == ["0000_a.png", "0001_img0.png"]

    rc = main(["predict", str(run), str(setup["tmp"] / "nope.png")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("swinlab predict: error:") and "nope.png" in err


def test_predict_swinv2_with_attention_maps(setup, reference_dir, capsys):
    """The small reference Swin V2 (official weights) through ``swinlab predict
    --attention-out``: the same top classes as the model in this process, one
    attention PNG per image."""
    run = save_swinv2_ref_run(setup["tmp"] / "runs" / "v2", reference_dir)
    images = _files(setup["data"] / "val")[:2]
    att = setup["tmp"] / "att_v2"
    rc = main(["predict", str(run), *images, "--topk", "3", "--json", "--attention-out", str(att)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    results = json.loads(captured.out)["results"]
    model, info = load_model(run)
    want = predict(model, info, images, topk=3)
    for got, exp in zip(results, want):
        assert [p["index"] for p in got["predictions"]] == [i for i, _, _ in exp]
        assert all(abs(p["probability"] - q) < 1e-5 for p, (_, _, q) in zip(got["predictions"], exp))
    assert sorted(p.name for p in att.iterdir()) == ["0000_img0.png", "0001_img1.png"]
    assert type(model).__name__ == "SwinTransformerV2"


@pytest.mark.parametrize("suffix", [".npy", ".safetensors"])
def test_features_end_to_end(setup, suffix, capsys):
    run, data = setup["run"], setup["data"]
    out = setup["tmp"] / f"feats{suffix}"
    rc = main(["features", str(run), str(data / "val" / "c0"), "--out", str(out), "--batch-size", "3"])
    stdout = capsys.readouterr().out
    assert rc == 0
    feats, names = load_features(out)
    files = _files(data / "val" / "c0")
    assert feats.shape == (PER_CLASS, 192) and names == files
    assert f"({PER_CLASS}, 192)" in stdout and str(out) in stdout

    rc = main(["features", str(run), str(data / "val" / "c0"), "--out", str(setup["tmp"] / "f.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and ".npy or .safetensors" in err


def test_features_swinv2_are_the_heads_input(setup, reference_dir, capsys):
    """``swinlab features`` on the small reference Swin V2: one ``num_features``-wide
    embedding per image, and the model's head applied to them gives the
    probabilities ``predict`` gives (so they are the pooled, final-normed features)."""
    run = save_swinv2_ref_run(setup["tmp"] / "runs" / "v2_features", reference_dir)
    images = _files(setup["data"] / "val")[:3]
    out = setup["tmp"] / "v2_feats.npy"
    rc = main(["features", str(run), *images, "--out", str(out), "--batch-size", "2"])
    assert rc == 0, capsys.readouterr().err
    feats, names = load_features(out)
    model, info = load_model(run)
    assert feats.shape == (3, model.num_features) and names == images
    with torch.no_grad():
        probs = model.head(torch.from_numpy(feats)).softmax(-1)
    for p, exp in zip(probs, predict(model, info, images, topk=3)):
        assert p.topk(3).indices.tolist() == [i for i, _, _ in exp]
        assert p.topk(3).values.tolist() == pytest.approx([q for _, _, q in exp], abs=1e-5)
