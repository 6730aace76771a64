"""The Swin model zoo: official Swin V1 and V2 sizes, Swin-S3 and the compact
configurations of the reference documents, and the ViT sizes.

Sources of the numbers: official ``configs/swin/*.yaml`` and
``configs/swinv2/*.yaml`` of microsoft/Swin-Transformer (sizes,
drop_path_rate, pretrained window sizes; V2 names and evaluation crops as
timm's ``swin_transformer_v2.py``), AutoFormerV2 / Swin-S3
(Chen et al. 2021; windows per stage), reference 000 (Keras CIFAR-100 Swin),
reference 003 (Swin-T on Tiny ImageNet), reference 004 (Keras CIFAR-100 ViT) and Lee et al. 2021 ("Vision
Transformer for Small-Size Datasets", Swin rows of Table 2).
"""

from __future__ import annotations

import dataclasses

from .registry import ModelSpec, PretrainedCfg
from .keras_swin import KerasSwinTransformer
from .registry import register_model as _register_model
from .swin import SwinTransformer
from .swin_v2 import SwinTransformerV2
from .vit import VisionTransformer

# Parameters of each entry at its default arguments (registry data for fast listings;
# tests/test_models_registry.py counts every model and compares).
_NUM_PARAMS = {
    "swin_base_patch4_window12_384": 87903584,
    "swin_base_patch4_window12_384_in22k": 109265609,
    "swin_base_patch4_window7_224": 87768224,
    "swin_base_patch4_window7_224_in22k": 109130249,
    "swin_keras_cifar100_patch2_window2_32": 162996,
    "swin_large_patch4_window12_384": 196735516,
    "swin_large_patch4_window12_384_in22k": 228768133,
    "swin_large_patch4_window7_224": 196532476,
    "swin_large_patch4_window7_224_in22k": 228565093,
    "swin_micro_patch4_window4_64": 917652,
    "swin_s3_base_224": 71125762,
    "swin_s3_small_224": 49737298,
    "swin_s3_tiny_224": 28328674,
    "swin_small_patch4_window7_224": 49606258,
    "swin_small_patch4_window7_224_in22k": 65632987,
    "swin_smalldata_patch2_window4_32": 7083262,
    "swin_smalldata_patch4_window4_64": 7125218,
    "swin_tiny_patch4_window7_224": 28288354,
    "swin_tiny_patch4_window7_224_in22k": 44315083,
    "swin_tiny_patch4_window7_64": 27654500,
    "swinv2_base_window12_192": 109280841,
    "swinv2_base_window12to16_192to256": 87918816,
    "swinv2_base_window12to24_192to384": 87918816,
    "swinv2_base_window16_256": 87918816,
    "swinv2_base_window8_256": 87918816,
    "swinv2_large_window12_192": 228772549,
    "swinv2_large_window12to16_192to256": 196739932,
    "swinv2_large_window12to24_192to384": 196739932,
    "swinv2_small_window16_256": 49728418,
    "swinv2_small_window8_256": 49728418,
    "swinv2_tiny_window16_256": 28347154,
    "swinv2_tiny_window8_256": 28347154,
    "vit_base_patch16_224": 86567656,
    "vit_keras_cifar100_patch6_72": 21759012,
    "vit_small_patch16_224": 22050664,
    "vit_tiny_patch16_224": 5717416,
}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Register ``spec`` with its parameter count from ``_NUM_PARAMS``."""
    return _register_model(dataclasses.replace(spec, num_params=_NUM_PARAMS.get(spec.name)))


_RELEASE = "https://github.com/SwinTransformer/storage/releases/download"
_S3_RELEASE = "https://github.com/silent-chen/AutoFormerV2-model-zoo/releases/download/v1.0.0"

_SIZES = {
    # name: (embed_dim, depths, num_heads, drop_path_rate of the official config)
    "tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2),
    "small": (96, (2, 2, 18, 2), (3, 6, 12, 24), 0.3),
    "base": (128, (2, 2, 18, 2), (4, 8, 16, 32), 0.5),
    "large": (192, (2, 2, 18, 2), (6, 12, 24, 48), 0.2),
}

# (size, window, img) -> (1k release file, 22k release file)
_OFFICIAL = {
    ("tiny", 7, 224): ("v1.0.0/swin_tiny_patch4_window7_224.pth", "v1.0.8/swin_tiny_patch4_window7_224_22k.pth"),
    ("small", 7, 224): ("v1.0.0/swin_small_patch4_window7_224.pth", "v1.0.8/swin_small_patch4_window7_224_22k.pth"),
    ("base", 7, 224): ("v1.0.0/swin_base_patch4_window7_224_22kto1k.pth", "v1.0.0/swin_base_patch4_window7_224_22k.pth"),
    ("large", 7, 224): ("v1.0.0/swin_large_patch4_window7_224_22kto1k.pth", "v1.0.0/swin_large_patch4_window7_224_22k.pth"),
    ("base", 12, 384): ("v1.0.0/swin_base_patch4_window12_384_22kto1k.pth", "v1.0.0/swin_base_patch4_window12_384_22k.pth"),
    ("large", 12, 384): ("v1.0.0/swin_large_patch4_window12_384_22kto1k.pth", "v1.0.0/swin_large_patch4_window12_384_22k.pth"),
}

for (size, window, img), (url_1k, url_22k) in _OFFICIAL.items():
    embed_dim, depths, heads, dpr = _SIZES[size]
    base = dict(img_size=img, patch_size=4, embed_dim=embed_dim, depths=depths, num_heads=heads,
                window_size=window, drop_path_rate=dpr)
    name = f"swin_{size}_patch4_window{window}_{img}"
    hub = f"microsoft/swin-{size}-patch4-window{window}-{img}"
    register_model(ModelSpec(name, SwinTransformer, dict(base, num_classes=1000),
                             f"Swin-{size[0].upper()} {img}px window {window}, ImageNet-1k head",
                             PretrainedCfg(f"{_RELEASE}/{url_1k}", hub)))
    register_model(ModelSpec(f"{name}_in22k", SwinTransformer, dict(base, num_classes=21841),
                             f"Swin-{size[0].upper()} {img}px window {window}, ImageNet-22k head (21,841 classes)",
                             PretrainedCfg(f"{_RELEASE}/{url_22k}",
                                           f"{hub}-in22k" if size in ("base", "large") else None)))

# Swin-S3 (AutoFormerV2): windows per stage at 224 px.
for size, depths, windows, dpr, tag in (
    ("tiny", (2, 2, 6, 2), (7, 7, 14, 7), 0.1, "T"),
    ("small", (2, 2, 18, 2), (14, 14, 14, 7), 0.2, "S"),
    ("base", (2, 2, 30, 2), (7, 7, 14, 7), 0.3, "B"),
):
    register_model(ModelSpec(
        f"swin_s3_{size}_224", SwinTransformer,
        dict(img_size=224, patch_size=4, embed_dim=96, depths=depths, num_heads=(3, 6, 12, 24),
             window_size=windows, drop_path_rate=dpr, num_classes=1000),
        f"Swin-S3-{tag} (AutoFormerV2), windows {windows}", PretrainedCfg(f"{_S3_RELEASE}/S3-{tag}.pth")))

# Swin Transformer V2 (official release v2.0.0), under timm's names. The
# parameter count does not depend on the window (no bias tables: the cpb MLP
# has the same shape at every window). Evaluation crop 0.9 (timm's
# pretrained_cfg; the official V2 configs' TEST.CROP), 1.0 at 384 px.
_V2_RELEASE = f"{_RELEASE}/v2.0.0"
for size, window in (("tiny", 8), ("tiny", 16), ("small", 8), ("small", 16), ("base", 8), ("base", 16)):
    embed_dim, depths, heads, dpr = _SIZES[size]
    register_model(ModelSpec(
        f"swinv2_{size}_window{window}_256", SwinTransformerV2,
        dict(img_size=256, patch_size=4, embed_dim=embed_dim, depths=depths, num_heads=heads,
             window_size=window, drop_path_rate=dpr, num_classes=1000),
        f"SwinV2-{size[0].upper()} 256px window {window}, ImageNet-1k",
        PretrainedCfg(f"{_V2_RELEASE}/swinv2_{size}_patch4_window{window}_256.pth",
                      f"microsoft/swinv2-{size}-patch4-window{window}-256", crop_ratio=0.9)))
for size in ("base", "large"):
    embed_dim, depths, heads, _ = _SIZES[size]
    register_model(ModelSpec(
        f"swinv2_{size}_window12_192", SwinTransformerV2,
        dict(img_size=192, patch_size=4, embed_dim=embed_dim, depths=depths, num_heads=heads,
             window_size=12, drop_path_rate=0.2, num_classes=21841),
        f"SwinV2-{size[0].upper()} 192px window 12, ImageNet-22k head (21,841 classes)",
        PretrainedCfg(f"{_V2_RELEASE}/swinv2_{size}_patch4_window12_192_22k.pth",
                      f"microsoft/swinv2-{size}-patch4-window12-192-22k", crop_ratio=0.9)))
    for window, img, crop in ((16, 256, 0.9), (24, 384, 1.0)):
        register_model(ModelSpec(
            f"swinv2_{size}_window12to{window}_192to{img}", SwinTransformerV2,
            dict(img_size=img, patch_size=4, embed_dim=embed_dim, depths=depths, num_heads=heads,
                 window_size=window, pretrained_window_sizes=(12, 12, 12, 6), drop_path_rate=0.2,
                 num_classes=1000),
            f"SwinV2-{size[0].upper()} 22k 192px window 12 fine-tuned to {img}px window {window}, ImageNet-1k",
            PretrainedCfg(f"{_V2_RELEASE}/swinv2_{size}_patch4_window12to{window}_192to{img}_22kto1k_ft.pth",
                          f"microsoft/swinv2-{size}-patch4-window12to{window}-192to{img}-22kto1k-ft",
                          crop_ratio=crop)))

# Reference 000: the Keras CIFAR-100 Swin example as written (patch 2 on 32x32,
# embed 64, 8 heads, window 2, shift 1, MLP 256, absolute position embedding,
# one W-MSA + one SW-MSA block, patch merging without norm, average pooling
# without final norm), with its Keras initialisers (Glorot-uniform kernels, zero
# biases, uniform(-0.05, 0.05) position embedding, zero relative position bias
# table) and its dropout of 0.03 where it has one: attention probabilities,
# attention output, inside its MLP (after GELU and after the second Dense), and
# on each residual branch (its "drop_path" layer is element-wise Dropout); none
# after the patch embedding. Its block applies its MLP twice (``x = self.mlp(x)``
# appears twice in the example's call), hence ``mlp_repeat=2``. The quirks live in
# models/keras_swin.py (KerasSwinTransformer), not in the core class.
register_model(ModelSpec(
    "swin_keras_cifar100_patch2_window2_32", KerasSwinTransformer,
    dict(img_size=32, patch_size=2, embed_dim=64, depths=(2, 0), num_heads=(8, 16), window_size=2,
         mlp_ratio=4.0, ape=True, patch_norm=False, merge_norm=False, final_norm=False,
         drop_rate=0.03, attn_drop_rate=0.03, branch_drop_rate=0.03, pos_drop_rate=0.0, mlp_repeat=2,
         drop_path_rate=0.0, init="keras", num_classes=100),
    "reference 000: the Keras CIFAR-100 Swin example as written",
    PretrainedCfg(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_ratio=1.0)))

# Reference 003: Swin-T on Tiny ImageNet at 64x64 (heads 2,4,8,16).
register_model(ModelSpec(
    "swin_tiny_patch4_window7_64", SwinTransformer,
    dict(img_size=64, patch_size=4, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(2, 4, 8, 16),
         window_size=7, drop_path_rate=0.2, num_classes=200),
    "reference 003: Swin-T for Tiny ImageNet, 64x64"))

# Lee et al. 2021, small-size data sets: embed 96, depths (2, 6, 4), heads (3, 6, 12),
# window 4, mlp_ratio 2; patch 2 at 32 px, patch 4 at 64 px.
for patch, img, classes in ((2, 32, 100), (4, 64, 200)):
    register_model(ModelSpec(
        f"swin_smalldata_patch{patch}_window4_{img}", SwinTransformer,
        dict(img_size=img, patch_size=patch, embed_dim=96, depths=(2, 6, 4), num_heads=(3, 6, 12),
             window_size=4, mlp_ratio=2.0, drop_path_rate=0.1, num_classes=classes),
        f"Lee et al. 2021 small-data Swin, {img}px"))

# A compact Swin for quick CPU training on 64x64 images (the main job's model).
register_model(ModelSpec(
    "swin_micro_patch4_window4_64", SwinTransformer,
    dict(img_size=64, patch_size=4, embed_dim=48, depths=(2, 2, 2), num_heads=(2, 4, 8),
         window_size=4, mlp_ratio=2.0, drop_path_rate=0.05, num_classes=200),
    "compact Swin for CPU training at 64x64 (the quick recipe)"))

# ViT (Dosovitskiy et al. 2020) at the timm / official sizes.
for _size, (_dim, _heads) in {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}.items():
    register_model(ModelSpec(
        f"vit_{_size}_patch16_224", VisionTransformer,
        dict(img_size=224, patch_size=16, embed_dim=_dim, depth=12, num_heads=_heads, num_classes=1000),
        f"ViT-{_size[0].upper()}/16 at 224 px (class token)"))

# Reference 004: the Keras CIFAR-100 ViT.
register_model(ModelSpec(
    "vit_keras_cifar100_patch6_72", VisionTransformer,
    dict(img_size=32, resize_to=72, patch_size=6, embed_dim=64, depth=8, num_heads=4, attn_head_dim=64,
         mlp_hidden_dims=(128, 64), class_token=False, global_pool="flatten", head_hidden_dims=(2048, 1024),
         head_drop_rate=0.5, drop_rate=0.1, attn_drop_rate=0.1, num_classes=100),
    "reference 004: compact Keras ViT for CIFAR-100 (inputs resized to 72)"))

