"""swinlab model folders: save_pretrained -> from_pretrained round trips,
atomic writes and clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import swinlab
from swinlab import create_model
from swinlab.models.swin import SwinTransformer
from swinlab.weights import pretrained as pretrained_mod
from swinlab.weights.pretrained import default_preprocessing, from_pretrained, save_pretrained

SWIN = "swin_keras_cifar100_patch2_window2_32"
VIT = "vit_keras_cifar100_patch6_72"


def _tiny(name: str = SWIN, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, **kw).eval()


@pytest.mark.parametrize("name,kw", [(SWIN, dict(num_classes=3)), (VIT, dict(num_classes=3))])
def test_round_trip_is_bit_identical(tmp_path, name, kw):
    model = _tiny(name, **kw)
    names = ["cat", "dog", "owl"]
    pre = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "crop_ratio": 1.0}
    folder = save_pretrained(model, tmp_path / "saved", class_names=names, preprocessing=pre)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["saved"]  # no temporary folder left

    config = json.loads((folder / "config.json").read_text())
    assert config["model_name"] == name
    assert config["swinlab_version"] == swinlab.__version__
    assert config["class_names"] == names
    assert config["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert config["preprocessing"]["input_size"] == default_preprocessing(model)["input_size"]
    assert set(config["preprocessing"]) == {"mean", "std", "input_size", "crop_ratio", "interpolation"}

    loaded = from_pretrained(folder)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.class_names == names
    assert loaded.preprocessing == config["preprocessing"]
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_round_trip_after_reset_classifier_and_into_existing_folder(tmp_path):
    model = _tiny(num_classes=5)
    model.reset_classifier(2)
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    save_pretrained(model, folder)
    assert (folder / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "notes.txt"]
    loaded = from_pretrained(str(folder))
    assert loaded.num_classes == 2 and loaded.class_names is None
    assert loaded.preprocessing == default_preprocessing(model)
    assert torch.equal(loaded.head.weight, model.head.weight)
    # overwrite in place with another model: both files replaced
    other = _tiny(num_classes=4)
    torch.nn.init.ones_(other.head.bias)
    save_pretrained(other, folder, class_names=list("abcd"))
    again = from_pretrained(folder)
    assert again.class_names == list("abcd") and torch.equal(again.head.bias, torch.ones(4))


def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    model = _tiny(num_classes=3)
    good = save_pretrained(model, tmp_path / "good")
    before = {p.name: p.read_bytes() for p in good.iterdir()}

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(model, tmp_path / "new")
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(_tiny(num_classes=7), good)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good"]  # no partial folder or temp dir
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before  # old save intact


def test_save_errors(tmp_path):
    model = _tiny(num_classes=3)
    with pytest.raises(ValueError, match="2 class names .* 3 classes"):
        save_pretrained(model, tmp_path / "a", class_names=["x", "y"])
    with pytest.raises(ValueError, match="crop_ratio"):
        save_pretrained(model, tmp_path / "b", preprocessing={"crop_ratio": 1.5})
    with pytest.raises(ValueError, match="unknown preprocessing key"):
        save_pretrained(model, tmp_path / "c", preprocessing={"size": 3})
    with pytest.raises(ValueError, match="create_model"):
        save_pretrained(SwinTransformer(img_size=32, embed_dim=8, depths=(1,), num_heads=(1,), window_size=4),
                        tmp_path / "d")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        save_pretrained(model, tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_load_errors(tmp_path, reference_dir):
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        from_pretrained(tmp_path / "no_such_folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_pretrained(empty)
    hf = tmp_path / "hf"
    shutil.copytree(reference_dir / "swin_ref_hf", hf)
    with pytest.raises(ValueError, match="no 'model_name'"):
        from_pretrained(hf)

    folder = save_pretrained(_tiny(num_classes=3), tmp_path / "saved")
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        from_pretrained(folder)

    model = _tiny(num_classes=3)
    folder = save_pretrained(model, tmp_path / "saved2")
    config = json.loads((folder / "config.json").read_text())
    config["model_kwargs"]["num_classes"] = 4
    (folder / "config.json").write_text(json.dumps(config))
    c = model.num_features
    with pytest.raises(ValueError, match=rf"head.weight \(3, {c}\) vs model \(4, {c}\)"):
        from_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        from_pretrained(folder)
    config["model_name"] = "swin_no_such_model"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="swin_no_such_model"):
        from_pretrained(folder)


def test_saved_weights_are_plain_safetensors(tmp_path):
    model = _tiny(num_classes=3)
    folder = save_pretrained(model, tmp_path / "m")
    tensors = load_file(str(folder / "model.safetensors"))
    assert tensors.keys() == model.state_dict().keys()
    assert pretrained_mod.WEIGHTS_NAME == "model.safetensors"
