"""Make ``swin_reference.safetensors``: outputs and gradients of small Swin and
ViT models computed by the code of commit 056c22d (before the Swin core was
rewritten), so ``tests/test_models_reference.py`` can check that today's code
gives the same numbers.

Run against that commit's source (nothing else reads this script)::

    git worktree add /tmp/swinlab-056c22d 056c22d
    PYTHONPATH=/tmp/swinlab-056c22d/src python tests/data/make_swin_reference.py

The configurations are listed in ``CASES``; the test rebuilds each model with
the same arguments, loads the stored weights and compares.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

CASES = {
    # name: (class, kwargs, input size (H, W), batch)
    "swin_shift_pad": ("swin", dict(img_size=64, patch_size=4, embed_dim=8, depths=(2, 2, 2), num_heads=(2, 2, 4),
                                    window_size=4, mlp_ratio=2.0, num_classes=7, drop_path_rate=0.0), (36, 44), 2),
    "swin_s3_ape": ("swin", dict(img_size=56, patch_size=4, embed_dim=12, depths=(2, 2), num_heads=(2, 2),
                                 window_size=(7, 4), ape=True, mlp_ratio=2.0, num_classes=5, drop_path_rate=0.0),
                    (56, 56), 1),
    "swin_keras_like": ("swin_keras", dict(img_size=32, patch_size=2, embed_dim=16, depths=(2, 0), num_heads=(4, 8),
                                     window_size=2, ape=True, patch_norm=False, merge_norm=False, final_norm=False,
                                     num_classes=6, drop_path_rate=0.0), (16, 16), 2),
    "swin_shrink": ("swin", dict(img_size=96, patch_size=4, embed_dim=8, depths=(2, 2), num_heads=(2, 2),
                                 window_size=7, mlp_ratio=2.0, num_classes=3, drop_path_rate=0.0), (40, 48), 1),
    "vit_small": ("vit", dict(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=4,
                              drop_path_rate=0.0), (32, 32), 2),
}


def main() -> None:
    from swinlab.models.keras_swin import KerasSwinTransformer
    from swinlab.models.swin import SwinTransformer
    from swinlab.models.vit import VisionTransformer

    # "swin_keras": the Keras options (merge_norm, final_norm) moved out of SwinTransformer
    # (issue 20); at 056c22d, which wrote the data, SwinTransformer took them itself.
    classes = {"swin": SwinTransformer, "swin_keras": KerasSwinTransformer, "vit": VisionTransformer}
    tensors: dict[str, torch.Tensor] = {}
    for name, (kind, kwargs, (h, w), batch) in CASES.items():
        torch.manual_seed(0)
        model = classes[kind](**kwargs)
        for k, v in model.state_dict().items():
            tensors[f"{name}/weights/{k}"] = v.clone()
        x = torch.randn(batch, 3, h, w)
        tensors[f"{name}/input"] = x
        model.eval()
        with torch.no_grad():
            tensors[f"{name}/eval_logits"] = model(x)
            _, attns = model.forward_attention(x)
            for i, a in enumerate(attns):
                tensors[f"{name}/attn/{i}"] = a[:1, :2].clone()  # image 0, its first 2 windows (file size)
        model.train()
        out = model(x)
        loss = (out * torch.linspace(-1, 1, out.shape[1])).square().mean()
        loss.backward()
        tensors[f"{name}/train_logits"] = out.detach()
        for k, p in model.named_parameters():
            tensors[f"{name}/grad/{k}"] = p.grad.clone()
    path = Path(__file__).with_name("swin_reference.safetensors")
    meta = {"cases": json.dumps({k: [v[0], v[2], v[3]] for k, v in CASES.items()}), "commit": "056c22d"}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
    print(f"wrote {path} ({path.stat().st_size} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()
