"""AdamW parameter groups: exactly norms, biases, relative position tables,
position embeddings and tokens are exempt from weight decay; lr scaling,
layer decay and linear probing."""

from __future__ import annotations

import pytest
import torch

import swinlab
from swinlab.training.optim import (
    build_optimizer,
    freeze_for_linear_probe,
    layer_id_for,
    no_weight_decay_names,
    num_lr_layers,
    param_groups,
    scaled_lr,
)


def _tiny_swin(**kw):
    return swinlab.create_model("swin_micro_patch4_window4_64", img_size=32, embed_dim=16, depths=(2, 2),
                                num_heads=(1, 2), window_size=4, **kw)


def _expected_no_decay(model: torch.nn.Module) -> set[str]:
    # written independently of the implementation: by module type and name
    out = set()
    norm_params = {
        f"{mn}.{pn}" if mn else pn
        for mn, m in model.named_modules()
        if isinstance(m, torch.nn.LayerNorm)
        for pn, _ in m.named_parameters(recurse=False)
    }
    for name, _ in model.named_parameters():
        if name in norm_params or name.endswith(".bias") or name.split(".")[-1] in (
            "relative_position_bias_table", "absolute_pos_embed", "pos_embed", "cls_token"
        ):
            out.add(name)
    return out


def test_swin_no_decay_set_is_exactly_norms_biases_tables_pos_embed() -> None:
    model = _tiny_swin(ape=True)
    got = no_weight_decay_names(model)
    assert got == _expected_no_decay(model)
    assert "absolute_pos_embed" in got
    assert any(n.endswith("relative_position_bias_table") for n in got)
    for must_decay in ("patch_embed.proj.weight", "head.weight", "layers.0.blocks.0.attn.qkv.weight",
                       "layers.0.blocks.0.mlp.fc1.weight", "layers.0.downsample.reduction.weight"):
        assert must_decay not in got


def test_vit_no_decay_includes_pos_embed_and_cls_token() -> None:
    model = swinlab.create_model("vit_tiny_patch16_224", depth=2, img_size=32, num_classes=5)
    got = no_weight_decay_names(model)
    assert got == _expected_no_decay(model)
    assert {"pos_embed", "cls_token"} <= got
    assert "blocks.0.attn.qkv.weight" not in got


def test_groups_cover_every_parameter_once_with_right_decay() -> None:
    model = _tiny_swin()
    opt = build_optimizer(model, 1e-3, 0.05)
    seen = [p for g in opt.param_groups for p in g["params"]]
    assert len(seen) == len({id(p) for p in seen}) == len(list(model.parameters()))
    skip = no_weight_decay_names(model)
    for g in opt.param_groups:
        names = g["param_names"]
        want = 0.0 if names[0] in skip else 0.05
        assert g["weight_decay"] == want
        assert all((n in skip) == (want == 0.0) for n in names)


def test_linear_lr_scaling_rule() -> None:
    assert scaled_lr(5e-4, 1024, 512) == pytest.approx(1e-3)
    assert scaled_lr(5e-4, 64, 512) == pytest.approx(6.25e-5)
    assert scaled_lr(5e-4, 1024, None) == 5e-4


def test_layer_decay_scales_fall_from_head_to_embedding() -> None:
    model = _tiny_swin()
    n = num_lr_layers(model)
    assert n == sum(model.depths) + 2
    groups = param_groups(model, 0.05, layer_decay=0.5)
    scale = {name: g["lr_scale"] for g in groups for name in g["param_names"]}
    assert scale["head.weight"] == 1.0
    assert scale["patch_embed.proj.weight"] == pytest.approx(0.5 ** (n - 1))
    assert layer_id_for("layers.1.blocks.1.attn.qkv.weight", model) == 4
    assert layer_id_for("layers.0.downsample.reduction.weight", model) == 2
    assert scale["layers.0.blocks.0.attn.qkv.weight"] < scale["layers.1.blocks.1.attn.qkv.weight"]


def test_linear_probe_trains_only_the_head() -> None:
    model = _tiny_swin(num_classes=7)
    trainable = freeze_for_linear_probe(model)
    assert trainable == ["head.weight", "head.bias"]
    opt = build_optimizer(model, 1e-3, 0.05)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(model.head.weight), id(model.head.bias)}
    with pytest.raises(ValueError, match="head"):
        freeze_for_linear_probe(_tiny_swin(num_classes=0))
