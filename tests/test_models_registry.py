"""Tests of the model registry (``create_model``, ``list_models``) and that
every registered configuration builds and runs (on the meta device)."""

from __future__ import annotations

import pytest
import torch

from swinlab import create_model
from swinlab.models import ModelSpec, get_model_spec, list_models, register_model
from swinlab.models.flops import count_macs, count_params
from swinlab.models.swin import SwinTransformer


def test_list_models_names():
    names = list_models()
    assert names == sorted(names)
    for required in ("swin_tiny_patch4_window7_224", "swin_large_patch4_window12_384_in22k", "swin_s3_base_224",
                     "swin_keras_cifar100_patch2_window2_32", "vit_base_patch16_224", "vit_keras_cifar100_patch6_72"):
        assert required in names
    assert list_models("swin_s3*") == ["swin_s3_base_224", "swin_s3_small_224", "swin_s3_tiny_224"]
    assert list_models("nothing*") == []


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_and_counts(name):
    with torch.device("meta"):
        model = create_model(name)
    assert model.model_name == name and count_params(model) > 0
    assert get_model_spec(name).num_params == count_params(model)  # the registry's recorded count (listings)
    size = model.img_size
    assert count_macs(model, (3, size[0], size[1])) > 0


def test_overrides_are_applied():
    model = create_model("swin_tiny_patch4_window7_224", num_classes=10, img_size=64, drop_path_rate=0.0,
                         window_size=4, embed_dim=48, depths=(1, 1), num_heads=(2, 4))
    assert isinstance(model, SwinTransformer)
    assert model.num_classes == 10 and model.img_size == (64, 64) and model.window_sizes == [4, 4]
    assert model.model_kwargs["embed_dim"] == 48
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    assert model.training is False


def test_in22k_head_size():
    with torch.device("meta"):
        model = create_model("swin_tiny_patch4_window7_224_in22k")
    assert model.head.out_features == 21841


def test_keras_swin_parameter_count():
    """Reference 000 by hand: patch 2 (12 values) -> 64, 256-entry position table,
    two blocks (LN, qkv 64->192, proj, 3x3x8 bias table, LN, MLP 64-256-64),
    patch merging 256->128 without bias or norm, head 128->100: 162,996.
    (The reference text rounds it to "152K".)"""
    block = 128 + (64 * 192 + 192) + (64 * 64 + 64) + 9 * 8 + 128 + (64 * 256 + 256) + (256 * 64 + 64)
    want = (12 * 64 + 64) + 256 * 64 + 2 * block + 256 * 128 + (128 * 100 + 100)
    model = create_model("swin_keras_cifar100_patch2_window2_32")
    assert count_params(model) == want
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_unknown_name_message():
    with pytest.raises(ValueError, match=r"unknown model name 'swin_tiny_patch4_window7_22'; did you mean "
                                         r"swin_tiny_patch4_window7_224"):
        create_model("swin_tiny_patch4_window7_22")
    with pytest.raises(ValueError, match=r"unknown model name 'resnet50'"):
        get_model_spec("resnet50")


def test_unknown_override_message():
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['windw_size'\] for model "
                                         r"'swin_tiny_patch4_window7_224'; accepted: \[.*'window_size'"):
        create_model("swin_tiny_patch4_window7_224", windw_size=4)


def test_duplicate_registration_rejected():
    spec = get_model_spec("swin_tiny_patch4_window7_224")
    with pytest.raises(ValueError, match="already registered"):
        register_model(ModelSpec(spec.name, spec.builder, spec.kwargs))
