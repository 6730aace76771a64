"""``swinlab serve``: a real server process (``python -m swinlab serve`` on a
free 127.0.0.1 port) answering real Tiny ImageNet val images and every kind of
bad upload, the micro-batcher, and the demo page driven in headless chromium.

The model is the micro Swin with random (seeded) weights and the 200 Tiny
ImageNet class names, so answers are checked against the same model run in
this process, not against fixed numbers.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from PIL import Image

from swinlab import create_model
from swinlab.cli.main import main
from swinlab.inference.loading import load_model
from swinlab.inference.predict import predict

from runs_helpers import save_swinv2_ref_run, tiny_imagenet_classes

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

MODEL = "swin_micro_patch4_window4_64"
ZIP_ROOT = "tiny-imagenet-200"
MAX_BYTES = 200_000
MAX_PIXELS = 1_000_000
VAL = [f"{ZIP_ROOT}/val/images/val_{i}.JPEG" for i in range(6)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_zip(tiny_imagenet_zip: Path) -> Path:
    return tiny_imagenet_zip


@pytest.fixture(scope="module")
def run_dir(tiny_zip, tmp_path_factory) -> Path:
    """A training-checkpoint run folder: micro Swin, random weights, Tiny ImageNet class names."""
    wnids, names = tiny_imagenet_classes(tiny_zip)
    torch.manual_seed(0)
    model = create_model(MODEL, num_classes=len(wnids))
    run = tmp_path_factory.mktemp("serve") / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "model_name": MODEL, "model_kwargs": dict(model.model_kwargs),
                "class_names": names, "classes": wnids,
                "aug_config": {"img_size": 64, "eval_crop_ratio": 0.875, "interpolation": "bicubic"}}, run / "best.pt")
    return run


def _serve(run_dir: Path, *extra: str):
    """Base URL of a real ``swinlab serve`` process with ``extra`` options (stopped at the end)."""
    port = _free_port()
    cmd = [sys.executable, "-m", "swinlab", "serve", str(run_dir), "--port", str(port), "--max-bytes", str(MAX_BYTES),
           "--max-pixels", str(MAX_PIXELS), "--batch-wait-ms", "50", "--threads", "1", "--log-level", "warning", *extra]
    # a session of its own: no signal the server sends its process group reaches the test process
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("server did not answer /health within 90 s")
        time.sleep(0.25)
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server(run_dir):
    """Base URL of a real ``swinlab serve`` process (eager)."""
    yield from _serve(run_dir)


@pytest.fixture(scope="module")
def auto_server(run_dir):
    """A real ``swinlab serve --runtime auto`` process (OpenVINO on this machine's CPU class)."""
    pytest.importorskip("openvino")
    yield from _serve(run_dir, "--runtime", "auto")


@pytest.fixture(scope="module")
def val_images(tiny_zip) -> dict[str, bytes]:
    with zipfile.ZipFile(tiny_zip) as zf:
        return {Path(m).name: zf.read(m) for m in VAL}


def test_predict_real_val_images_multipart_and_raw(server, run_dir, tiny_zip, val_images):
    names = list(val_images)
    r = httpx.post(f"{server}/predict", files=[("file", (n, val_images[n], "image/jpeg")) for n in names[:4]], timeout=60)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    raw = httpx.post(f"{server}/predict?name={names[4]}", content=val_images[names[4]], timeout=60)
    assert raw.status_code == 200, raw.text
    results += raw.json()["results"]
    assert [x["file"] for x in results] == names[:5]
    model, info = load_model(run_dir)
    expected = predict(model, info, [f"{tiny_zip}::{m}" for m in VAL[:5]], topk=5)
    for got, want in zip(results, expected):
        assert (got["width"], got["height"]) == (64, 64)
        assert [p["index"] for p in got["predictions"]] == [i for i, _, _ in want]
        assert [p["class"] for p in got["predictions"]] == [c for _, c, _ in want]
        assert all(abs(p["probability"] - q) < 1e-5 for p, (_, _, q) in zip(got["predictions"], want))


def _bomb_png() -> bytes:
    """A 4000 x 4000 (16 Mpixel) black PNG: a few kB of file."""
    buf = io.BytesIO()
    Image.new("L", (4000, 4000)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


BAD = {
    "not_an_image": (b"this is text, not a picture\n" * 10, 422, "not an image"),
    "truncated": (None, 422, "truncated"),
    "bomb": ("bomb", 413, "over the limit of 1,000,000"),
    "empty": (b"", 400, "empty image"),
    "too_large": (b"\xff" * (MAX_BYTES + 1), 413, "over the limit of 200,000 bytes"),
}


def _bad_upload(kind: str, val_images: dict[str, bytes]) -> tuple[bytes, int, str]:
    """The body, HTTP status and message of one kind of bad upload (:data:`BAD`)."""
    data, status, message = BAD[kind]
    good = val_images["val_0.JPEG"]
    if data is None:
        data = good[: len(good) // 2]
    elif data == "bomb":
        data = _bomb_png()
        assert len(data) < MAX_BYTES  # small file, huge image
    return data, status, message


@pytest.mark.parametrize("kind", list(BAD))
@pytest.mark.parametrize("how", ["raw", "multipart"])
def test_bad_uploads_get_4xx_and_server_keeps_serving(server, val_images, kind, how):
    data, status, message = _bad_upload(kind, val_images)
    good = val_images["val_0.JPEG"]
    if how == "raw":
        r = httpx.post(f"{server}/predict?name={kind}", content=data, timeout=60)
    else:
        r = httpx.post(f"{server}/predict", files={"file": (kind, data, "application/octet-stream")}, timeout=60)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert message in detail and "\n" not in detail and " object at 0x" not in detail
    ok = httpx.post(f"{server}/predict", content=good, timeout=60)
    assert ok.status_code == 200 and len(ok.json()["results"][0]["predictions"]) == 5


def test_chunked_body_over_the_limit_is_cut_off(server, val_images):
    def chunks():  # no Content-Length: the server counts the bytes as they arrive
        for _ in range(MAX_BYTES // 10_000 + 2):
            yield b"\0" * 10_000

    r = httpx.post(f"{server}/predict", content=chunks(), timeout=60)
    assert r.status_code == 413 and "over the limit of 200,000 bytes" in r.json()["detail"]
    assert httpx.post(f"{server}/predict", content=val_images["val_0.JPEG"], timeout=60).status_code == 200


def test_bad_parameters_and_empty_multipart(server, val_images):
    r = httpx.post(f"{server}/predict?topk=0", content=val_images["val_0.JPEG"], timeout=60)
    assert r.status_code == 400 and "topk" in r.json()["detail"]
    r = httpx.post(f"{server}/predict", files={"note": (None, "no file here")}, timeout=60)  # a plain form field
    assert r.status_code == 400 and "no file in the multipart body" in r.json()["detail"]
    assert httpx.get(f"{server}/health", timeout=10).json()["status"] == "ok"


def test_concurrent_requests_are_batched(server, val_images):
    before = httpx.get(f"{server}/info", timeout=10).json()
    images = list(val_images.values())
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: httpx.post(f"{server}/predict", content=images[i % len(images)], timeout=60),
                                range(8)))
    assert all(a.status_code == 200 for a in answers)
    after = httpx.get(f"{server}/info", timeout=10).json()
    batches = after["batches"] - before["batches"]
    assert after["batched_images"] - before["batched_images"] == 8
    assert 1 <= batches < 8  # at least two requests shared a forward pass


def test_attention_png_and_json(server, val_images):
    img = val_images["val_1.JPEG"]
    info = httpx.get(f"{server}/info", timeout=10).json()
    blocks = info["attention_blocks"]
    assert len(blocks) == 6 and blocks[-1].startswith("stage 3")
    r = httpx.post(f"{server}/attention", content=img, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-block"] == "5"
    assert Image.open(io.BytesIO(r.content)).size == (256, 256)
    r = httpx.post(f"{server}/attention?block=0&format=json", content=img, timeout=60)
    grid = r.json()["grid"]
    assert r.json()["label"] == blocks[0] and (len(grid), len(grid[0])) == (16, 16)
    r = httpx.post(f"{server}/attention?block=6", content=img, timeout=60)
    assert r.status_code == 400 and "blocks 0 to 5" in r.json()["detail"]


def test_serve_refuses_a_busy_port(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", MODEL, "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_micro_batcher_groups_and_splits():
    from swinlab.serve import MicroBatcher

    calls: list[int] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x.sum(dim=(2, 3))  # (B, 3)

    async def scenario() -> list[torch.Tensor]:
        batcher = MicroBatcher(fn, max_batch=4, max_wait_s=0.2)
        await batcher.start()
        xs = [torch.full((n, 3, 2, 2), float(i)) for i, n in enumerate([1, 2, 1, 3])]
        try:
            return await asyncio.gather(*(batcher(x) for x in xs))
        finally:
            await batcher.stop()

    outs = asyncio.run(scenario())
    assert calls == [4, 3]  # 1 + 2 + 1 fit in one batch of 4; the request of 3 waits for the next
    for i, (out, n) in enumerate(zip(outs, [1, 2, 1, 3])):
        assert out.shape == (n, 3) and torch.all(out == 4.0 * i)


# ------------------------------------------------------------------ the browser
def test_onnx_only_server_predicts_and_refuses_attention(run_dir, val_images):
    """A server of an .onnx file (no PyTorch model): /predict works, /attention says why not (409)."""
    from fastapi.testclient import TestClient

    from swinlab.export import OnnxRuntimeModel
    from swinlab.serve import Predictor, ServeConfig, create_app

    model, info = load_model(run_dir)
    runtime = OnnxRuntimeModel.from_model(model, info)
    predictor = Predictor(runtime, info, eager_model=None, runtime="onnxruntime")
    with TestClient(create_app(predictor, ServeConfig())) as client:
        assert client.get("/info").json()["attention_blocks"] == []
        r = client.post("/predict", content=val_images["val_3.JPEG"])
        assert r.status_code == 200 and len(r.json()["results"][0]["predictions"]) == 5
        r = client.post("/attention", content=val_images["val_3.JPEG"])
        assert r.status_code == 409 and "need the PyTorch model" in r.json()["detail"]


def test_auto_runtime_server_answers_real_images_and_rejects_bad_ones(auto_server, run_dir, val_images):
    """``--runtime auto`` (no --calibration: OpenVINO bf16 with bf16 matrix instructions, else OpenVINO
    fp32) answers real val images like the same runtime in this process, and refuses bad uploads as eager does."""
    from swinlab.export import auto_runtime, build_runtime

    choice, _ = auto_runtime(False)
    assert choice.runtime == "openvino"
    health = httpx.get(f"{auto_server}/health", timeout=10).json()
    assert health["runtime"] == choice.name
    names = list(val_images)[:3]
    r = httpx.post(f"{auto_server}/predict", files=[("file", (n, val_images[n], "image/jpeg")) for n in names], timeout=60)
    assert r.status_code == 200, r.text
    model, info = load_model(run_dir)
    torch.set_num_threads(1)
    local = build_runtime(choice, model, info, threads=1)
    from swinlab.data.decode import decode_image
    from swinlab.inference.loading import eval_transform_for

    x = torch.cat([eval_transform_for(info)(decode_image(val_images[n], n).unsqueeze(0)) for n in names])
    probs = local(x).softmax(1)
    for i, result in enumerate(r.json()["results"]):
        assert result["file"] == names[i] and len(result["predictions"]) == 5
        for p in result["predictions"]:
            assert abs(p["probability"] - float(probs[i, p["index"]])) < 1e-3
    for kind in BAD:
        data, status, message = _bad_upload(kind, val_images)
        bad = httpx.post(f"{auto_server}/predict?name={kind}", content=data, timeout=60)
        assert bad.status_code == status and message in bad.json()["detail"], bad.text
    assert httpx.post(f"{auto_server}/predict", content=val_images[names[0]], timeout=60).status_code == 200


@pytest.fixture(scope="module")
def v2_server(reference_dir, tmp_path_factory):
    """A real ``swinlab serve`` process with the small reference Swin V2 (official weights)."""
    run = save_swinv2_ref_run(tmp_path_factory.mktemp("serve_v2") / "run", reference_dir)
    for url in _serve(run):
        yield url, run


def _png(seed: int, size: tuple[int, int]) -> bytes:
    arr = torch.randint(0, 256, (size[1], size[0], 3), generator=torch.Generator().manual_seed(seed))
    buf = io.BytesIO()
    Image.fromarray(arr.to(torch.uint8).numpy()).save(buf, format="PNG")
    return buf.getvalue()


def test_swinv2_server_predicts_and_shows_attention(v2_server, tmp_path):
    url, run = v2_server
    images = {f"v2_{i}.png": _png(i, (120 - 16 * i, 100)) for i in range(3)}  # noise: ~36 kB each
    r = httpx.post(f"{url}/predict", files=[("file", (n, b, "image/png")) for n, b in images.items()], timeout=60)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    for name, data in images.items():
        (tmp_path / name).write_bytes(data)
    model, info = load_model(run)
    expected = predict(model, info, [str(tmp_path / n) for n in images], topk=5)
    for got, want in zip(results, expected):
        assert [p["index"] for p in got["predictions"]] == [i for i, _, _ in want]
        assert all(abs(p["probability"] - q) < 1e-5 for p, (_, _, q) in zip(got["predictions"], want))
    blocks = httpx.get(f"{url}/info", timeout=10).json()["attention_blocks"]
    assert len(blocks) == 8 and blocks[-1].startswith("stage 4")  # every block of the four stages
    r = httpx.post(f"{url}/attention", content=images["v2_0.png"], timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
