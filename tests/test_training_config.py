"""Run config: recipes load, overrides, clear errors for bad keys/values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swinlab.data import AugmentConfig, kornia_randaugment_magnitude
from swinlab.models import get_model_spec, list_models, pretrained_cfg
from swinlab.training.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    find_config,
    load_config,
    parse_set_items,
)
from swinlab.training.setup import build_run_model

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "src" / "swinlab" / "configs").glob("*.json"))
EXPECTED = {"ref000_cifar100", "ref003_tiny_imagenet", "lee_smalldata_tiny_imagenet", "lee_smalldata_cifar100",
            "ref004_vit_cifar100", "finetune_384", "quick_cpu_tiny_imagenet", "finetune_swinv2_192to256"}


def test_all_recipes_present() -> None:
    assert EXPECTED <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_loads_and_is_consistent(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.model in list_models()
    assert isinstance(cfg.aug, AugmentConfig)  # validated when the recipe was parsed
    assert cfg.to_dict() == TrainConfig.from_dict(cfg.to_dict()).to_dict()


def test_reference_recipes_follow_their_documents() -> None:
    r3 = load_config("ref003_tiny_imagenet")
    assert (r3.lr, r3.weight_decay, r3.warmup_epochs, r3.epochs, r3.clip_grad, r3.batch_size) == (
        3e-4, 0.05, 10, 200, 3.0, 128)
    assert (r3.aug.mixup_alpha, r3.aug.cutmix_alpha, r3.aug.random_erasing) == (0.8, 1.0, 0.25)
    # a PyTorch project's "RandAugment 2 ops, magnitude 9": torchvision's defaults, magnitude 9 of 30
    assert r3.aug.randaugment_n == 2 and kornia_randaugment_magnitude(r3.aug.randaugment_m) == 9
    r0 = load_config("ref000_cifar100")
    assert (r0.lr, r0.weight_decay, r0.lr_schedule, r0.epochs) == (1e-3, 1e-4, "constant", 40)
    ft = load_config("finetune_384")
    assert ft.pretrained_required and ft.lr_scale_batch == 512


def test_swinv2_finetune_recipe_follows_the_official_config() -> None:
    """finetune_swinv2_192to256: swinv2_base_patch4_window12to16_192to256_22kto1k_ft.yaml (TRAIN and
    DROP_PATH_RATE), the model at 256 px / window 16 with pretrained_window_sizes (12, 12, 12, 6),
    finetune_384's augmentation, and the eval crop of the model's pretrained config."""
    v2, v1 = load_config("finetune_swinv2_192to256"), load_config("finetune_384")
    assert v2.model == "swinv2_base_window12to16_192to256" and v2.pretrained_required
    assert (v2.epochs, v2.warmup_epochs, v2.weight_decay, v2.lr, v2.warmup_lr_init, v2.min_lr, v2.drop_path_rate) == (
        30, 5, 1e-8, 2e-5, 2e-8, 2e-7, 0.2)
    kwargs = get_model_spec(v2.model).kwargs
    assert (kwargs["img_size"], kwargs["window_size"], tuple(kwargs["pretrained_window_sizes"])) == (
        256, 16, (12, 12, 12, 6))
    assert v2.aug.img_size == 256 and v2.aug.eval_crop_ratio == pretrained_cfg(v2.model).crop_ratio
    same = ("random_resized_crop", "hflip", "color_jitter", "randaugment_n", "randaugment_m", "random_erasing",
            "mixup_alpha", "cutmix_alpha", "label_smoothing", "interpolation")
    assert {k: getattr(v2.aug, k) for k in same} == {k: getattr(v1.aug, k) for k in same}
    assert (v2.batch_size, v2.lr_scale_batch, v2.clip_grad, v2.lr_schedule) == (
        v1.batch_size, v1.lr_scale_batch, v1.clip_grad, v1.lr_schedule)
    with pytest.raises(ConfigError, match="pretrained"):  # raised when the run builds its model
        build_run_model(v2, num_classes=10, img_size=256, load_pretrained=True)


def test_overrides_and_set_items() -> None:
    cfg = TrainConfig()
    items = parse_set_items(["lr=0.01", "aug.hflip=0", "clip_grad=null", "model=swin_tiny_patch4_window7_64",
                             "betas=[0.8, 0.9]"])
    new = apply_overrides(cfg, items)
    assert new.lr == 0.01 and new.aug.hflip == 0 and new.clip_grad is None
    assert new.model == "swin_tiny_patch4_window7_64" and new.betas == [0.8, 0.9]
    assert cfg.lr == 1e-3 and cfg.aug == AugmentConfig()  # the original is untouched
    assert apply_overrides(cfg, {"epochs": 3}).epochs == 3
    assert apply_overrides(cfg, {"lr": 1}).lr == 1.0  # ints are fine for floats


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"learning_rate": 0.1}, "unknown key 'learning_rate'"),
        ({"epochs": "ten"}, "'epochs' has value 'ten'; expected an integer"),
        ({"epochs": 2.5}, "'epochs'"),
        ({"amp": "fp8"}, "'amp'"),
        ({"cache": "yes"}, "true/false"),
        ({"epochs": 0}, "epochs=0"),
        ({"lr.x": 1}, "not an object"),
    ],
)
def test_bad_overrides_raise_clear_errors(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        apply_overrides(TrainConfig(), overrides)


def test_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"lr": 0.1,,}')
    with pytest.raises(ConfigError, match="bad.json: invalid JSON"):
        load_config(bad)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"epochz": 3}))
    with pytest.raises(ConfigError, match=r"unknown.json: unknown key 'epochz' \(did you mean epochs"):
        load_config(unknown)
    with pytest.raises(FileNotFoundError, match="available recipes"):
        find_config("no_such_recipe")
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_set_items(["lr"])
