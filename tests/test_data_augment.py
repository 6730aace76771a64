"""AugmentConfig, Mixup/CutMix, BatchAugment, EvalTransform, ResizeUint8."""

from __future__ import annotations

import json

import pytest
import torch

from swinlab.data import (
    AugmentConfig,
    BatchAugment,
    EvalTransform,
    Mixup,
    ResizeUint8,
    kornia_randaugment_magnitude,
    smooth_one_hot,
)

K = 10


def test_config_roundtrip_and_errors() -> None:
    cfg = AugmentConfig(img_size=32, pad_crop=4, crop_scale=[0.2, 1.0], mixup_alpha=0.8)
    assert cfg.crop_scale == (0.2, 1.0) and cfg.mixup_active
    d = json.loads(json.dumps(cfg.to_dict()))
    assert AugmentConfig.from_dict(d) == cfg
    assert AugmentConfig().to_dict()["mean"] == [0.485, 0.456, 0.406]
    with pytest.raises(ValueError, match=r"unknown aug key\(s\): 'mixup': did you mean 'mixup_prob'"):
        AugmentConfig.from_dict({"mixup": 0.8})
    for bad in ({"hflip": 1.5}, {"img_size": 0}, {"crop_scale": (0.5, 0.1)}, {"interpolation": "lanczos"},
                {"label_smoothing": 1.0}, {"randaugment_m": 11}, {"mean": (0.5, 0.5)}, {"eval_crop_ratio": 0}):
        key = next(iter(bad))
        with pytest.raises(ValueError, match=f"AugmentConfig.{key}"):
            AugmentConfig(**bad)
    assert kornia_randaugment_magnitude(9) == 27 and kornia_randaugment_magnitude(10) == 29


def test_smooth_one_hot_values() -> None:
    y = torch.tensor([0, 3, 9])
    t = smooth_one_hot(y, K, 0.1)
    assert torch.allclose(t.sum(1), torch.ones(3))
    assert t[1, 3].item() == pytest.approx(1 - 0.1 + 0.1 / K) and t[1, 0].item() == pytest.approx(0.1 / K)
    with pytest.raises(ValueError, match="0..9"):
        smooth_one_hot(torch.tensor([10]), K)


def _batch(b: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    # image i is constant i (so mixing is visible), labels i
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, 16, 16).contiguous()
    return x, torch.arange(b)


def test_mixup_targets_and_images() -> None:
    torch.manual_seed(0)
    mix = Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.1, num_classes=K)
    x, y = _batch()
    xm, t = mix(x, y)
    lam, eps = mix.last_lam, 0.1
    assert mix.last_mode == "mixup" and 0 < lam < 1
    assert torch.allclose(t.sum(1), torch.ones(len(y)))
    on, off = 1 - eps + eps / K, eps / K
    # sample 0 mixes with sample 5 (batch flipped)
    assert t[0, 0].item() == pytest.approx(lam * on + (1 - lam) * off)
    assert t[0, 5].item() == pytest.approx(lam * off + (1 - lam) * on)
    assert t[0, 2].item() == pytest.approx(off)
    assert torch.allclose(xm[0], torch.full_like(xm[0], lam * 0 + (1 - lam) * 5))
    assert torch.equal(x, _batch()[0])  # input untouched


def test_cutmix_area_corrected_lambda() -> None:
    torch.manual_seed(3)
    mix = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=K)
    x, y = _batch()
    for _ in range(10):
        xm, t = mix(x, y)
        assert mix.last_mode == "cutmix"
        pasted = (xm[0, 0] == 5).float().mean().item()  # fraction of image 0 now from image 5
        assert mix.last_lam == pytest.approx(1 - pasted)
        assert t[0, 0].item() == pytest.approx(1 - pasted) and t[0, 5].item() == pytest.approx(pasted)
        assert torch.allclose(t.sum(1), torch.ones(len(y)))


def test_mixup_switch_and_prob() -> None:
    torch.manual_seed(1)
    both = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, num_classes=K, label_smoothing=0.0)
    modes = set()
    for _ in range(40):
        both(*_batch())
        modes.add(both.last_mode)
    assert modes == {"mixup", "cutmix"}
    never = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.0, num_classes=K, label_smoothing=0.2)
    xm, t = never(*_batch())
    assert never.last_mode == "none" and torch.equal(xm, _batch()[0])
    assert torch.allclose(t, smooth_one_hot(torch.arange(6), K, 0.2))


def _uint8_batch(b: int = 4, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)


def test_batch_augment_identity_normalisation() -> None:
    cfg = AugmentConfig(img_size=64, random_resized_crop=False, hflip=0.0)
    x = _uint8_batch()
    out, t = BatchAugment(cfg, K)(x, torch.tensor([1, 2, 3, 4]))
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and torch.allclose(out, (x.float() / 255 - mean) / std, atol=1e-5)
    assert torch.equal(t, smooth_one_hot(torch.tensor([1, 2, 3, 4]), K))


