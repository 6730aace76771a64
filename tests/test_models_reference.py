"""The rewritten Swin core gives the numbers of the code it replaced.

``tests/data/swin_reference.safetensors`` holds weights, inputs, eval logits,
attention probabilities, train-mode logits and the gradients of a fixed loss
for small Swin (shifted windows, padding, Swin-S3 windows with an absolute
position embedding, the compact Keras layout, a run-time window shrink) and
ViT models, computed by commit 056c22d (``tests/data/make_swin_reference.py``
says how). Here today's code rebuilds each model, loads the same weights and
must reproduce every tensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from swinlab.models.keras_swin import KerasSwinTransformer
from swinlab.models.swin import SwinTransformer
from swinlab.models.vit import VisionTransformer

DATA = Path(__file__).parent / "data" / "swin_reference.safetensors"
_GEN = Path(__file__).parent / "data" / "make_swin_reference.py"


def _cases() -> dict:
    namespace: dict = {}
    exec(compile(_GEN.read_text(), str(_GEN), "exec"), namespace)  # CASES only; main() is not called
    return namespace["CASES"]


CASES = _cases()


@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    with safe_open(str(DATA), framework="pt") as f:
        assert json.loads(f.metadata()["cases"]).keys() == CASES.keys()
    return load_file(str(DATA))


def _sub(ref: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in ref.items() if k.startswith(prefix)}


@pytest.mark.parametrize("name", list(CASES))
def test_outputs_attention_and_gradients_match_the_previous_code(ref, name):
    kind, kwargs, _, _ = CASES[name]
    model = {"swin": SwinTransformer, "swin_keras": KerasSwinTransformer, "vit": VisionTransformer}[kind](**kwargs)
    model.load_state_dict(_sub(ref, f"{name}/weights/"))
    x = ref[f"{name}/input"]
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), ref[f"{name}/eval_logits"], atol=1e-5, rtol=1e-5)
        _, attns = model.forward_attention(x)
    expected = _sub(ref, f"{name}/attn/")
    assert len(attns) == len(expected)
    for i, a in enumerate(attns):
        assert torch.allclose(a[:1, :2], expected[str(i)], atol=1e-6), f"block {i}"
    model.train()
    out = model(x)
    (out * torch.linspace(-1, 1, out.shape[1])).square().mean().backward()
    assert torch.allclose(out.detach(), ref[f"{name}/train_logits"], atol=1e-5, rtol=1e-5)
    grads = _sub(ref, f"{name}/grad/")
    assert sorted(grads) == sorted(n for n, _ in model.named_parameters())
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, grads[n], atol=1e-6, rtol=1e-4), n
