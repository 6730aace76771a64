"""``predict`` / ``evaluate`` with ``--runtime onnxruntime [--int8]`` and an
``.onnx`` SOURCE, against the eager model on a tiny checkpoint and a
synthetic folder data set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from swinlab import create_model
from swinlab.cli.main import main

from runs_helpers import save_folder_run

pytest.importorskip("onnxruntime")

MODEL = "swin_micro_patch4_window4_64"
FOLDERS = ["c0", "c1", "c2"]
NAMES = ["zero", "one", "two"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rt")
    rng = np.random.default_rng(0)
    data = tmp / "data"
    for k, cls in enumerate(FOLDERS):
        for i in range(3):
            arr = rng.integers(0, 256, (60 + 4 * k, 70 + 6 * i, 3), dtype=np.uint8)
            p = data / "val" / cls / f"img{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(p)
    torch.manual_seed(0)
    model = create_model(MODEL, num_classes=3)
    run = save_folder_run(tmp / "runs" / "tiny", model, MODEL, NAMES, FOLDERS, data, epoch=1)
    return {"tmp": tmp, "data": data, "run": run}


def _predict_json(capsys, argv) -> list[dict]:
    assert main(["predict", *argv, "--json", "--topk", "3"]) == 0
    return json.loads(capsys.readouterr().out)["results"]


def test_predict_onnxruntime_matches_eager(setup, capsys):
    imgs = str(setup["data"] / "val")
    eager = _predict_json(capsys, [str(setup["run"]), imgs])
    ort = _predict_json(capsys, [str(setup["run"]), imgs, "--runtime", "onnxruntime"])
    int8 = _predict_json(capsys, [str(setup["run"]), imgs, "--runtime", "onnxruntime", "--int8"])
    blockwise = _predict_json(capsys, [str(setup["run"]), imgs, "--runtime", "onnxruntime", "--int8",
                                       "--int8-scheme", "blockwise"])
    assert len(eager) == len(ort) == len(int8) == len(blockwise) == 9
    for e, o, q, b in zip(eager, ort, int8, blockwise):
        assert [p["class"] for p in o["predictions"]] == [p["class"] for p in e["predictions"]]
        for pe, po, pq, pb in zip(e["predictions"], o["predictions"], q["predictions"], b["predictions"]):
            assert abs(pe["probability"] - po["probability"]) < 1e-5
            assert abs(pe["probability"] - pq["probability"]) < 0.05  # int8: close, not equal
            assert abs(pe["probability"] - pb["probability"]) < 0.05


def test_per_token_int8_with_calibration_images(setup, capsys, tmp_path):
    """export / predict with --int8-scheme per-token --calibration: a verified
    file, predictions close to eager; --calibration without the scheme and an
    empty --calibration folder are usage errors naming the option."""
    imgs = str(setup["data"] / "val")
    path = tmp_path / "pt.onnx"
    assert main(["export", str(setup["run"]), "--format", "onnx", "--out", str(path), "--int8",
                 "--int8-scheme", "per-token", "--calibration", imgs]) == 0
    assert "int8 (per-token)" in capsys.readouterr().out
    eager = _predict_json(capsys, [str(setup["run"]), imgs])
    per_token = _predict_json(capsys, [str(setup["run"]), imgs, "--runtime", "onnxruntime", "--int8",
                                       "--int8-scheme", "per-token", "--calibration", imgs])
    from_file = _predict_json(capsys, [str(path), imgs])
    for e, p, f in zip(eager, per_token, from_file):
        for pe, pp, pf in zip(e["predictions"], p["predictions"], f["predictions"]):
            assert abs(pe["probability"] - pp["probability"]) < 0.05
            assert abs(pp["probability"] - pf["probability"]) < 1e-5  # the same file either way
    img = str(setup["data"] / "val" / "c1" / "img0.png")
    assert main(["predict", str(setup["run"]), img, "--runtime", "onnxruntime", "--int8", "--calibration", imgs]) == 2
    assert "--calibration is for --int8-scheme per-token" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(setup["run"]), "--format", "onnx", "--out", str(tmp_path / "e.onnx"), "--int8",
                 "--int8-scheme", "per-token", "--calibration", str(empty)]) == 2
    assert "--calibration" in capsys.readouterr().err and not (tmp_path / "e.onnx").exists()
    (empty / "broken.png").write_bytes(b"not a png at all")
    assert main(["export", str(setup["run"]), "--format", "onnx", "--out", str(tmp_path / "e.onnx"), "--int8",
                 "--int8-scheme", "per-token", "--calibration", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "--calibration" in err and "broken.png" in err and "Traceback" not in err
    assert main(["export", str(setup["run"]), "--format", "onnx", "--out", str(tmp_path / "e.onnx"),
                 "--int8-scheme", "per-token", "--calibration", imgs]) == 2
    assert "per-token needs --int8" in capsys.readouterr().err


def test_predict_from_exported_onnx_file(setup, capsys, tmp_path):
    path = tmp_path / "tiny.onnx"
    assert main(["export", str(setup["run"]), "--format", "onnx", "--out", str(path)]) == 0
    capsys.readouterr()
    img = str(setup["data"] / "val" / "c1" / "img0.png")
    eager = _predict_json(capsys, [str(setup["run"]), img])
    from_file = _predict_json(capsys, [str(path), img])
    assert from_file[0]["predictions"][0]["class"] in NAMES  # class names came from the file's metadata
    assert [p["class"] for p in from_file[0]["predictions"]] == [p["class"] for p in eager[0]["predictions"]]
    # attention maps need the PyTorch model, which an .onnx file does not have
    assert main(["predict", str(path), img, "--attention-out", str(tmp_path / "att")]) == 2
    assert "attention maps need the PyTorch model" in capsys.readouterr().err


def test_predict_attention_with_onnxruntime_uses_eager_model(setup, capsys, tmp_path):
    img = str(setup["data"] / "val" / "c0" / "img1.png")
    out = tmp_path / "att"
    assert main(["predict", str(setup["run"]), img, "--runtime", "onnxruntime", "--attention-out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 1


def test_evaluate_onnxruntime_matches_eager(setup, capsys, tmp_path):
    res = {}
    for runtime in ("eager", "onnxruntime"):
        out = tmp_path / runtime
        assert main(["evaluate", str(setup["run"]), "--runtime", runtime, "--out", str(out), "--no-progress"]) == 0
        res[runtime] = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert res["eager"]["num_images"] == res["onnxruntime"]["num_images"] == 9
    assert res["eager"]["top1"] == res["onnxruntime"]["top1"]
    assert abs(res["eager"]["loss"] - res["onnxruntime"]["loss"]) < 1e-5


def test_runtime_usage_errors(setup, capsys, tmp_path):
    img = str(setup["data"] / "val" / "c0" / "img0.png")
    assert main(["predict", str(setup["run"]), img, "--int8"]) == 2
    assert "--int8 needs --runtime onnxruntime" in capsys.readouterr().err
    assert main(["predict", str(setup["run"]), img, "--runtime", "onnxruntime", "--int8-scheme", "blockwise"]) == 2
    assert "--int8-scheme blockwise needs --int8" in capsys.readouterr().err
    argv = ["evaluate", str(setup["run"]), "--runtime", "onnxruntime", "--amp", "bf16", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "--precision bf16: ONNX Runtime runs fp32 and int8 graphs here" in capsys.readouterr().err
