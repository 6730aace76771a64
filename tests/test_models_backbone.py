"""The backbone API of every model family (issue 21, timm's conventions):
``create_model(name, features_only=True)`` against timm's recorded
``features_only`` output (``../shared/reference/checkpoints/
timm_features_only.json``), ``forward_intermediates`` against the stage /
block outputs, an FPN head trained on the features, gradient checkpointing
(same gradients, blocks recomputed), ``reset_classifier`` / ``get_classifier``
and the layer-decay groups of ``group_matcher``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import swinlab
from swinlab.errors import UsageError
from swinlab.models import FeatureBackbone, list_models
from swinlab.models.backbone import feature_take_indices
from swinlab.training.optim import num_lr_layers, param_groups

# (registry name, input "HxW") of the timm records; a SwinV2 row is one more line.
TIMM_CASES = [
    ("swin_tiny_patch4_window7_224", "224x224"),
    ("swin_tiny_patch4_window7_224", "224x320"),
    ("swin_s3_tiny_224", "224x224"),
    ("vit_small_patch16_224", "224x224"),
    ("swinv2_tiny_window8_256", "256x256"),  # pending the SwinV2 model (skipped until it is registered)
    ("swinv2_tiny_window8_256", "256x320"),  # pending the SwinV2 model
]

# small models of each family, built through the registry (create_model overrides)
SMALL = {
    "swin": ("swin_tiny_patch4_window7_224", dict(img_size=64, embed_dim=16, depths=(2, 2, 2, 2),
                                                  num_heads=(1, 2, 2, 4), window_size=4)),
    "swin_s3": ("swin_s3_tiny_224", dict(img_size=64, embed_dim=16, depths=(1, 2, 1, 1), num_heads=(1, 2, 2, 4))),
    "vit": ("vit_tiny_patch16_224", dict(img_size=64, patch_size=8, embed_dim=32, depth=4, num_heads=2)),
    "swin_v2": ("swinv2_tiny_window8_256", dict(img_size=64, embed_dim=16, depths=(2, 2, 2, 2),  # pending V2
                                                num_heads=(1, 2, 2, 4), window_size=4)),
}


def _small(family: str) -> tuple[str, dict]:
    """The small model of ``family`` (skipped while its name is not registered)."""
    name, kwargs = SMALL[family]
    _registered(name)
    return name, kwargs


def _registered(name: str) -> None:
    if name not in list_models():
        pytest.skip(f"{name} is not registered yet (pending the SwinV2 model of issue 21)")


def _timm_module(ours: str) -> str:
    """timm's name of the module a map comes from: a Swin stage's map is the
    output of ``layers.i.blocks`` here (merging at the END of a stage, the
    official layout) and of ``layers.i`` in timm (merging at its start)."""
    return ours.removesuffix(".blocks")


@pytest.fixture(scope="module")
def timm_records(reference_dir: Path) -> dict:
    return json.loads((reference_dir / "timm_features_only.json").read_text())


@pytest.mark.parametrize(("name", "size"), TIMM_CASES, ids=[f"{n}@{s}" for n, s in TIMM_CASES])
def test_features_only_matches_timm(name, size, timm_records):
    _registered(name)
    record = timm_records[f"{name}@{size}"]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in record["create_model_kwargs"].items()}
    torch.manual_seed(0)
    backbone = swinlab.create_model(name, features_only=True, **kwargs).eval()
    h, w = (int(v) for v in size.split("x"))
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, h, w))
    assert [list(m.shape) for m in maps] == record["output_shapes"]
    assert f"Format.{backbone.output_fmt}" == record["output_fmt"]
    ours = backbone.feature_info.get_dicts(keys=("num_chs", "reduction", "module"))
    assert [{**d, "module": _timm_module(d["module"])} for d in ours] == record["feature_info"]
    for d in ours:  # the named module exists and is the one whose output the map is
        backbone.model.get_submodule(d["module"])
    nchw = swinlab.create_model(name, features_only=True, output_fmt="NCHW", **kwargs).eval()
    with torch.no_grad():
        maps_nchw = nchw(torch.randn(1, 3, h, w))
    expect = [(1, d["num_chs"], -(-h // d["reduction"]), -(-w // d["reduction"])) for d in ours]
    assert [tuple(m.shape) for m in maps_nchw] == expect


@pytest.mark.parametrize("family", sorted(SMALL))
@pytest.mark.parametrize("size", [(64, 64), (64, 96), (48, 80)], ids=["square", "wide", "wide-odd"])
def test_feature_maps_follow_feature_info(family, size):
    """Every family at square and non-square sizes: map i has
    ``feature_info.channels()[i]`` channels and ``ceil(side / reduction)``
    rows / columns, in NHWC and NCHW."""
    name, kwargs = _small(family)
    h, w = size
    for fmt in ("NHWC", "NCHW"):
        backbone = swinlab.create_model(name, features_only=True, output_fmt=fmt, **kwargs).eval()
        with torch.no_grad():
            maps = backbone(torch.randn(2, 3, h, w))
        info = backbone.feature_info
        want = [(-(-h // r), -(-w // r), c) for c, r in zip(info.channels(), info.reduction(), strict=True)]
        got = [tuple(m.shape[1:]) if fmt == "NHWC" else (*m.shape[2:], m.shape[1]) for m in maps]
        assert got == want


def _hooked_outputs(model: nn.Module, names: list[str], x: torch.Tensor) -> list[torch.Tensor]:
    outs: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: outs.__setitem__(n, o))
               for n in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [outs[n] for n in names]


@pytest.mark.parametrize("family", sorted(SMALL))
def test_forward_intermediates_equals_the_stage_outputs(family):
    name, kwargs = _small(family)
    model = swinlab.create_model(name, **kwargs).eval()
    x = torch.randn(2, 3, 64, 96)
    names = [d["module"] for d in model.feature_info]
    stage_outputs = _hooked_outputs(model, names, x)  # NHWC maps (Swin) / tokens (ViT)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x, output_fmt="NHWC")
        nchw = model.forward_intermediates(x, indices=(0, -1), intermediates_only=True)
        normed = model.forward_intermediates(x, indices=1, norm=True, output_fmt="NHWC", intermediates_only=True)
        features = model.forward_features(x)
    assert len(inter) == len(names)
    prefix = getattr(model, "num_prefix_tokens", 0)
    for got, out in zip(inter, stage_outputs, strict=True):
        want = out[:, prefix:].reshape(got.shape) if family == "vit" else out
        assert torch.equal(got, want)
    assert torch.equal(nchw[0], inter[0].permute(0, 3, 1, 2)) and torch.equal(nchw[1], inter[-1].permute(0, 3, 1, 2))
    last = stage_outputs[-1][:, prefix:].reshape(inter[-1].shape) if family == "vit" else stage_outputs[-1]
    assert torch.allclose(normed[0], model.norm(last), atol=1e-6)
    if family == "vit":
        assert torch.equal(final, features)
    else:
        assert torch.equal(final.permute(0, 3, 1, 2), features)


def test_indices_and_pruning_follow_timm():
    assert feature_take_indices(4, None) == ([0, 1, 2, 3], 3)
    assert feature_take_indices(4, 2) == ([2, 3], 3)
    assert feature_take_indices(4, (0, -2)) == ([0, 2], 2)
    for bad in (0, 5, (4,), (-5,), ()):
        with pytest.raises(ValueError, match="indices|index"):
            feature_take_indices(4, bad)
    name, kwargs = _small("swin")
    full = swinlab.create_model(name, **kwargs).eval()
    backbone = swinlab.create_model(name, features_only=True, out_indices=(0, 2), output_fmt="NCHW", **kwargs)
    backbone.load_state_dict({f"model.{k}": v for k, v in full.state_dict().items()
                              if f"model.{k}" in backbone.state_dict()})
    assert len(backbone.model.layers) == 3 and isinstance(backbone.model.head, nn.Identity)
    assert backbone.feature_info.channels() == [16, 64] and backbone.feature_info.reduction() == [4, 16]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(backbone.eval()(x), full.forward_intermediates(
            x, indices=(0, 2), intermediates_only=True), strict=True))
    vit = swinlab.create_model(*SMALL["vit"][:1], features_only=True, **SMALL["vit"][1])
    assert vit.out_indices == (1, 2, 3) and vit.feature_info.module_name() == ["blocks.1", "blocks.2", "blocks.3"]


def test_create_model_backbone_errors():
    name, kwargs = _small("swin")
    with pytest.raises(UsageError, match="features_only"):
        swinlab.create_model(name, out_indices=(0, 1), **kwargs)
    with pytest.raises(UsageError, match="out of range"):
        swinlab.create_model(name, features_only=True, out_indices=(0, 4), **kwargs)
    with pytest.raises(UsageError, match="output_fmt='NLHC'"):
        swinlab.create_model(name, features_only=True, output_fmt="NLHC", **kwargs)
    with pytest.raises(TypeError, match="forward_intermediates"):
        FeatureBackbone(nn.Linear(2, 2))


class TinyFPN(nn.Module):
    """A small FPN (Lin et al. 2017): 1x1 laterals, top-down upsampling and
    sums, a 3x3 smoothing conv and a per-pixel classifier on the finest map."""

    def __init__(self, channels: list[int], dim: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in channels)
        self.smooth = nn.Conv2d(dim, dim, 3, padding=1)
        self.classify = nn.Conv2d(dim, classes, 1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](maps[-1])
        for lateral, m in zip(reversed(self.lateral[:-1]), reversed(maps[:-1])):
            x = lateral(m) + F.interpolate(x, size=m.shape[-2:], mode="nearest")
        return self.classify(F.relu(self.smooth(x)))


@pytest.mark.parametrize("family", sorted(SMALL))
def test_fpn_head_trains_on_the_features(family):
    """A detection-style head on ``features_only`` NCHW maps: the loss falls
    over a few steps and every backbone parameter gets a non-zero gradient."""
    name, kwargs = _small(family)
    torch.manual_seed(0)
    backbone = swinlab.create_model(name, features_only=True, output_fmt="NCHW", drop_path_rate=0.0, **kwargs)
    head = TinyFPN(backbone.feature_info.channels())
    x = torch.randn(4, 3, 64, 64)
    r = backbone.feature_info.reduction()[0]
    target = torch.randint(0, 3, (4, 64 // r, 64 // r))
    opt = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=2e-3)
    losses, reached = [], set()
    for _ in range(6):
        opt.zero_grad()
        loss = F.cross_entropy(head(backbone(x)), target)
        loss.backward()
        reached |= {n for n, p in backbone.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        opt.step()
        losses.append(loss.item())
    # (SwinV2's res-post-norms start at zero: its branches get gradients from the second step on)
    missing = sorted({n for n, _ in backbone.named_parameters()} - reached)
    assert not missing, f"no gradient reached {missing}"
    assert losses[-1] < losses[0]


def _loss_and_grads(model: nn.Module, x: torch.Tensor, checkpointing: bool) -> list[torch.Tensor]:
    model.set_grad_checkpointing(checkpointing)
    model.zero_grad()
    torch.manual_seed(1)  # the same dropout / stochastic depth draws in both runs
    loss = model(x).square().mean()
    loss.backward()
    return [loss.detach()] + [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("family", sorted(SMALL))
def test_grad_checkpointing_gives_the_same_gradients(family):
    """In training with dropout and stochastic depth on, the checkpointed
    model's loss and every gradient equal the plain ones within 1e-6, and
    every block runs twice per step (the recomputation)."""
    name, kwargs = _small(family)
    torch.manual_seed(0)
    model = swinlab.create_model(name, num_classes=5, drop_rate=0.1, drop_path_rate=0.3, **kwargs).train()
    x = torch.randn(3, 3, 64, 80)
    calls = []
    blocks = [m for n, m in model.named_modules() if n.count(".") == (1 if family == "vit" else 3)
              and n.split(".")[-2] == "blocks"]
    for block in blocks:
        block.register_forward_pre_hook(lambda m, a: calls.append(m))  # the recomputation stops early: no post-hook
    plain = _loss_and_grads(model, x, False)
    assert len(calls) == len(blocks)
    calls.clear()
    ckpt = _loss_and_grads(model, x, True)
    assert len(calls) == 2 * len(blocks)
    for a, b in zip(plain, ckpt, strict=True):
        assert (a - b).abs().max() <= 1e-6
    calls.clear()
    with torch.no_grad():
        model(x)
    assert len(calls) == len(blocks)  # no checkpointing without autograd
    backbone = FeatureBackbone(model, output_fmt="NCHW")
    backbone.set_grad_checkpointing(False)
    assert not model.grad_checkpointing


@pytest.mark.parametrize("family", sorted(SMALL))
def test_get_and_reset_classifier(family):
    name, kwargs = _small(family)
    model = swinlab.create_model(name, num_classes=4, **kwargs).eval()
    assert model.get_classifier() is model.head and model.head.out_features == 4
    model.reset_classifier(7)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity)
    with torch.no_grad():
        assert model(x).shape == (2, model.num_features)
    model.reset_classifier(3, "")
    with torch.no_grad():
        unpooled = model(x)
    assert unpooled.shape == ((2, 2, 2, 3) if family != "vit" else (2, 1 + 8 * 8, 3))
    with pytest.raises(ValueError, match="global_pool"):
        model.reset_classifier(3, "max")


def test_vit_reset_classifier_pooling():
    name, kwargs = _small("vit")
    model = swinlab.create_model(name, **kwargs).eval()
    model.reset_classifier(2, "avg")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        tokens = model.forward_features(x)
        assert torch.allclose(model(x), model.head(tokens[:, 1:].mean(dim=1)), atol=1e-6)
    with pytest.raises(ValueError, match="flatten"):
        model.reset_classifier(2, "flatten")


@pytest.mark.parametrize("family", sorted(SMALL))
def test_layer_decay_groups_from_group_matcher(family):
    """Layer-wise lr decay of every family comes from its ``group_matcher``:
    ids rise with depth from the embedding (0) to the head (the last)."""
    name, kwargs = _small(family)
    model = swinlab.create_model(name, num_classes=3, **kwargs)
    n = num_lr_layers(model)
    assert n == model.num_lr_layers() == sum(len(getattr(s, "blocks", [s])) for s in
                                             (model.layers if family != "vit" else [model])) + 2
    scale = {name: g["lr_scale"] for g in param_groups(model, 0.05, layer_decay=0.5) for name in g["param_names"]}
    assert scale["head.weight"] == 1.0 and scale["patch_embed.proj.weight"] == pytest.approx(0.5 ** (n - 1))
    block_names = [d["module"] for d in model.feature_info]
    first = [scale[k] for k in scale if k.startswith(f"{block_names[0]}.")]
    last = [scale[k] for k in scale if k.startswith(f"{block_names[-1]}.")]
    assert max(first) < min(last) < 1.0