def test_batch_augment_full_recipe_shapes_and_reproducibility() -> None:
    cfg = AugmentConfig(img_size=48, randaugment_n=2, randaugment_m=9, color_jitter=0.4, random_erasing=0.25,
                        mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)
    aug = BatchAugment(cfg, K)
    x, y = _uint8_batch(8), torch.randint(0, K, (8,))
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a, ta = aug(x, y)
    assert a.shape == (8, 3, 48, 48) and a.dtype == torch.float32 and ta.shape == (8, K)
    assert ta.dtype == torch.float32 and torch.allclose(ta.sum(1), torch.ones(8))
    assert ta.min() >= 0.1 / K - 1e-7  # smoothing floor
    lo = (0 - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    hi = (1 - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    assert (a.amin(dim=(0, 2, 3)) >= lo - 1e-4).all() and (a.amax(dim=(0, 2, 3)) <= hi + 1e-4).all()
    torch.set_rng_state(state)
    b, tb = aug(x, y)
    assert torch.equal(a, b) and torch.equal(ta, tb)
    c, _ = aug(x, y)
    assert not torch.equal(a, c)


def test_batch_augment_flip_and_pad_crop() -> None:
    x = _uint8_batch(2, 32)
    y = torch.tensor([0, 1])
    flip = BatchAugment(AugmentConfig(img_size=32, random_resized_crop=False, hflip=1.0, mean=(0, 0, 0),
                                      std=(1, 1, 1)), K)
    out, _ = flip(x, y)
    assert torch.allclose(out, x.float().flip(-1) / 255, atol=1e-6)
    pad = BatchAugment(AugmentConfig(img_size=32, pad_crop=4, hflip=0.0, mean=(0, 0, 0), std=(1, 1, 1)), K)
    torch.manual_seed(0)
    found_shift = False
    for _ in range(5):
        out, _ = pad(x, y)
        assert out.shape == (2, 3, 32, 32)
        # every output is a shifted window of the zero-padded input
        padded = torch.nn.functional.pad(x.float() / 255, (4, 4, 4, 4))
        ok = any(torch.allclose(out[0], padded[0, :, i:i + 32, j:j + 32], atol=1e-5)
                 for i in range(9) for j in range(9))
        assert ok
        found_shift |= not torch.allclose(out[0], x[0].float() / 255, atol=1e-5)
    assert found_shift
    with pytest.raises(ValueError, match="labels"):
        flip(x, torch.tensor([0, 1, 2]))


def test_eval_transform_center_crop() -> None:
    # 8x10 image whose pixel value encodes its position; ratio 1.0 without resize -> identity
    img = torch.zeros(1, 3, 8, 10, dtype=torch.uint8)
    img[0, 0] = torch.arange(80, dtype=torch.uint8).view(8, 10)
    cfg = AugmentConfig(img_size=4, eval_crop_ratio=0.5, mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest")
    # shorter side 8 -> int(4 / 0.5) = 8: no resize; centre 4x4 crop: rows 2..5, cols 3..6
    out = EvalTransform(cfg)(img)
    assert out.shape == (1, 3, 4, 4) and out.dtype == torch.float32
    assert torch.allclose(out[0, 0] * 255, img[0, 0, 2:6, 3:7].float(), atol=1e-4)
    # ImageNet-style: 64 -> resize shorter side to int(64 / 0.875) = 73, crop 64
    big = _uint8_batch(2, 64)
    ev = EvalTransform(AugmentConfig(img_size=64))
    got = ev(big)
    ref = torch.nn.functional.interpolate(big.float() / 255, size=(73, 73), mode="bicubic", align_corners=False)
    ref = ref.clamp(0, 1)[..., 4:68, 4:68]  # round((73 - 64) / 2) = 4
    m = torch.tensor(ev.cfg.mean).view(1, 3, 1, 1)
    s = torch.tensor(ev.cfg.std).view(1, 3, 1, 1)
    assert torch.allclose(got, (ref - m) / s, atol=1e-5)
    same = EvalTransform(AugmentConfig(img_size=64, eval_crop_ratio=1.0, mean=(0, 0, 0), std=(1, 1, 1)))
    assert torch.allclose(same(big), big.float() / 255)
    single = EvalTransform(AugmentConfig(img_size=64))(big[1])  # per-image use, (3, H, W)
    assert single.shape == (3, 64, 64) and torch.allclose(single, got[1], atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        same(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))


def test_resize_uint8() -> None:
    img = torch.full((3, 40, 80), 77, dtype=torch.uint8)
    img[:, :, 20:60] = 200  # centre band
    out = ResizeUint8(20)(img)
    assert out.shape == (3, 20, 20) and out.dtype == torch.uint8
    assert (out[:, :, 2:18] == 200).all()  # centre crop kept the band
    squash = ResizeUint8((10, 30), crop=False)(img)
    assert squash.shape == (3, 10, 30)
    with pytest.raises(TypeError, match="uint8"):
        ResizeUint8(8)(img.float())
