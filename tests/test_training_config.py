"""Run config: recipes load, overrides, clear errors for bad keys/values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swinlab.data import AugmentConfig, kornia_randaugment_magnitude
from swinlab.models import list_models
from swinlab.training.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    find_config,
    load_config,
    parse_set_items,
)

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "src" / "swinlab" / "configs").glob("*.json"))
EXPECTED = {"ref000_cifar100", "ref003_tiny_imagenet", "lee_smalldata_tiny_imagenet", "lee_smalldata_cifar100",
            "ref004_vit_cifar100", "finetune_384", "quick_cpu_tiny_imagenet"}


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
