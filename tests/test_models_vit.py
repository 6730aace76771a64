"""Tests of the Vision Transformer (``swinlab.models.vit``): parameter counts
of timm's ViT-Ti/S/B, the compact Keras ViT of reference 004, attention
outputs, position-embedding resizing and input errors."""

from __future__ import annotations

import pytest
import torch

from swinlab import create_model
from swinlab.models import VisionTransformer
from swinlab.models.flops import count_macs, count_params


@pytest.mark.parametrize(
    "name, params",
    [("vit_tiny_patch16_224", 5_717_416), ("vit_small_patch16_224", 22_050_664), ("vit_base_patch16_224", 86_567_656)],
)
def test_timm_parameter_counts(name, params):
    with torch.device("meta"):
        model = create_model(name)
    assert count_params(model) == params  # timm's vit_*_patch16_224


def test_vit_base_macs():
    with torch.device("meta"):
        model = create_model("vit_base_patch16_224")
    # 12 blocks x 197 tokens x (4 + 8) * 768^2 (linears) + 2 * 197^2 * 768 (attention) + patch embedding + head
    d, t = 768, 197
    want = 12 * (t * 12 * d * d + 2 * t * t * d) + 196 * 768 * 768 + 768 * 1000
    assert count_macs(model) == want


def _keras_vit_params() -> int:
    """Reference 004 by hand: patch 6 on 72 px (144 patches of 108 values), dim 64,
    8 layers of Keras MultiHeadAttention(4 heads, key_dim 64) + MLP [128, 64],
    final LayerNorm, flattened 144*64 tokens into a [2048, 1024] head, 100 classes."""
    dim, heads, key, patches = 64, 4, 64, 144
    ln = 2 * dim
    mha = 3 * (dim * heads * key + heads * key) + heads * key * dim + dim
    mlp = (dim * 128 + 128) + (128 * dim + dim)
    layer = ln + mha + ln + mlp
    embed = 108 * dim + dim + patches * dim
    head = (patches * dim * 2048 + 2048) + (2048 * 1024 + 1024) + (1024 * 100 + 100)
    return embed + 8 * layer + ln + head


def test_keras_vit_runs_on_32px():
    torch.manual_seed(0)
    model = create_model("vit_keras_cifar100_patch6_72").eval()
    assert count_params(model) == _keras_vit_params()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        logits, attns = model.forward_attention(x)
    assert out.shape == (2, 100)
    assert torch.allclose(out, logits, atol=1e-5)
    assert len(attns) == 8 and all(a.shape == (2, 4, 144, 144) for a in attns)


def _small_vit(**kw) -> VisionTransformer:
    cfg = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=7)
    cfg.update(kw)
    torch.manual_seed(0)
    return VisionTransformer(**cfg).eval()


def test_forward_attention_shapes_and_probabilities():
    model = _small_vit()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        logits, attns = model.forward_attention(x)
        fused = model(x)
    assert logits.shape == (3, 7) and torch.allclose(logits, fused, atol=1e-5)
    assert [tuple(a.shape) for a in attns] == [(3, 4, 17, 17)] * 2
    assert torch.allclose(attns[0].sum(-1), torch.ones(()), atol=1e-5)


def test_pos_embed_resize_at_other_size():
    model = _small_vit()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 48, 64)).shape == (1, 7)  # 6x8 grid from a 4x4 table
        x = torch.randn(2, 3, 32, 32)
        base = model(x)
        # at the built size the table is used as is: same output as the explicit token path
        tokens = model.forward_features(x)
    assert tokens.shape == (2, 17, 32)
    assert torch.allclose(model.forward_head(tokens), base)
    resized = model._pos_embed(torch.zeros(1, 48, 32), (6, 8))
    assert resized.shape == (1, 49, 32)
    # resizing a constant table keeps it constant (bicubic is interpolating)
    with torch.no_grad():
        model.pos_embed.fill_(0.5)
    assert torch.allclose(model._pos_embed(torch.zeros(1, 48, 32), (6, 8)), torch.full((1, 49, 32), 0.5), atol=1e-6)


def test_avg_pool_and_no_head():
    model = _small_vit(global_pool="avg", class_token=False, num_classes=0)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 32)


def test_errors():
    model = _small_vit()
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\), got \(1, 1, 32, 32\)"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="input size 30x32 is not divisible by the patch size 8"):
        model(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="global_pool"):
        VisionTransformer(global_pool="max")
    with pytest.raises(ValueError, match="needs class_token"):
        VisionTransformer(class_token=False)
    flat = _small_vit(global_pool="flatten", class_token=False)
    with pytest.raises(ValueError, match="flattens a"):
        flat(torch.randn(1, 3, 48, 48))


def test_drop_path_linear_and_training_step():
    model = _small_vit(depth=4, drop_path_rate=0.3).train()
    probs = [getattr(b.drop_path, "drop_prob", 0.0) for b in model.blocks]
    assert probs == pytest.approx([0.0, 0.1, 0.2, 0.3])
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert model.pos_embed.grad is not None
