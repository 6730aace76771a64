"""The model core of issue 20: speed paths are options of each model (two
models in one process take their own paths), blocks and stages return
tensors (nn.Sequential, torch.utils.checkpoint), attention probabilities come
out through record_attention, forward hooks on every Linear of a block run,
the Keras variant keeps its quirks out of SwinTransformer, and one
pretrained config per model gives load_model(<zoo name>) its preprocessing."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from swinlab.inference import load_model
from swinlab.models import (
    KerasSwinTransformer,
    SpeedOptions,
    SwinTransformer,
    build_model,
    pretrained_cfg,
    record_attention,
)
from swinlab.models import fast

MODELS_DIR = Path(__file__).resolve().parents[1] / "src" / "swinlab" / "models"
TESTS_DIR = Path(__file__).resolve().parent


def _swin(speed=None, **kw) -> SwinTransformer:
    cfg = dict(img_size=32, patch_size=2, embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=2,
               num_classes=5, drop_path_rate=0.0, speed=speed)
    cfg.update(kw)
    torch.manual_seed(0)
    return SwinTransformer(**cfg)


def test_two_models_with_different_speed_options_take_their_own_paths():
    """In one process, interleaved: the default model takes the fast dropout,
    the short-row softmax (2x2 windows: rows of 4) and the blocked MLP; the
    plain one nn.Dropout, torch's softmax and one fc1 call per forward."""
    small = dict(mlp_block_elements=256 * 32)
    fast_model = _swin(SpeedOptions(**small), attn_drop_rate=0.1).train()
    plain_model = _swin(SpeedOptions.plain(), attn_drop_rate=0.1).train()
    plain_model.load_state_dict(fast_model.state_dict())
    assert type(fast_model.layers[0].blocks[0].attn.attn_drop) is fast.Dropout
    assert type(plain_model.layers[0].blocks[0].attn.attn_drop) is nn.Dropout
    x = torch.randn(4, 3, 32, 32)
    for _ in range(2):  # the two alternate: nothing process-wide decides
        for model, softmax in ((fast_model, "ShortRowSoftmaxFunction"), (plain_model, "SoftmaxBackward")):
            with record_attention(model) as attns:
                model(x)
            assert softmax in type(attns[0].grad_fn).__name__
    calls = {id(m): [] for m in (fast_model, plain_model)}
    for m in (fast_model, plain_model):
        m.eval().layers[0].blocks[0].mlp.fc1.register_forward_hook(
            lambda mod, a, out, key=id(m): calls[key].append(out.shape[0]))
    with torch.no_grad():
        a, b = fast_model(x), plain_model(x)
    assert len(calls[id(fast_model)]) > 1 and len(calls[id(plain_model)]) == 1  # blocked vs whole map
    assert torch.allclose(a, b, atol=1e-5)


