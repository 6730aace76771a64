"""One error policy for the whole command line: every command reports an
unknown model, a missing file and a bad flag as ``swinlab <command>: error:
...`` on one line with exit code 2 (a run-time failure exits 1, a bug keeps
its traceback); ``--debug`` shows the traceback; ``swinlab --help`` loads no
torch."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from swinlab.cli.main import COMMANDS, main

# command -> argv before the model source / inputs
_SOURCE_COMMANDS = {
    "evaluate": lambda src, f: ["evaluate", src, "--data", "folder", "--data-root", f],
    "predict": lambda src, f: ["predict", src, f],
    "features": lambda src, f: ["features", src, f, "--out", f + ".npy"],
    "export": lambda src, f: ["export", src, "--format", "onnx", "--out", f + ".onnx"],
    "benchmark": lambda src, f: ["benchmark", src, "--batch-sizes", "1", "--iters", "1"],
    "serve": lambda src, f: ["serve", src, "--port", "0"],
    "train": lambda src, f: ["train", "--model", src, "--data", "folder", "--data-root", f, "--print-config"],
}


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    return rc, capsys.readouterr().err


def test_every_command_is_covered():
    assert set(_SOURCE_COMMANDS) | {"models", "report"} == set(COMMANDS)


def test_report_of_a_missing_or_foreign_folder_and_a_bad_flag(capsys, tmp_path):
    for folder in (tmp_path / "no_such_run", tmp_path):
        rc, err = _run(capsys, ["report", str(folder)])
        assert rc == 2 and err.startswith("swinlab report: error: ") and err.count("\n") == 1, err
        assert f"{folder} is not a run folder" in err
    rc, err = _run(capsys, ["report", str(tmp_path), "--bogus-flag"])
    assert rc == 2 and "swinlab report: error: " in err and "--bogus-flag" in err and "Traceback" not in err


@pytest.mark.parametrize("command", sorted(_SOURCE_COMMANDS))
def test_unknown_model_missing_file_and_bad_flag_are_the_same_everywhere(command, capsys, tmp_path):
    build = _SOURCE_COMMANDS[command]
    rc, err = _run(capsys, build("swin_tinyy", str(tmp_path)))
    assert rc == 2, err
    assert err.startswith(f"swinlab {command}: error: ") and err.count("\n") == 1, err
    assert "unknown model name 'swin_tinyy'; did you mean swin_tiny_patch4_window7_" in err

    missing = str(tmp_path / "no_such_run")
    argv = build(missing, str(tmp_path)) if command != "train" else ["train", "--config", missing + ".json"]
    rc, err = _run(capsys, argv)
    assert rc == 2 and err.startswith(f"swinlab {command}: error: ") and "no_such_run" in err, err
    assert err.count("\n") == 1, err

    rc, err = _run(capsys, build("swin_tiny_patch4_window7_224", str(tmp_path)) + ["--bogus-flag"])
    assert rc == 2 and f"swinlab {command}: error: " in err and "--bogus-flag" in err, err
    assert "Traceback" not in err


def test_config_keys_are_checked_when_parsed(capsys):
    rc, err = _run(capsys, ["train", "--set", "aug.hfilp=0.5", "--print-config"])
    assert rc == 2 and "'hfilp': did you mean 'hflip'?" in err and err.count("\n") == 1
    rc, err = _run(capsys, ["train", "--set", "model_overrides.windw_size=4", "--print-config"])
    assert rc == 2 and "did you mean 'window_size'" in err
    rc, err = _run(capsys, ["train", "--lr", "abc"])
    assert rc == 2 and "swinlab train: error: argument --lr: invalid float value: 'abc'" in err
    rc, err = _run(capsys, ["train", "--set", "model_overrides.embed_dim=97", "--print-config"])
    assert rc == 0  # a value the class rejects is found when the model is built, still one line:
    rc, err = _run(capsys, ["train", "--set", "model_overrides.embed_dim=97", "--data-root", "/nowhere"])
    assert rc == 2 and err.count("\n") == 1


def test_bad_val_annotations_fail_before_training(capsys, tmp_path):
    zpath = tmp_path / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("tiny-imagenet-200/wnids.txt", "n1\nn2\n")
        z.writestr("tiny-imagenet-200/val/val_annotations.txt", "../../etc/passwd\tn1\t0\t0\t1\t1\n")
    rc, err = _run(capsys, ["train", "--data-root", str(zpath), "--out", str(tmp_path / "run")])
    assert rc == 2 and err.startswith("swinlab train: error: ") and "val_annotations.txt" in err, err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(Exception, match="unknown model name"):
        main(["--debug", "predict", "swin_tinyy", "x.png"])
    with pytest.raises(Exception, match="unknown model name"):
        main(["predict", "swin_tinyy", "x.png", "--debug"])


def test_help_loads_no_torch():
    code = ("import sys; from swinlab.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'swinlab --help imported torch'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "train" in res.stdout and "serve" in res.stdout
