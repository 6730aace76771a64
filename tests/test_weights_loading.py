"""Pretrained weights: reading, resolving (file / URL / Hub cache / registry
keywords), layout conversion, adaptation and loading, checked against the
reference checkpoints and outputs in ``../shared/reference/checkpoints``."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from swinlab.models import registry
from swinlab import create_model
from swinlab.models.registry import ModelSpec, PretrainedCfg
from swinlab.models.swin import SwinTransformer
from swinlab.models.vit import VisionTransformer
from swinlab.weights.adapt import adapt_state_dict, load_map22kto1k
from swinlab.weights.loading import load_pretrained, read_checkpoint, resolve_source

TOL = 1e-5
REF_KW = dict(img_size=224, embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=7)
LAYOUT_SOURCES = {
    "official": "swin_ref_official.pth",
    "timm": "swin_ref_timm.safetensors",
    "hf": "swin_ref_hf",
}


def ref_model(**kw) -> SwinTransformer:
    args = dict(REF_KW, num_classes=10)
    args.update(kw)
    return SwinTransformer(**args).eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


# ------------------------------------------------------------------ server
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        super().do_GET()


@pytest.fixture()
def http_root(reference_dir: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve ``reference_dir`` on 127.0.0.1 (random port); yields (base URL, request log)."""
    handler = type("Handler", (_QuietHandler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(reference_dir))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# ------------------------------------------------------------------ fake Hub cache
def _hub_repo(cache: Path, repo_id: str, files: dict[str, Path], revision: str) -> None:
    """Lay out ``files`` as huggingface_hub's cache does for ``repo_id``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / revision
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for name, src in files.items():
        shutil.copyfile(src, snap / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


@pytest.fixture()
def hub_cache(tmp_path: Path, reference_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    hf = reference_dir / "swin_ref_hf"
    _hub_repo(cache, "swinlab-test/swin-ref-hf",
              {"config.json": hf / "config.json", "model.safetensors": hf / "model.safetensors"}, "a" * 40)
    _hub_repo(cache, "swinlab-test/swin-ref-timm",
              {"config.json": hf / "config.json", "model.safetensors": reference_dir / "swin_ref_timm.safetensors"},
              "b" * 40)
    _hub_repo(cache, "swinlab-test/swin-ref-official",
              {"config.json": hf / "config.json", "pytorch_model.bin": reference_dir / "swin_ref_official.pth"},
              "c" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


# ------------------------------------------------------------------ parity: files, URLs, Hub
@pytest.mark.parametrize("layout", sorted(LAYOUT_SOURCES))
def test_layout_file_reproduces_official_logits(layout, reference_dir, reference_io):
    model = ref_model()
    report = load_pretrained(model, reference_dir / LAYOUT_SOURCES[layout])
    assert report.layout == layout
    assert report.ok and not report.adapted
    assert sorted(report.loaded) == sorted(model.state_dict())
    assert max_diff(logits(model, reference_io["input_224"]), reference_io["logits_official"]) <= TOL


@pytest.mark.parametrize(
    "layout,url_path",
    [("official", "swin_ref_official.pth"), ("timm", "swin_ref_timm.safetensors"),
     ("hf", "swin_ref_hf/model.safetensors")],
)
def test_layout_url_reproduces_official_logits(layout, url_path, http_root, tmp_path, reference_dir, reference_io):
    base, requests = http_root
    cache = tmp_path / "cache"
    model = ref_model()
    report = load_pretrained(model, f"{base}/{url_path}", cache_dir=cache)
    assert report.layout == layout
    assert max_diff(logits(model, reference_io["input_224"]), reference_io["logits_official"]) <= TOL
    cached = Path(report.path)
    assert cached.parent == cache and cached.read_bytes() == (reference_dir / url_path).read_bytes()
    assert [p.name for p in cache.iterdir()] == [cached.name]  # no temporary file left
    # a second resolve reuses the cache (no new request)
    n = len(requests)
    assert resolve_source(f"{base}/{url_path}", cache_dir=cache) == cached
    assert len(requests) == n


def test_url_cache_from_env_and_hash_checks(http_root, tmp_path, reference_dir, monkeypatch):
    base, _ = http_root
    monkeypatch.setenv("SWINLAB_CACHE", str(tmp_path / "env-cache"))
    data = (reference_dir / "swin_ref_timm.safetensors").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    path = resolve_source(f"{base}/swin_ref_timm.safetensors#sha256={digest}")
    assert path.parent == tmp_path / "env-cache" and path.read_bytes() == data
    with pytest.raises(ValueError, match="sha256"):
        resolve_source(f"{base}/swin_ref_official.pth", cache_dir=tmp_path / "c2", sha256="0" * 64)
    assert not any((tmp_path / "c2").iterdir())  # the bad download is not kept
    with pytest.raises(FileNotFoundError, match="no_such_file.pth"):
        resolve_source(f"{base}/no_such_file.pth", cache_dir=tmp_path / "c3")


@pytest.mark.parametrize("layout", ["official", "timm", "hf"])
def test_layout_hub_id_offline_cache_reproduces_official_logits(layout, hub_cache, reference_io):
    model = ref_model()
    report = load_pretrained(model, f"swinlab-test/swin-ref-{layout}")
    assert report.layout == layout
    assert Path(report.path).is_relative_to(hub_cache)
    assert max_diff(logits(model, reference_io["input_224"]), reference_io["logits_official"]) <= TOL


def test_hub_id_not_cached_offline_is_clear(hub_cache):
    with pytest.raises(FileNotFoundError, match="swinlab-test/not-there"):
        resolve_source("swinlab-test/not-there")


def test_registry_keywords_official_and_hf(http_root, hub_cache, tmp_path, reference_io, monkeypatch):
    base, _ = http_root
    spec = ModelSpec("test_swin_ref", SwinTransformer, dict(REF_KW, num_classes=10), "reference model",
                     pretrained_cfg=PretrainedCfg(f"{base}/swin_ref_official.pth", "swinlab-test/swin-ref-hf"))
    registry.register_model(spec)
    try:
        _check_registry_keywords(tmp_path, reference_io, monkeypatch)
    finally:
        registry.unregister_model(spec.name)


def _check_registry_keywords(tmp_path, reference_io, monkeypatch):
    for keyword, layout in (("official", "official"), ("hf", "hf")):
        model = create_model("test_swin_ref").eval()
        report = load_pretrained(model, keyword, cache_dir=tmp_path / "cache")
        assert report.layout == layout
        assert max_diff(logits(model, reference_io["input_224"]), reference_io["logits_official"]) <= TOL
    monkeypatch.setenv("SWINLAB_CACHE", str(tmp_path / "env-cache"))
    for keyword in ("official", "hf"):
        model = create_model("test_swin_ref", pretrained=keyword).eval()
        assert max_diff(logits(model, reference_io["input_224"]), reference_io["logits_official"]) <= TOL
    assert len(list((tmp_path / "env-cache").iterdir())) == 1  # the official file, downloaded once
    with pytest.raises(ValueError, match="model name"):
        resolve_source("official")
    with pytest.raises(ValueError, match="no Hugging Face Hub id"):
        resolve_source("hf", model_name="swin_keras_cifar100_patch2_window2_32")


# ------------------------------------------------------------------ fine-tuning adaptation
def test_finetune_384_window12_matches_official_features(reference_dir, reference_io):
    model = ref_model(img_size=384, window_size=12, num_classes=5)
    head_before = model.head.weight.detach().clone()
    report = load_pretrained(model, reference_dir / "swin_ref_official.pth")
    tables = [a for a in report.adapted if "relative_position_bias_table" in a]
    assert len(tables) == 8 and all("(169," in a and "(529," in a for a in tables)
    assert report.reinitialized == ["head.weight", "head.bias"]
    assert torch.equal(model.head.weight, head_before)  # the fresh init stays
    with torch.no_grad():
        feats = model.forward_pooled(reference_io["input_384"])
    assert max_diff(feats, reference_io["features_official_w12_384"]) <= TOL


def _tiny_swin(num_classes: int, **kw) -> SwinTransformer:
    args = dict(img_size=32, patch_size=4, embed_dim=8, depths=(1, 1), num_heads=(1, 2), window_size=4,
                num_classes=num_classes)
    args.update(kw)
    return SwinTransformer(**args).eval()


def test_in22k_to_in1k_selects_rows_of_the_official_list(reference_dir):
    rows = [int(line) for line in (reference_dir / "map22kto1k.txt").read_text().split()]
    assert list(load_map22kto1k()) == rows  # the shipped copy is the official list
    src = _tiny_swin(21841)
    torch.nn.init.normal_(src.head.bias)
    sd = src.state_dict()
    dst = _tiny_swin(1000)
    report = load_pretrained(dst, sd)
    assert report.ok and not report.reinitialized
    assert any("21841 -> 1000" in a for a in report.adapted)
    assert torch.equal(dst.head.weight, sd["head.weight"][rows])
    assert torch.equal(dst.head.bias, sd["head.bias"][rows])


def test_other_class_count_keeps_fresh_head_and_loads_the_rest():
    src = _tiny_swin(7)
    dst = _tiny_swin(3)
    fresh = {k: v.clone() for k, v in dst.head.state_dict().items()}
    report = load_pretrained(dst, src.state_dict())
    assert report.reinitialized == ["head.weight", "head.bias"]
    assert torch.equal(dst.head.weight, fresh["weight"]) and torch.equal(dst.head.bias, fresh["bias"])
    assert torch.equal(dst.patch_embed.proj.weight, src.patch_embed.proj.weight)
    headless = _tiny_swin(0)
    report = load_pretrained(headless, src.state_dict())
    assert report.ok and "head.weight" not in report.loaded


def test_absolute_pos_embed_resize_matches_runtime_resize():
    torch.manual_seed(0)
    small = _tiny_swin(4, depths=(2,), num_heads=(2,), ape=True)
    big = _tiny_swin(4, depths=(2,), num_heads=(2,), ape=True, img_size=64)
    report = load_pretrained(big, small.state_dict())
    assert any(a.startswith("absolute_pos_embed: (1, 64, 8) -> (1, 256, 8)") for a in report.adapted)
    x = torch.randn(2, 3, 64, 64)
    # the 32-px model resizes its embedding at run time with the same bicubic rule
    assert max_diff(logits(big, x), logits(small, x)) <= TOL


def test_vit_pos_embed_resize_keeps_class_token():
    torch.manual_seed(0)
    kw = dict(patch_size=8, num_classes=4, embed_dim=16, depth=1, num_heads=2)
    small = VisionTransformer(img_size=32, **kw).eval()
    big = VisionTransformer(img_size=64, **kw).eval()
    sd = small.state_dict()
    adapted, report = adapt_state_dict(sd, big)
    assert adapted["pos_embed"].shape == (1, 65, 16)
    assert torch.equal(adapted["pos_embed"][:, :1], sd["pos_embed"][:, :1])
    load_pretrained(big, sd)
    x = torch.randn(2, 3, 64, 64)
    assert max_diff(logits(big, x), logits(small, x)) <= TOL


# ------------------------------------------------------------------ errors
def test_truncated_files_give_clear_errors(reference_dir, tmp_path):
    for name in ("swin_ref_official.pth", "swin_ref_timm.safetensors"):
        data = (reference_dir / name).read_bytes()
        bad = tmp_path / f"cut_{name}"
        bad.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match=f"cut_{name}"):
            read_checkpoint(bad)
        with pytest.raises(ValueError, match="truncated or corrupt"):
            load_pretrained(ref_model(), bad)


class _Payload:
    def __reduce__(self):
        return (print, ("PAYLOAD EXECUTED",))


def test_pickle_with_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    buf = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(1)}, "extra": _Payload()}, buf)
    path.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match=r"refuses to unpickle code.*evil\.pth"):
        load_pretrained(ref_model(), path)
    assert "PAYLOAD EXECUTED" not in capsys.readouterr().out


def test_wrong_architecture_is_one_clear_error(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file(_tiny_swin(10).state_dict(), str(path))
    model = ref_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="do not fit") as info:
        load_pretrained(model, path)
    msg = str(info.value)
    assert "other.safetensors" in msg and "missing from the checkpoint" in msg and "shape mismatch" in msg
    assert "layers.0.blocks.1.attn.qkv.weight" in msg  # a missing key is named
    assert "patch_embed.proj.weight (8, 3, 4, 4) vs model (16, 3, 4, 4)" in msg
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing loaded


def test_non_strict_reports_instead_of_raising(tmp_path):
    src = _tiny_swin(10)
    sd = src.state_dict()
    del sd["norm.weight"]
    sd["extra.weight"] = torch.zeros(2)
    sd["patch_embed.proj.bias"] = torch.zeros(5)
    dst = _tiny_swin(10)
    report = load_pretrained(dst, sd, strict=False)
    assert report.missing == ["norm.weight"]
    assert report.unexpected == ["extra.weight"]
    assert [m[0] for m in report.mismatched] == ["patch_embed.proj.bias"]
    assert torch.equal(dst.patch_embed.proj.weight, src.patch_embed.proj.weight)
    with pytest.raises(ValueError, match="norm.weight"):
        load_pretrained(_tiny_swin(10), sd)


def test_missing_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_pretrained(ref_model(), tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        resolve_source(str(tmp_path / "nope.safetensors"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        read_checkpoint(tmp_path / "empty")