def test_no_module_level_switch_in_models():
    """No module of swinlab.models binds a module-level bool / int / float
    (other than constants of the papers: MASK_FILL, INITS, Swin V2's
    CPB_HIDDEN): every speed path is chosen by a model's SpeedOptions."""
    allowed = {"MASK_FILL", "_MASK_BITS", "CPB_HIDDEN"}
    for path in sorted(MODELS_DIR.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            value = getattr(node, "value", None)
            for t in targets:
                name = getattr(t, "id", "")
                if name in allowed or value is None:
                    continue
                is_number = isinstance(value, ast.Constant) and isinstance(value.value, (bool, int, float))
                assert not is_number, f"{path.name}: module-level {name} = {ast.unparse(value)}"
                assert not (isinstance(value, ast.IfExp)), f"{path.name}: module-level {name} decided at import"


def test_no_test_monkeypatches_a_models_module():
    for path in sorted(TESTS_DIR.glob("test_*.py")):
        for line in path.read_text().splitlines():
            if "monkeypatch.set" in line:
                assert "models" not in line and "L." not in line and "registry" not in line, f"{path.name}: {line}"


def test_swin_signature_holds_no_keras_argument():
    params = set(inspect.signature(SwinTransformer.__init__).parameters)
    assert not params & {"branch_drop_rate", "mlp_repeat", "merge_norm", "final_norm", "pos_drop_rate"}
    assert {"norm_layer", "act_layer", "block_layer", "downsample_layer", "speed"} <= params
    keras = build_model("swin_keras_cifar100_patch2_window2_32")
    assert type(keras) is KerasSwinTransformer and keras.norm is None and keras.layers[0].downsample.norm is None
    assert keras.layers[0].blocks[0].mlp_repeat == 2
    assert KerasSwinTransformer(depths=(2, 2), num_heads=(2, 4)).norm is not None  # options off by default


def test_norm_and_act_layer_injection():
    model = _swin(norm_layer=lambda d: nn.LayerNorm(d, eps=1e-6), act_layer=nn.ReLU)
    blk = model.layers[0].blocks[0]
    assert blk.norm1.eps == 1e-6 and model.norm.eps == 1e-6 and model.layers[0].downsample.norm.eps == 1e-6
    assert isinstance(blk.mlp.act, nn.ReLU)
    assert set(model.state_dict()) == set(_swin().state_dict())  # same parameter names


def test_stages_compose_with_sequential_and_checkpoint():
    """Blocks and stages return tensors: the model's pieces in an
    nn.Sequential give its logits; torch.utils.checkpoint per stage gives
    the same loss and gradients as the plain forward (in training)."""
    model = _swin(drop_rate=0.0).eval()
    x = torch.randn(2, 3, 32, 32)
    seq = nn.Sequential(model.patch_embed, model.pos_drop, *model.layers, model.norm)
    with torch.no_grad():
        assert torch.allclose(model.head(seq(x).mean(dim=(1, 2))), model(x), atol=1e-6)
    model.train()

    def loss_and_grads(checkpointed: bool):
        model.zero_grad()
        h = model._embed(x)
        for layer in model.layers:
            h = checkpoint(layer, h, use_reentrant=False) if checkpointed else layer(h)
        loss = model.head(model.norm(h).mean(dim=(1, 2))).square().mean()
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in model.parameters()]

    plain, ckpt = loss_and_grads(False), loss_and_grads(True)
    for a, b in zip(plain, ckpt, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)
    block = model.layers[0].blocks[0]
    out = checkpoint(block, torch.randn(2, 16, 16, 16, requires_grad=True), use_reentrant=False)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 16, 16, 16)


@pytest.mark.parametrize("speed", [None, SpeedOptions(mlp_block_elements=256 * 32, mlp_recompute_min_bytes=1)],
                         ids=["default", "small-blocks"])
@pytest.mark.parametrize("training", [False, True])
def test_forward_hooks_on_every_linear_of_a_block_run(speed, training):
    """qkv, proj, fc1 and fc2 hooks run in eval (no_grad) and in training,
    also when the blocked MLP paths are taken (small blocks)."""
    model = _swin(speed).train(training)
    block = model.layers[0].blocks[1]
    seen: dict[str, int] = {}
    for name, module in block.named_modules():
        if isinstance(module, nn.Linear):
            module.register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, seen.get(name, 0) + 1))
    x = torch.randn(4, 3, 32, 32)
    if training:
        model(x).sum().backward()
    else:
        with torch.no_grad():
            model(x)
    assert set(seen) == {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"}


def test_record_attention_leaves_return_types_and_keeps_nothing_after():
    model = _swin().eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), record_attention(model) as attns:
        logits = model(x)
    assert isinstance(logits, torch.Tensor) and len(attns) == 4 and attns[0].shape == (1, 64, 2, 4, 4)
    assert all(m.recorded is None for m in model.modules() if hasattr(m, "recorded"))
    with torch.no_grad():
        logits2, attns2 = model.forward_attention(x)
    assert torch.allclose(logits, logits2) and len(attns2) == 4


@pytest.mark.parametrize("name, crop, mean, std, size", [
    ("swin_base_patch4_window12_384", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 384),
    ("swin_keras_cifar100_patch2_window2_32", 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 32),
    ("swin_tiny_patch4_window7_224", 0.875, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 224),
])
def test_load_model_zoo_name_uses_the_registry_preprocessing(name, crop, mean, std, size):
    """Issue 20's bug: a zoo name's ModelInfo came from defaults (crop 0.875,
    ImageNet normalisation); it is the registry's pretrained config."""
    with torch.device("meta"):
        model, info = load_model(name, device="meta")
    assert (info.crop_ratio, info.mean, info.std, info.img_size) == (crop, mean, std, size)
    cfg = pretrained_cfg(name)
    assert info.interpolation == cfg.interpolation and info.num_classes == cfg.num_classes
