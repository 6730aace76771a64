"""Tests of swinlab.inference: image reading, model loading, predict,
features and attention maps (tiny models, synthetic images)."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from swinlab import VisionTransformer, create_model
from swinlab.inference import (
    attention_maps,
    denormalize,
    eval_transform_for,
    expand_inputs,
    extract_features,
    load_features,
    load_model,
    open_image,
    predict,
    save_features,
    windows_to_map,
)
from swinlab.plots import save_attention_figure
from swinlab.inference.attention import swin_attention_maps, vit_attention_maps
from swinlab.models.swin import window_partition

MODEL = "swin_micro_patch4_window4_64"
CLASSES = ["n001", "n002", "n003"]
NAMES = ["cat", "dog", "bird"]


def _png(path: Path, seed: int, size: tuple[int, int] = (40, 48), mode: str = "RGB") -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return np.array(img.convert("RGB"))


def _checkpoint(path: Path, seed: int = 0, **extra) -> torch.nn.Module:
    """A training checkpoint in the format of swinlab.training (D1)."""
    torch.manual_seed(seed)
    model = create_model(MODEL, num_classes=3)
    ckpt = {
        "model": model.state_dict(),
        "model_name": MODEL,
        "model_kwargs": dict(model.model_kwargs),
        "class_names": NAMES,
        "classes": CLASSES,
        "aug_config": {"img_size": 64, "eval_crop_ratio": 0.875, "interpolation": "bilinear"},
        "config": {"data": "folder", "data_root": None, "num_classes": None},
        "epoch": 1,
    }
    ckpt.update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return model


# ------------------------------------------------------------------ images
def test_open_image_file_zip_and_errors(tmp_path):
    rgb = _png(tmp_path / "a.png", 0)
    gray = _png(tmp_path / "g.png", 1, mode="L")
    t = open_image(tmp_path / "a.png")
    assert t.dtype == torch.uint8 and t.shape == (3, 48, 40)
    assert torch.equal(t, torch.from_numpy(rgb).permute(2, 0, 1))
    g = open_image(str(tmp_path / "g.png"))
    assert g.shape == (3, 48, 40) and torch.equal(g, torch.from_numpy(gray).permute(2, 0, 1))

    zpath = tmp_path / "imgs.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(tmp_path / "a.png", "d/a.png")
        zf.writestr("d/bad.jpg", b"not an image")
    z = open_image(f"{zpath}::d/a.png")
    assert torch.equal(z, t)

    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="broken.png"):
        open_image(tmp_path / "broken.png")
    with pytest.raises(ValueError, match=r"bad\.jpg"):
        open_image(f"{zpath}::d/bad.jpg")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        open_image(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        open_image(f"{zpath}::d/nope.png")
    with pytest.raises(FileNotFoundError, match="other.zip"):
        open_image(f"{tmp_path / 'other.zip'}::a.png")


def test_expand_inputs(tmp_path):
    _png(tmp_path / "f" / "b.png", 0)
    _png(tmp_path / "f" / "sub" / "a.jpg", 1)
    (tmp_path / "f" / "notes.txt").write_text("x")
    _png(tmp_path / "single.png", 2)
    zpath = tmp_path / "z.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(tmp_path / "single.png", "top/val/images/y.png")
        zf.write(tmp_path / "single.png", "top/val/images/x.png")
        zf.writestr("top/readme.txt", "x")
    specs = expand_inputs([tmp_path / "single.png", str(tmp_path / "f"), f"{zpath}::top/val/images/", str(zpath)])
    assert specs == [
        str(tmp_path / "single.png"),
        str(tmp_path / "f" / "b.png"),
        str(tmp_path / "f" / "sub" / "a.jpg"),
        f"{zpath}::top/val/images/x.png",
        f"{zpath}::top/val/images/y.png",
        f"{zpath}::top/val/images/x.png",
        f"{zpath}::top/val/images/y.png",
    ]
    assert expand_inputs([f"{zpath}::top/val/images/y.png"]) == [f"{zpath}::top/val/images/y.png"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        expand_inputs([str(tmp_path / "nowhere")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        expand_inputs([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="under 'other/'"):
        expand_inputs([f"{zpath}::other/"])


# ------------------------------------------------------------------ loading
def test_load_model_from_checkpoint_run_dir_and_errors(tmp_path):
    run = tmp_path / "run"
    last = _checkpoint(run / "last.pt", seed=1)
    best = _checkpoint(run / "best.pt", seed=2)
    model, info = load_model(run)
    assert info.kind == "run" and info.checkpoint == str(run / "best.pt")
    assert not model.training
    for k, v in best.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert not torch.equal(model.head.weight, last.head.weight)
    assert info.class_names == NAMES and info.classes == CLASSES and info.num_classes == 3
    assert info.img_size == 64 and info.crop_ratio == 0.875 and info.interpolation == "bilinear"
    assert info.config == {"data": "folder", "data_root": None, "num_classes": None}

    m2, info2 = load_model(run / "last.pt")
    assert info2.kind == "checkpoint" and torch.equal(m2.head.weight, last.head.weight)

    with pytest.raises(FileNotFoundError, match="nothere"):
        load_model(tmp_path / "nothere")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt.*missing key"):
        load_model(tmp_path / "other.pt")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(FileNotFoundError, match="emptydir"):
        load_model(tmp_path / "emptydir")
    with pytest.raises(ValueError, match="unknown model name"):
        load_model("swin_nonexistent_model")
    with pytest.raises(ValueError, match="no EMA weights"):
        load_model(run, ema=True)


def test_load_model_zoo_name_and_pretrained_folder(tmp_path):
    model, info = load_model(MODEL, num_classes=4)
    assert info.kind == "zoo" and info.num_classes == 4 and info.img_size == 64
    from swinlab.weights.pretrained import save_pretrained

    model.class_names = ["a", "b", "c", "d"]
    save_pretrained(model, tmp_path / "pre")
    m2, info2 = load_model(tmp_path / "pre")
    assert info2.kind == "pretrained" and info2.class_names == ["a", "b", "c", "d"]
    assert info2.img_size == 64 and info2.model_name == MODEL
    assert torch.equal(m2.head.weight, model.head.weight)


# ------------------------------------------------------------------ predict
def test_predict_structure_and_consistency(tmp_path):
    _checkpoint(tmp_path / "run" / "best.pt")
    model, info = load_model(tmp_path / "run")
    _png(tmp_path / "a.png", 0, size=(70, 50))
    zpath = tmp_path / "z.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(tmp_path / "a.png", "in/a.png")
    tensor = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    inputs = [str(tmp_path / "a.png"), f"{zpath}::in/a.png", tensor]
    preds = predict(model, info, inputs, topk=2, batch_size=2)
    assert len(preds) == 3
    for plist in preds:
        assert len(plist) == 2
        probs = [p for _, _, p in plist]
        assert probs == sorted(probs, reverse=True)
        assert 0.0 < sum(probs) <= 1.0 + 1e-6
        for idx, name, _ in plist:
            assert name == NAMES[idx]
    assert preds[0] == preds[1]  # same image from a file and from a zip

    # agrees with a direct forward of the same preprocessing
    x = eval_transform_for(info)(tensor.unsqueeze(0))
    with torch.no_grad():
        p = model(x).softmax(1)[0]
    top = int(p.argmax())
    assert preds[2][0][0] == top and preds[2][0][2] == pytest.approx(float(p[top]), abs=1e-5)

    full = predict(model, info, [tensor], topk=10)[0]
    assert len(full) == 3 and sum(q for _, _, q in full) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="topk"):
        predict(model, info, [tensor], topk=0)
    with pytest.raises(ValueError, match="uint8"):
        predict(model, info, [tensor.float()])


# ------------------------------------------------------------------ features
@pytest.mark.parametrize("suffix", [".npy", ".safetensors"])
def test_features_round_trip(tmp_path, suffix):
    _, info = load_model(MODEL, num_classes=3)
    torch.manual_seed(0)
    model = create_model(MODEL, num_classes=3).eval()
    _png(tmp_path / "a.png", 0)
    _png(tmp_path / "b.png", 1, size=(64, 64))
    specs = [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    feats, names = extract_features(model, info, specs, batch_size=1)
    assert feats.shape == (2, model.num_features) and feats.dtype == np.float32
    assert names == specs
    x = torch.cat([eval_transform_for(info)(open_image(s).unsqueeze(0)) for s in specs])
    with torch.no_grad():
        np.testing.assert_allclose(feats, model.forward_pooled(x).numpy(), rtol=1e-4, atol=1e-5)

    path = save_features(tmp_path / f"feats{suffix}", feats, names)
    if suffix == ".npy":
        assert json.loads((tmp_path / "feats.names.json").read_text()) == names
    feats2, names2 = load_features(path)
    assert names2 == names and np.array_equal(feats2, feats)

    with pytest.raises(ValueError, match=r"\.npy or \.safetensors"):
        save_features(tmp_path / "feats.txt", feats, names)
    with pytest.raises(ValueError, match="1 names for 2"):
        save_features(tmp_path / f"f2{suffix}", feats, names[:1])


# ------------------------------------------------------------------ attention
def _forward_positions(H: int, W: int, M: int, shift: int) -> torch.Tensor:
    """Where each grid token lands, computed with the block's own forward
    steps (pad, roll by -shift, window_partition): ``(nW, M*M)`` holding the
    flat index ``r * W + c`` of the original token (-1 for padding)."""
    Hp, Wp = math.ceil(H / M) * M, math.ceil(W / M) * M
    grid = torch.full((1, Hp, Wp, 1), -1.0)
    grid[0, :H, :W, 0] = torch.arange(H * W, dtype=torch.float32).view(H, W)
    if shift:
        grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
    return window_partition(grid, M)[..., 0].long()


@pytest.mark.parametrize("H,W,M,shift", [(8, 8, 4, 0), (8, 8, 4, 2), (6, 7, 4, 2), (7, 5, 4, 0)])
@pytest.mark.parametrize("target", [(0, 1), (5, 4), (2, 3)])
def test_windows_to_map_single_token(H, W, M, shift, target):
    r, c = target
    pos = _forward_positions(H, W, M, shift)
    win, tok = [int(v) for v in (pos == r * W + c).nonzero()[0]]
    received = torch.zeros(pos.shape)
    received[win, tok] = 1.0
    grid = windows_to_map(received, H, W, M, shift)
    assert grid.shape == (H, W)
    expected = torch.zeros(H, W)
    expected[r, c] = 1.0
    assert torch.equal(grid, expected)


def test_windows_to_map_bad_shape():
    with pytest.raises(ValueError, match="window values"):
        windows_to_map(torch.zeros(3, 16), 8, 8, 4, 0)


def test_swin_attention_maps_one_token_receives_everything():
    """Hand-made attentions: in every block all queries attend to exactly one
    token; each map must light up exactly that grid position (shifted blocks
    of stages 1-2 included)."""
    model = create_model(MODEL, num_classes=3)
    blocks = [b for layer in model.layers for b in layer.blocks]
    grids = [(16, 16), (16, 16), (8, 8), (8, 8), (4, 4), (4, 4)]
    assert [b.window_and_shift(*g)[1] for b, g in zip(blocks, grids)] == [0, 2, 0, 2, 0, 0]
    heads = [2, 2, 4, 4, 8, 8]
    targets = [(3, 5), (15, 0), (1, 7), (6, 6), (0, 3), (2, 2)]
    attns = []
    for blk, (h, w), nh, (r, c) in zip(blocks, grids, heads, targets):
        M, shift = blk.window_and_shift(h, w)
        pos = _forward_positions(h, w, M, shift)
        win, tok = [int(v) for v in (pos == r * w + c).nonzero()[0]]
        a = torch.zeros(1, pos.shape[0], nh, M * M, M * M)
        a[0, win, :, :, tok] = 1.0
        attns.append(a)
    maps = swin_attention_maps(model, attns, (64, 64))
    for m, (h, w), (r, c) in zip(maps, grids, targets):
        assert m.shape == (h, w)
        assert m[r, c] == 1.0 and m.sum() == 1.0


def test_attention_maps_real_models(tmp_path):
    torch.manual_seed(0)
    model = create_model(MODEL, num_classes=3)
    x = torch.randn(3, 72, 72)  # grid 18 -> padded windows, shifted blocks
    maps = attention_maps(model, x)
    assert [tuple(m.shape) for m in maps] == [(18, 18), (18, 18), (9, 9), (9, 9), (5, 5), (5, 5)]
    assert all(torch.isfinite(m).all() and (m >= 0).all() for m in maps)
    # 64 px: no padding, each window's received attention sums to 1 over its keys
    maps64 = attention_maps(model, torch.randn(1, 3, 64, 64))
    for m, n_windows in zip(maps64, [16, 16, 4, 4, 1, 1]):
        assert float(m.sum()) == pytest.approx(n_windows, rel=1e-4)

    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3)
    vmaps = attention_maps(vit, torch.randn(3, 32, 32))
    assert [tuple(m.shape) for m in vmaps] == [(4, 4), (4, 4)]
    _, attns = vit.eval().forward_attention(torch.randn(1, 3, 32, 32))
    cls_only = vit_attention_maps(vit, attns, (32, 32))
    assert torch.allclose(cls_only[0].flatten(), attns[0][0].mean(0)[0, 1:])

    img = denormalize(x, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert img.dtype == torch.uint8 and img.shape == (3, 72, 72)
    png = save_attention_figure(tmp_path / "att.png", img, maps, ncols=4, suptitle="test")
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(TypeError, match="SwinTransformer or VisionTransformer"):
        attention_maps(torch.nn.Linear(2, 2), x)
    with pytest.raises(ValueError, match="no attention maps"):
        save_attention_figure(tmp_path / "x.png", img, [])
