"""--skip-corrupt in predict / features / evaluate over good and bad files made
here, exact skip counts of the data sets (with and without cache), and the
validation of Tiny ImageNet's class and annotation files at construction."""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from swinlab import create_model
from swinlab.cli.main import main
from swinlab.data import build_dataset, build_loader
from swinlab.errors import CorruptImageError, DataError
from swinlab.inference import load_features

MODEL = "swin_micro_patch4_window4_64"
FOLDERS = ["c0", "c1", "c2"]
HINT = "use --skip-corrupt to skip unreadable images"


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header declaring ``width x height`` RGB pixels, with no pixel data (a few dozen bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _rgb(seed: int, size: tuple[int, int] = (40, 36)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def _save(img: Image.Image, path: Path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)


def good_and_bad(folder: Path) -> tuple[list[str], list[str]]:
    """Readable images in several pixel formats, and unreadable files, in ``folder``;
    returns the sorted paths of each."""
    _save(Image.fromarray(_rgb(0)), folder / "rgb.png")
    _save(Image.fromarray(_rgb(1)).convert("CMYK"), folder / "cmyk.jpg", quality=90)
    rgba = np.dstack([_rgb(2), np.random.default_rng(3).integers(0, 256, (36, 40), dtype=np.uint8)])
    _save(Image.fromarray(rgba, "RGBA"), folder / "rgba.png")
    _save(Image.fromarray(_rgb(4)).convert("P", palette=Image.Palette.ADAPTIVE), folder / "palette.png",
          transparency=0)
    _save(Image.fromarray(np.random.default_rng(5).integers(0, 65536, (36, 40), dtype=np.uint16)), folder / "g16.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(Image.fromarray(_rgb(6, (48, 32))), folder / "exif6.jpg", exif=exif.tobytes())
    good = ["rgb.png", "cmyk.jpg", "rgba.png", "palette.png", "g16.png", "exif6.jpg"]
    full = io.BytesIO()
    Image.fromarray(_rgb(7)).save(full, format="JPEG")
    bad = {
        "truncated.jpg": full.getvalue()[: len(full.getvalue()) // 3],
        "zero.jpg": b"",
        "text.jpg": b"this is a text file, not a JPEG\n",
        "bomb.png": bomb_png(30000, 30000),
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    return sorted(str(folder / n) for n in good), sorted(str(folder / n) for n in bad)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("skip")
    good, bad = good_and_bad(tmp / "imgs")
    torch.manual_seed(0)
    model = create_model(MODEL, num_classes=3)
    run = tmp / "runs" / "tiny"
    run.mkdir(parents=True)
    data = tmp / "data"
    torch.save(
        {
            "model": model.state_dict(),
            "model_name": MODEL,
            "model_kwargs": dict(model.model_kwargs),
            "class_names": ["zero", "one", "two"],
            "classes": FOLDERS,
            "aug_config": {"img_size": 64, "eval_crop_ratio": 0.875, "interpolation": "bicubic"},
            "config": {"data": "folder", "data_root": str(data), "num_classes": None, "val_split": "val"},
            "epoch": 1,
        },
        run / "best.pt",
    )
    # a folder data set: 3 readable images per class, 4 unreadable files spread over the classes
    n_bad = 0
    for k, cls in enumerate(FOLDERS):
        for i in range(3):
            _save(Image.fromarray(_rgb(10 * k + i)), data / "val" / cls / f"ok{i}.png")
    for cls, name in zip(("c0", "c0", "c1", "c2"), ("truncated.jpg", "zero.jpg", "text.jpg", "bomb.png")):
        (data / "val" / cls / name).write_bytes((tmp / "imgs" / name).read_bytes())
        n_bad += 1
    return {"tmp": tmp, "good": good, "bad": bad, "run": run, "data": data, "n_bad": n_bad}


def test_predict_skip_corrupt_lists_every_bad_file(setup, capsys) -> None:
    rc = main(["predict", str(setup["run"]), str(setup["tmp"] / "imgs"), "--skip-corrupt", "--json",
               "--no-progress", "--device", "cpu", "--topk", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = json.loads(captured.out)
    assert [r["input"] for r in out["results"]] == setup["good"]
    assert all(len(r["predictions"]) == 2 for r in out["results"])
    assert [s["input"] for s in out["skipped"]] == setup["bad"]
    reasons = {Path(s["input"]).name: s["error"] for s in out["skipped"]}
    assert "truncated" in reasons["truncated.jpg"].lower() and "empty (0 bytes)" in reasons["zero.jpg"]
    assert "not an image" in reasons["text.jpg"] and "900,000,000 pixels is over" in reasons["bomb.png"]
    assert all(Path(p).name in e for p, e in ((s["input"], s["error"]) for s in out["skipped"]))
    # the stderr summary: how many and which, with reasons
    assert f"skipped {len(setup['bad'])} of {len(setup['good']) + len(setup['bad'])} image(s)" in captured.err
    for path in setup["bad"]:
        assert f"  {path}: cannot decode image" in captured.err

    rc = main(["predict", str(setup["run"]), str(setup["tmp"] / "imgs"), "--skip-corrupt", "--no-progress",
               "--max-pixels", "1000"])  # every image is over 1,000 pixels now
    err = capsys.readouterr().err
    assert rc == 2 and "none of the 10 image(s) could be read" in err


def test_predict_without_skip_names_file_reason_and_option(setup, capsys) -> None:
    rc = main(["predict", str(setup["run"]), *setup["good"], setup["bad"][0], "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    assert setup["bad"][0] in err and "cannot decode image" in err and err.endswith(HINT)
    assert " at 0x" not in err and "Traceback" not in err


def test_features_skip_corrupt_writes_skipped_sidecar(setup, capsys) -> None:
    out = setup["tmp"] / "feats.npy"
    rc = main(["features", str(setup["run"]), str(setup["tmp"] / "imgs"), "--out", str(out), "--skip-corrupt",
               "--no-progress", "--batch-size", "4"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    feats, names = load_features(out)
    assert names == setup["good"] and feats.shape == (len(setup["good"]), 192) and np.isfinite(feats).all()
    skipped = json.loads((setup["tmp"] / "feats.skipped.json").read_text())
    assert [s["input"] for s in skipped] == setup["bad"] and all(s["error"] for s in skipped)
    assert f"skipped {len(setup['bad'])} of" in captured.err and "feats.skipped.json" in captured.out

    rc = main(["features", str(setup["run"]), *setup["bad"][:1], *setup["good"], "--out", str(out),
               "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and setup["bad"][0] in err and err.endswith(HINT) and len(err.splitlines()) == 1


def test_evaluate_skip_corrupt_counts_exactly(setup, capsys) -> None:
    out_dir = setup["tmp"] / "ev"
    rc = main(["evaluate", str(setup["run"]), "--skip-corrupt", "--no-progress", "--batch-size", "4",
               "--out", str(out_dir), "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["num_images"] == 9 and metrics["skipped"] == setup["n_bad"] == 4
    assert sorted(Path(s["input"]).name for s in metrics["skipped_images"]) == sorted(
        ["truncated.jpg", "zero.jpg", "text.jpg", "bomb.png"])
    assert "images: 9" in captured.out and "skipped: 4 unreadable image(s)" in captured.out
    assert "skipped 4 of 13 image(s)" in captured.err

    rc = main(["evaluate", str(setup["run"]), "--no-progress", "--out", str(out_dir), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.endswith(HINT), err
    assert "cannot decode image 'c0/truncated.jpg'" in err and "Traceback" not in err


def test_worker_raised_error_becomes_one_line() -> None:
    # what a DataLoader worker's error looks like in the main process (torch re-raises the type with the
    # worker's traceback as the message); an end-to-end run with --num-workers 1 gives the same line but
    # leaves a worker that torch joins for 5 s when the iterator is collected, so it is not run here
    message = (
        "Caught CorruptImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "worker.py", line 1, in _worker_loop\n    data = fetcher.fetch(index)\n'
        "swinlab.errors.CorruptImageError: cannot decode image 'c0/x.jpg' in /data/val: Truncated File Read\n"
    )
    from swinlab.cli.inputs import skip_hint  # here, so that the other tests of this file run on older trees

    with pytest.raises(CorruptImageError) as exc:
        with skip_hint():
            raise CorruptImageError(message)
    assert str(exc.value) == f"cannot decode image 'c0/x.jpg' in /data/val: Truncated File Read; {HINT}"


# ---------------------------------------------------------------- data sets
WNIDS = ["n01", "n02", "n03"]


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_rgb(seed, (64, 64))).save(buf, format="JPEG")
    return buf.getvalue()


def tiny_zip(path: Path, wnids: str | None = None, annotations: str | None = None, val: int = 33,
             bad: tuple[int, ...] = (4, 17, 30), extra: dict[str, bytes] | None = None) -> None:
    """Tiny-ImageNet-layout zip: 5 train images per class (2 unreadable), ``val`` val images
    of which the indices ``bad`` are unreadable."""
    p = "tiny-imagenet-200/"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(p + "wnids.txt", wnids if wnids is not None else "\n".join(WNIDS) + "\n")
        for c, w in enumerate(WNIDS):
            for k in range(5):
                z.writestr(f"{p}train/{w}/images/{w}_{k}.JPEG", _jpeg(c * 10 + k))
        z.writestr(f"{p}train/n01/images/n01_5.JPEG", b"")
        z.writestr(f"{p}train/n03/images/n03_5.JPEG", _jpeg(1)[:300])
        lines = "".join(f"val_{i}.JPEG\t{WNIDS[i % 3]}\t0\t0\t63\t63\n" for i in range(val))
        if annotations is not None or val:
            z.writestr(p + "val/val_annotations.txt", annotations if annotations is not None else lines)
        for i in range(val):
            z.writestr(f"{p}val/images/val_{i}.JPEG", b"not a jpeg" if i in bad else _jpeg(100 + i))
        for name, data in (extra or {}).items():
            z.writestr(p + name, data)


@pytest.mark.parametrize("cache", [False, True])
def test_skip_corrupt_counts_are_exact(tmp_path: Path, cache: bool) -> None:
    arc = tmp_path / "tiny-imagenet-200.zip"
    tiny_zip(arc)
    for split, n_ok, n_bad in (("val", 30, 3), ("train", 15, 2)):
        with pytest.warns(RuntimeWarning, match=f"skipped {n_bad} unreadable"):
            ds = build_dataset("tiny-imagenet", arc, split, skip_corrupt=True, cache=cache, progress=False)
        assert len(ds) == n_ok and ds.skipped == n_bad and len(ds.skipped_images) == n_bad
        assert ds.cached == cache
        seen = torch.cat([y for _, y in build_loader(ds, 4, shuffle=False)])
        assert len(seen) == n_ok and seen.tolist() == ds.targets
        assert len(set(ds.image_names)) == n_ok
        assert not set(ds.image_names) & {s.input for s in ds.skipped_images}
    assert [s.input.rsplit("/", 1)[1] for s in ds.skipped_images] == ["n01_5.JPEG", "n03_5.JPEG"]
    assert "empty (0 bytes)" in ds.skipped_images[0].error


def _val_error(tmp_path: Path, **kw) -> str:
    arc = tmp_path / "tiny-imagenet-200.zip"
    tiny_zip(arc, **kw)
    with pytest.raises(DataError) as exc:
        build_dataset("tiny-imagenet", arc, "val", progress=False)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    "kw,pattern",
    [
        ({"val": 0}, r"'tiny-imagenet-200/val/val_annotations.txt' not found"),
        ({"annotations": "\n \n"}, r"val_annotations.txt' in .* is empty"),
        ({"annotations": "val_0.JPEG n01\n"}, r"val_annotations.txt' line 1 in .*: expected 'file<TAB>wnid"),
        ({"annotations": "val_0.JPEG\tn01\n../../etc/passwd\tn01\n"}, r"line 2 .*'\.\./\.\./etc/passwd'.*'\.\.'"),
        ({"annotations": "/abs/val_0.JPEG\tn01\n"}, r"line 1 .*absolute path"),
        ({"annotations": "val_0.JPEG\tn01\nval_1.JPEG\tn02\nval_0.JPEG\tn01\n"},
         r"line 3 .*'val_0.JPEG' is annotated again \(first on line 1\)"),
        ({"annotations": "val_0.JPEG\tn01\nval_1.JPEG\tn99\n"}, r"line 2 .*unknown class id 'n99'"),
        ({"annotations": "val_0.JPEG\tn01\nval_77.JPEG\tn02\n"}, r"1 image\(s\) annotated .* missing .*val_77"),
        ({"wnids": "n01\nn02\nn01\n"}, r"wnids.txt' line 3 in .*class id 'n01' repeats line 1"),
        ({"wnids": "\n\n"}, r"wnids.txt' in .* is empty"),
        ({"wnids": "n01 n02\n"}, r"wnids.txt' line 1 in .*'n01 n02' is not a class id"),
    ],
)
def test_bad_dataset_files_fail_at_construction(tmp_path: Path, kw: dict, pattern: str) -> None:
    msg = _val_error(tmp_path, **kw)
    assert re.search(pattern, msg), msg


def test_extracted_folder_never_reads_outside_its_root(tmp_path: Path) -> None:
    arc = tmp_path / "tiny-imagenet-200.zip"
    tiny_zip(arc, annotations="val_0.JPEG\tn01\n../../../outside.JPEG\tn02\n")
    with zipfile.ZipFile(arc) as z:
        z.extractall(tmp_path / "x")
    (tmp_path / "x" / "outside.JPEG").write_bytes(_jpeg(5))  # where '../../../' would lead from val/images
    with pytest.raises(DataError, match=r"line 2 .*'\.\./\.\./\.\./outside.JPEG' is refused"):
        build_dataset("tiny-imagenet", tmp_path / "x", "val", progress=False)
    with pytest.raises(DataError, match="is refused"):
        build_dataset("tiny-imagenet", tmp_path / "x", "val", skip_corrupt=True, progress=False)


def test_missing_annotated_images_are_skipped_with_skip_corrupt(tmp_path: Path) -> None:
    arc = tmp_path / "tiny-imagenet-200.zip"
    tiny_zip(arc, annotations="val_0.JPEG\tn01\nval_77.JPEG\tn02\nval_1.JPEG\tn02\n", bad=())
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable"):
        ds = build_dataset("tiny-imagenet", arc, "val", skip_corrupt=True, progress=False)
    assert len(ds) == 2 and ds.targets == [0, 1] and "file missing" in ds.skipped_images[0].error
