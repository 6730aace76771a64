"""Decoding (swinlab.data.decode) and bounded reading (swinlab.data.sources /
swinlab.data.images): pixel formats against arrays built here, EXIF
orientation, size limits, decompression bombs and oversized zip members
with a measured memory bound."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from swinlab.data import sources
from swinlab.data.decode import decode_image
from swinlab.errors import CorruptImageError, InputNotFoundError, InvalidInputError
from swinlab.inference import expand_inputs, open_image

SRC = Path(__file__).resolve().parents[1] / "src"


# ---------------------------------------------------------------- helpers
def png_bytes(width: int, height: int, bit_depth: int, color_type: int, pixels: bytes | None) -> bytes:
    """A PNG written by hand (filter 0 on every row): ``pixels`` are the raw
    big-endian samples row after row; None = an empty IDAT (header-only bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if pixels is None:
        idat = zlib.compress(b"")
    else:
        row = len(pixels) // height
        idat = zlib.compress(b"".join(b"\x00" + pixels[r * row:(r + 1) * row] for r in range(height)))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def zero_png(width: int, height: int) -> bytes:
    """A complete black RGB PNG, compressed row by row (a 9000 x 8000 one is about 200 kB)."""
    comp = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte 0 + the samples
    idat = b"".join([comp.compress(row) for _ in range(height)] + [comp.flush()])
    head = png_bytes(width, height, 8, 2, None)
    return head[: head.index(b"IDAT") - 4] + struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(
        ">I", zlib.crc32(b"IDAT" + idat)) + head[-12:]


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def chw(arr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) or (H, W) uint8 -> the (3, H, W) tensor decode_image returns."""
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def blocks(h_blocks: int, w_blocks: int, seed: int = 0) -> np.ndarray:
    """RGB image of 8x8 single-colour blocks (JPEG keeps them almost exactly)."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (h_blocks, w_blocks, 3), dtype=np.uint8)
    return np.kron(colours, np.ones((8, 8, 1), dtype=np.uint8))


# ---------------------------------------------------------------- pixel formats
def test_16bit_grayscale_png_scaled_not_clipped() -> None:
    values = np.array([[0, 255, 256, 4095], [32767, 32768, 65280, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = decode_image(data, "g16.png")
    assert out.dtype == torch.uint8 and out.shape == (3, 2, 4)
    assert torch.equal(out, chw((values >> 8).astype(np.uint8)))
    assert out[0].tolist() == [[0, 0, 1, 15], [127, 128, 255, 255]]  # clipping would give 255 from 256 up


def test_16bit_big_endian_tiff_and_rgb_png() -> None:
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 65536, (5, 7), dtype=np.uint16)
    big = Image.frombytes("I;16B", (7, 5), gray.astype(">u2").tobytes())
    data = encode(big, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I;16B"
    assert torch.equal(decode_image(data, "g16.tif"), chw((gray >> 8).astype(np.uint8)))
    rgb = rng.integers(0, 65536, (3, 4, 3), dtype=np.uint16)
    data = png_bytes(4, 3, 16, 2, rgb.astype(">u2").tobytes())
    assert torch.equal(decode_image(data, "rgb16.png"), chw((rgb >> 8).astype(np.uint8)))


def test_float_tiff_unit_range_and_other_range() -> None:
    k = np.arange(0, 256, dtype=np.float64).reshape(16, 16)
    unit = Image.fromarray((k / 255).astype(np.float32))
    data = encode(unit, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"
    assert torch.equal(decode_image(data, "unit.tif"), chw(k.astype(np.uint8)))
    # values outside [0, 1]: min-max over the image (-2 -> 0, 6 -> 255)
    wide = (-2.0 + k * 8.0 / 255).astype(np.float32)
    assert torch.equal(decode_image(encode(Image.fromarray(wide), "TIFF"), "wide.tif"), chw(k.astype(np.uint8)))
    # a constant image outside [0, 1] is clipped
    const = np.full((3, 3), 7.0, dtype=np.float32)
    assert decode_image(encode(Image.fromarray(const), "TIFF"), "c.tif").unique().tolist() == [255]
    bad = np.zeros((2, 2), dtype=np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(CorruptImageError, match=r"'nan.tif'.*NaN or infinite"):
        decode_image(encode(Image.fromarray(bad), "TIFF"), "nan.tif")


def test_32bit_integer_tiff() -> None:
    v16 = np.array([[0, 255, 256, 65535]], dtype=np.int32)
    data = encode(Image.fromarray(v16), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    assert torch.equal(decode_image(data, "i.tif"), chw((v16 >> 8).astype(np.uint8)))
    wide = np.array([[-100, 0, 100, 70000]], dtype=np.int32)  # outside 0..65535: min-max
    expected = np.floor((wide - -100) * 255 / 70100 + 0.5).astype(np.uint8)
    assert torch.equal(decode_image(encode(Image.fromarray(wide), "TIFF"), "w.tif"), chw(expected))


@pytest.mark.parametrize(
    "orientation,expected",
    [
        (1, lambda a: a),
        (2, np.fliplr),
        (3, lambda a: np.rot90(a, 2)),
        (6, lambda a: np.rot90(a, -1)),  # the camera was turned: show it rotated 90 degrees clockwise
        (8, lambda a: np.rot90(a, 1)),
    ],
)
def test_exif_orientation_applied(orientation, expected) -> None:
    arr = blocks(2, 4)  # 16 x 32, not symmetric
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(arr), "JPEG", quality=100, subsampling=0, exif=exif.tobytes())
    out = decode_image(data, f"o{orientation}.jpg")
    want = chw(np.ascontiguousarray(expected(arr)))
    assert out.shape == want.shape
    assert (out.int() - want.int()).abs().max() <= 4  # JPEG rounding only


def test_alpha_composited_over_white() -> None:
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 255
    a = rgba[:, :, 3:4].astype(np.float64)
    expected = np.floor((rgba[:, :, :3] * a + 255 * (255 - a)) / 255 + 0.5).astype(np.uint8)
    out = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), "rgba.png")
    assert torch.equal(out, chw(expected))
    assert out[:, 0, 0].tolist() == [255, 255, 255] and out[:, 0, 1].tolist() == rgba[0, 1, :3].tolist()
    la = rgba[:, :, [0, 3]]
    la_expected = np.floor((la[:, :, 0:1] * a + 255 * (255 - a)) / 255 + 0.5).astype(np.uint8)[:, :, 0]
    assert torch.equal(decode_image(encode(Image.fromarray(la, "LA"), "PNG"), "la.png"), chw(la_expected))


def test_palette_with_transparency_one_bit_cmyk_and_gif_first_frame() -> None:
    idx = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    pal = Image.fromarray(idx, "P")
    pal.putpalette([10, 20, 30, 200, 100, 50, 0, 0, 0] + [0] * (253 * 3))
    data = encode(pal, "PNG", transparency=2)  # index 2 (black) is transparent
    expected = np.array([[[10, 20, 30], [200, 100, 50], [255, 255, 255]],
                         [[255, 255, 255], [200, 100, 50], [10, 20, 30]]], dtype=np.uint8)
    assert torch.equal(decode_image(data, "p.png"), chw(expected))

    bits = np.array([[True, False, True, True]])
    out = decode_image(encode(Image.fromarray(bits), "PNG"), "1.png")
    assert torch.equal(out, chw(np.where(bits, 255, 0).astype(np.uint8)))

    cmyk = Image.fromarray(np.random.default_rng(3).integers(0, 256, (4, 6, 4), dtype=np.uint8), "CMYK")
    data = encode(cmyk, "TIFF")
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # Pillow's CMYK -> RGB
    assert torch.equal(decode_image(data, "cmyk.tif"), chw(reference))

    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    out = decode_image(buf.getvalue(), "anim.gif")
    assert out.shape == (3, 8, 8) and out[:, 4, 4].tolist() == [255, 0, 0]


# ---------------------------------------------------------------- errors and limits
def test_unreadable_bytes_give_one_line_named_errors() -> None:
    good = encode(Image.fromarray(blocks(4, 4)), "JPEG")
    cases = {
        "empty.jpg": (b"", "empty \\(0 bytes\\)"),
        "text.jpg": (b"hello, I am not a picture\n", "not an image"),
        "cut.jpg": (good[: len(good) // 2], "(?i:truncated)"),
    }
    for name, (data, reason) in cases.items():
        with pytest.raises(CorruptImageError, match=rf"^cannot decode image '{name}' in a.zip: .*{reason}") as exc:
            decode_image(data, name, "a.zip")
        msg = str(exc.value)
        assert "\n" not in msg and " at 0x" not in msg and "BytesIO" not in msg, msg


def test_pixel_limit_and_decompression_bomb() -> None:
    bomb = png_bytes(30000, 30000, 8, 2, None)  # 900 MPixel declared in a 60-byte file
    assert len(bomb) < 100
    # Pillow's own guard (over 2 x MAX_IMAGE_PIXELS) fires first; reported against max_pixels
    with pytest.raises(CorruptImageError, match=r"'bomb.png': 900,000,000 pixels is over the limit of 64,000,000"):
        decode_image(bomb, "bomb.png")
    with pytest.raises(CorruptImageError, match=r"900,000,000 pixels is over Pillow's decompression-bomb limit"):
        decode_image(bomb, "bomb.png", max_pixels=None)
    big = png_bytes(9000, 8000, 8, 2, None)  # 72 MPixel: under Pillow's guard, over the 64 MPixel default
    with pytest.raises(CorruptImageError, match="over the limit of 64,000,000"):  # the default
        decode_image(big, "big.png")
    small = encode(Image.new("RGB", (20, 20)), "PNG")
    assert decode_image(small, "s.png", max_pixels=400).shape == (3, 20, 20)
    with pytest.raises(CorruptImageError, match="400 pixels is over the limit of 399"):
        decode_image(small, "s.png", max_pixels=399)


def test_sources_confine_names_and_cap_sizes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "secret.txt").write_text("outside")
    assert sources.unsafe_name_reason("sub/a.bin") is None
    for bad in ("../secret.txt", "sub/../../secret.txt", "/etc/passwd", "C:x", "a\\b", ""):
        assert sources.unsafe_name_reason(bad) is not None, bad
    src = sources.DirSource(root, max_bytes=100)
    assert src.read("sub/a.bin") == b"x" * 100
    with pytest.raises(InvalidInputError, match=r"'\.\./secret.txt'.*'\.\.' component"):
        src.read("../secret.txt")
    assert not src.exists("../secret.txt")
    with pytest.raises(InvalidInputError, match="is 100 bytes, over the limit of 99 bytes"):
        sources.DirSource(root, max_bytes=99).read("sub/a.bin")
    with pytest.raises(InputNotFoundError, match="'nope' in"):
        src.read("nope")
    zpath = tmp_path / "a.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m.bin", b"y" * 1000)
    assert sources.ZipSource(zpath, max_bytes=1000).read("m.bin") == b"y" * 1000
    with pytest.raises(InvalidInputError, match="'m.bin' in .*a.zip is 1,000 bytes, over the limit of 999"):
        sources.ZipSource(zpath, max_bytes=999).read("m.bin")


def test_open_image_and_expand_inputs_use_the_shared_readers(tmp_path: Path) -> None:
    arr = blocks(2, 3)
    Image.fromarray(arr).save(tmp_path / "a.png")
    (tmp_path / "d").mkdir()
    Image.fromarray(arr).save(tmp_path / "d" / "b.tiff")
    (tmp_path / "d" / "c.pbm").write_bytes(encode(Image.new("1", (3, 3)), "PPM"))
    zpath = tmp_path / "z.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(tmp_path / "a.png", "x/a.png")
        zf.writestr("x/crc.png", encode(Image.fromarray(arr), "PNG"))
    raw = bytearray(zpath.read_bytes())  # damage the stored data of x/crc.png: a CRC error on read
    pos = raw.rfind(b"IEND")
    raw[pos - 8] ^= 0xFF
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(raw))
    assert torch.equal(open_image(f"{zpath}::x/a.png"), chw(arr))
    assert torch.equal(open_image(tmp_path / "a.png"), chw(arr))
    with pytest.raises(CorruptImageError, match=r"'x/crc.png' in .*damaged.zip.*CRC"):
        open_image(f"{damaged}::x/crc.png")
    with pytest.raises(CorruptImageError, match="over the limit of 10 bytes"):
        open_image(tmp_path / "a.png", max_bytes=10)
    with pytest.raises(CorruptImageError, match=r"384 pixels is over the limit of 6 \("):
        open_image(tmp_path / "a.png", max_pixels=6)
    # one extension list (swinlab.constants.IMAGE_EXTENSIONS): .tiff and .pbm are images too
    assert expand_inputs([tmp_path / "d"]) == [str(tmp_path / "d" / "b.tiff"), str(tmp_path / "d" / "c.pbm")]


# ---------------------------------------------------------------- bounded memory
GIB = 1 << 30
MEMBER = "tiny-imagenet-200/train/n01/images/n01_1.JPEG"


@pytest.fixture(scope="module")
def gib_zip(tmp_path_factory) -> dict[str, Path]:
    """A Tiny-ImageNet-layout zip of about 1 MB holding a 1 GiB member (zeros,
    written in 1 MiB chunks so this process never holds it), plus a copy whose
    central directory claims that member has 1,000 bytes (a lying header)."""
    tmp = tmp_path_factory.mktemp("gib")
    path = tmp / "tiny-imagenet-200.zip"
    good = encode(Image.new("RGB", (64, 64), (9, 99, 199)), "JPEG")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "n01\n")
        zf.writestr("tiny-imagenet-200/train/n01/images/n01_0.JPEG", good)
        chunk = bytes(1 << 20)
        with zf.open(MEMBER, "w") as f:
            for _ in range(GIB // len(chunk)):
                f.write(chunk)
    assert path.stat().st_size < 2 << 20
    liar = tmp / "liar.zip"
    shutil.copyfile(path, liar)
    raw = bytearray(liar.read_bytes())
    name = MEMBER.encode()
    cd = raw.find(b"PK\x01\x02")  # central-directory entries: name at +46, uncompressed size at +24
    while raw[cd + 46:cd + 46 + len(name)] != name:
        cd = raw.find(b"PK\x01\x02", cd + 4)
        assert cd > 0
    assert struct.unpack_from("<I", raw, cd + 24)[0] == GIB
    struct.pack_into("<I", raw, cd + 24, 1000)  # uncompressed size in the central directory
    liar.write_bytes(bytes(raw))
    with zipfile.ZipFile(liar) as zf:
        assert zf.getinfo(MEMBER).file_size == 1000
    return {"zip": path, "liar": liar}


#: the bound stated for every refused input below: the process's peak resident memory
#: while reading it, above its resident memory just before. Decoding the bombs would
#: need 2.4 GiB (30000 x 30000 x 3) and 206 MiB (9000 x 8000 x 3); the member holds 1 GiB.
PEAK_BOUND_MIB = 48

# The probe resets the kernel's peak-RSS mark (VmHWM, "5" > /proc/self/clear_refs, Linux >= 4.0)
# before each case, so the peak is that of the case alone; where that is refused it falls back
# to the growth of ru_maxrss (a weaker check: allocations below an earlier peak go unseen).
_PROBE = textwrap.dedent(
    """
    import json, re, resource, sys, warnings
    from swinlab.data import build_dataset
    from swinlab.inference import open_image
    from swinlab.errors import CorruptImageError

    def status(key):
        text = open("/proc/self/status").read()
        return int(re.search(key + r":\\s+(\\d+) kB", text).group(1)) / 1024

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    cases = json.loads(sys.argv[1])
    open_image(cases.pop("warmup"))  # import Pillow's plugins, first allocations
    report = {}
    for name, spec in cases.items():
        exact = reset_peak()
        before = status("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        try:
            if name == "dataset":
                with warnings.catch_warnings(record=True):
                    ds = build_dataset("tiny-imagenet", spec, "train", skip_corrupt=True, progress=False)
                result = {"len": len(ds), "skipped": [s.error for s in ds.skipped_images]}
            else:
                open_image(spec)
                result = {"error": None}
        except CorruptImageError as exc:
            result = {"error": str(exc)}
        peak = status("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["growth_mib"], result["exact"] = peak - before, exact
        report[name] = result
    print(json.dumps(report))
    """
)


def test_bombs_and_gib_member_are_per_file_errors_with_bounded_memory(tmp_path: Path, gib_zip) -> None:
    (tmp_path / "bomb.png").write_bytes(png_bytes(30000, 30000, 8, 2, None))
    (tmp_path / "big.png").write_bytes(zero_png(9000, 8000))  # decodable: 206 MiB of pixels
    Image.new("RGB", (8, 8)).save(tmp_path / "warm.png")
    cases = {
        "warmup": str(tmp_path / "warm.png"),
        "bomb": str(tmp_path / "bomb.png"),
        "big": str(tmp_path / "big.png"),
        "member": f"{gib_zip['zip']}::{MEMBER}",
        "liar": f"{gib_zip['liar']}::{MEMBER}",
        "dataset": str(gib_zip["zip"]),  # the training loader's ZipSource.read
    }
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(cases)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert "900,000,000 pixels is over the limit of 64,000,000" in report["bomb"]["error"]
    assert "9000 x 8000 = 72,000,000 pixels is over the limit" in report["big"]["error"]
    assert "is 1,073,741,824 bytes, over the limit of 268,435,456 bytes" in report["member"]["error"]
    assert MEMBER in report["member"]["error"]
    assert "CRC" in report["liar"]["error"]
    assert report["dataset"]["len"] == 1 and len(report["dataset"]["skipped"]) == 1
    assert "1,073,741,824 bytes" in report["dataset"]["skipped"][0]
    for name, result in report.items():
        assert result["growth_mib"] < PEAK_BOUND_MIB, (name, result)
