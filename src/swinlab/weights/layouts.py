"""Checkpoint layouts: recognise and rename Swin checkpoints from the official
code, timm and Hugging Face ``transformers`` into swinlab's parameter names.

swinlab's names (layout ``"swinlab"``) are those of the official Microsoft
code (``microsoft/Swin-Transformer``, ``models/swin_transformer.py``) without
its buffers; see :mod:`swinlab.models.swin`. The other layouts:

``"official"``
    official ``state_dict`` with the ``relative_position_index`` and
    ``attn_mask`` buffers (they are rebuilt by the model, so they are dropped).
``"timm"``
    timm >= 0.9 ``swin_transformer.py``: patch merging at the START of stage
    i+1 (``layers.{i+1}.downsample``), head ``head.fc``. timm's
    ``checkpoint_filter_fn`` moves ``layers.i.downsample`` to ``i+1`` and
    ``head.`` to ``head.fc.``; :func:`to_swinlab` does the inverse. Older timm
    (< 0.9) used the official names and is detected as ``"official"`` (with
    buffers) or ``"swinlab"``. timm ViT names are swinlab's ViT names.
``"hf"``
    Hugging Face ``SwinForImageClassification`` / ``SwinModel``. Files on the
    Hub keep the names of transformers 4.x (``swin.embeddings.*``,
    ``swin.encoder.layers.i.blocks.j.attention.self.{query,key,value}``,
    ``attention.output.dense``, ``layernorm_before/after``,
    ``intermediate.dense``, ``output.dense``, ``swin.layernorm``,
    ``classifier``); transformers 5.x renames them at load time
    (``transformers/conversion_mapping.py``, entry ``"swin"``) to
    ``attention.{q,k,v,o}_proj``,
    ``attention.relative_position_bias.relative_position_bias_table`` and
    ``mlp.fc1/fc2``, the names of its module's ``state_dict``. Both spellings
    are read; :func:`swinlab_to_hf` writes either.

``"torchvision"``
    torchvision ``SwinTransformer`` (``swin_t/s/b`` and, with
    ``SwinTransformerBlockV2`` / ``PatchMergingV2``, ``swin_v2_t/s/b``):
    ``features.0.{0,2}`` the patch conv and its norm, ``features.{2i+1}.{j}``
    the blocks of stage i (MLP ``mlp.0`` / ``mlp.3``), ``features.{2i+2}``
    the patch merging after stage i, ``norm``, ``head``; buffers dropped.
    Swin V2's ``attn.qkv.bias`` ``(3C,)`` holds a key part that torchvision
    zeroes in its forward; it is dropped, the rest becomes ``q_bias`` /
    ``v_bias``.

Swin V2 (:mod:`swinlab.models.swin_v2`) uses the same four layouts with
its own leaves: official / timm ``attn.{logit_scale,q_bias,v_bias,cpb_mlp.*}``
(official files add the ``relative_coords_table`` buffer), Hugging Face
``Swinv2ForImageClassification`` ``swinv2.*`` with
``attention.self.{query,key,value}`` (no key bias: query and value biases
become ``q_bias`` / ``v_bias``), ``attention.self.logit_scale`` and
``attention.self.continuous_position_bias_mlp.{0,2}``.

Hugging Face patch merging sits at the END of stage i (as in the official
code), so downsample indices carry over unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

__all__ = [
    "LAYOUTS",
    "Layout",
    "unwrap_checkpoint",
    "strip_key_prefix",
    "detect_layout",
    "to_swinlab",
    "swinlab_to_hf",
    "swin_kwargs_from_hf_config",
    "swinv2_kwargs_from_hf_config",
    "hf_config_from_swin",
]

Layout = Literal["swinlab", "official", "timm", "hf", "torchvision"]
#: layout names accepted by :func:`to_swinlab`.
LAYOUTS: tuple[str, ...] = ("swinlab", "official", "timm", "hf", "torchvision")

# wrapper keys of training checkpoints, in order of preference
_WRAPPERS = ("model", "state_dict", "model_state_dict", "module")
_EMA_WRAPPERS = ("model_ema", "state_dict_ema", "ema")
_PREFIXES = ("module.", "_orig_mod.")
_BUFFER_SUFFIXES = ("relative_position_index", "attn_mask", "relative_coords_table")
_HF_PREFIXES = ("swin.", "swinv2.", "embeddings.patch_embeddings.", "encoder.layers.")
_HF_MODEL_PREFIXES = ("swin.", "swinv2.")
_DOWNSAMPLE = re.compile(r"^layers[._](\d+)\.downsample\.")


def _sample_keys(keys: list[str], n: int = 6) -> str:
    shown = ", ".join(repr(k) for k in keys[:n])
    more = f", ... ({len(keys)} keys)" if len(keys) > n else ""
    return f"[{shown}{more}]"


def strip_key_prefix(key: str) -> str:
    """``key`` without the wrapper prefixes ``module.`` (DataParallel / DDP)
    and ``_orig_mod.`` (``torch.compile``), repeatedly: the one place
    swinlab removes them (checkpoint loading and inference both use it)."""
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def unwrap_checkpoint(obj: Any, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """The plain ``state_dict`` inside a loaded checkpoint.

    Unwraps (repeatedly) the training-checkpoint wrappers ``{"model": ...}``
    (official code), ``{"state_dict": ...}`` (timm, Lightning),
    ``{"model_state_dict": ...}`` and ``{"module": ...}``; with ``use_ema`` the
    EMA copies ``{"model_ema": ...}``/``{"state_dict_ema": ...}`` are preferred
    (they are used when nothing else is there either way). Strips the
    ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (``torch.compile``) key
    prefixes, and a ``model.`` prefix shared by every key (Lightning modules).
    An ``nn.Module`` gives its ``state_dict()``.

    Args:
        obj: what ``torch.load`` or ``safetensors.torch.load_file`` returned.
        use_ema: take the EMA weights when the checkpoint has them.

    Returns:
        a new ``dict`` from parameter name to tensor (tensors are not copied).

    Raises:
        ValueError: ``obj`` is not a mapping, or (after unwrapping) holds
            values that are not tensors; the message names the offending key.
    """
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"expected a checkpoint dict (state_dict or {{'model': state_dict}}), got {type(obj).__name__}"
        )
    order = (_EMA_WRAPPERS + _WRAPPERS) if use_ema else (_WRAPPERS + _EMA_WRAPPERS)
    for _ in range(8):  # nested wrappers, bounded
        for name in order:
            inner = obj.get(name)
            if isinstance(inner, Mapping) and inner:
                obj = inner
                break
        else:
            break
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ValueError(f"checkpoint key {key!r} is not a string; expected parameter names")
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor; expected a "
                f"state_dict, or one wrapped under one of {list(_WRAPPERS + _EMA_WRAPPERS)} "
                f"(top-level keys: {_sample_keys(list(obj))})"
            )
        out[strip_key_prefix(key)] = value
    if out and all(k.startswith("model.") for k in out):
        out = {k[len("model."):]: v for k, v in out.items()}
    return out


def _merging_at_stage_start(keys: list[str]) -> bool:
    """timm >= 0.9 names: patch merging present, but none in stage 0
    (``layers.{i+1}.downsample`` instead of the official ``layers.i``)."""
    stages = {int(m.group(1)) for k in keys if (m := _DOWNSAMPLE.match(k))}
    return bool(stages) and 0 not in stages


def detect_layout(state_dict: Mapping[str, Any]) -> Layout:
    """Which checkpoint layout ``state_dict`` is in.

    Rules, first match wins (see the module docstring for the layouts):

    * ``"hf"``: keys start with ``swin.``, ``swinv2.``, ``embeddings.patch_embeddings.``
      or ``encoder.layers.`` (both transformers 4.x and 5.x names);
    * ``"torchvision"``: ``features.0.0.weight`` (the patch convolution) and
      ``features.*`` keys;
    * ``"timm"``: ``head.fc.*``, or patch merging present but not in stage 0
      (``layers.{i+1}.downsample``);
    * ``"official"``: ``relative_position_index`` / ``attn_mask`` buffers;
    * ``"swinlab"``: a ``patch_embed.proj.weight`` key or ``layers.*`` /
      ``blocks.*`` keys (swinlab/official names without buffers, old timm
      Swin, timm ViT).

    Args:
        state_dict: a plain state dict (use :func:`unwrap_checkpoint` first).

    Returns:
        one of :data:`LAYOUTS`.

    Raises:
        ValueError: empty, or no rule matches; the message shows sample keys.
    """
    keys = list(state_dict)
    if not keys:
        raise ValueError("empty state_dict: no parameters to identify a checkpoint layout from")
    if any(k.startswith(_HF_PREFIXES) for k in keys):
        return "hf"
    if "features.0.0.weight" in state_dict:
        return "torchvision"
    if any(k.startswith("head.fc.") for k in keys) or _merging_at_stage_start(keys):
        return "timm"
    if any(k.rsplit(".", 1)[-1] in _BUFFER_SUFFIXES for k in keys):
        return "official"
    if "patch_embed.proj.weight" in state_dict or any(k.startswith(("layers.", "blocks.")) for k in keys):
        return "swinlab"
    raise ValueError(
        "unknown checkpoint layout: expected swinlab/official names (patch_embed.proj.weight, "
        "layers.i.blocks.j...), timm (head.fc.*, layers.{i+1}.downsample), Hugging Face "
        "(swin.embeddings..., swinv2.encoder.layers...) or torchvision (features.0.0.weight, "
        f"features.N.M...); sample keys: {_sample_keys(keys)}"
    )


def _drop_buffers(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in sd.items() if k.rsplit(".", 1)[-1] not in _BUFFER_SUFFIXES}


def _flat_pos_embed(v: torch.Tensor) -> torch.Tensor:
    # timm/official-detection variants keep (1, H, W, C); swinlab uses (1, H*W, C)
    return v.reshape(1, -1, v.shape[-1]) if v.ndim == 4 else v


def _timm_to_swinlab(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = _drop_buffers(sd)
    shift = _merging_at_stage_start(list(sd))
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        key = re.sub(r"^layers_(\d+)\.", r"layers.\1.", key)  # features_only / flattened names
        m = _DOWNSAMPLE.match(key)
        if m and shift:
            key = f"layers.{int(m.group(1)) - 1}.downsample." + key[m.end():]
        if key.startswith("head.fc."):
            key = "head." + key[len("head.fc."):]
        if key == "absolute_pos_embed":
            value = _flat_pos_embed(value)
        out[key] = value
    return out


# --------------------------------------------------------------------- HF
# block-relative names: (transformers 4.x / Hub file, transformers 5.x) -> swinlab
_HF_BLOCK = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "attention.o_proj": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "attention.self.relative_position_bias_table": "attn.relative_position_bias_table",
    "attention.relative_position_bias.relative_position_bias_table": "attn.relative_position_bias_table",
    # Swinv2ForImageClassification (transformers keeps these names at load time)
    "attention.self.logit_scale": "attn.logit_scale",
    "attention.self.continuous_position_bias_mlp.0": "attn.cpb_mlp.0",
    "attention.self.continuous_position_bias_mlp.2": "attn.cpb_mlp.2",
}
_HF_QKV = {
    "attention.self.query": 0, "attention.self.key": 1, "attention.self.value": 2,
    "attention.q_proj": 0, "attention.k_proj": 1, "attention.v_proj": 2,
}
_HF_DROP = ("attention.self.relative_position_index", "attention.relative_position_bias.relative_position_index",
            "attention.self.relative_coords_table")
_HF_TOP = {
    "embeddings.patch_embeddings.projection": "patch_embed.proj",
    "embeddings.norm": "patch_embed.norm",
    "layernorm": "norm",
    "classifier": "head",
}
_HF_BLOCK_RE = re.compile(r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)\.(weight|bias)$")
_HF_BLOCK_ANY = re.compile(r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)$")
_HF_DOWN_RE = re.compile(r"^encoder\.layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)$")


def _hf_pos_embed(v: torch.Tensor) -> torch.Tensor:
    """HF ``position_embeddings`` -> ``absolute_pos_embed`` ``(1, N, C)``.

    transformers 4.x created ``(1, N+1, C)`` with an unused leading slot (its
    ``interpolate_pos_encoding`` treated it as a class-token position); 5.x
    creates ``(1, N, C)``. A length that is not a square but is one more than a
    square is taken to carry that slot, which is dropped.
    """
    v = _flat_pos_embed(v)
    n = v.shape[1]
    if math.isqrt(n) ** 2 != n and math.isqrt(n - 1) ** 2 == n - 1:
        v = v[:, 1:]
    return v


def _hf_to_swinlab(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, int, str], dict[int, torch.Tensor]] = {}
    unmapped: list[str] = []
    for full_key, value in sd.items():
        key = next((full_key[len(p):] for p in _HF_MODEL_PREFIXES if full_key.startswith(p)), full_key)
        if key == "embeddings.position_embeddings":
            out["absolute_pos_embed"] = _hf_pos_embed(value)
            continue
        if key == "embeddings.mask_token":  # SimMIM mask token: no counterpart
            continue
        block = _HF_BLOCK_ANY.match(key)
        if block and block.group(3) in _HF_DROP:
            continue
        m = _HF_BLOCK_RE.match(key)
        if m:
            i, j, name, kind = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
            if name in _HF_QKV:
                qkv.setdefault((i, j, kind), {})[_HF_QKV[name]] = value
                continue
            if name in _HF_BLOCK:
                out[f"layers.{i}.blocks.{j}.{_HF_BLOCK[name]}.{kind}"] = value
                continue
            unmapped.append(full_key)
            continue
        if block and block.group(3) in _HF_BLOCK:  # bias table, logit_scale (no .weight/.bias suffix)
            out[f"layers.{block.group(1)}.blocks.{block.group(2)}.{_HF_BLOCK[block.group(3)]}"] = value
            continue
        m = _HF_DOWN_RE.match(key)
        if m:
            out[f"layers.{m.group(1)}.downsample.{m.group(2)}.{m.group(3)}"] = value
            continue
        base, _, kind = key.rpartition(".")
        if base in _HF_TOP and kind in ("weight", "bias"):
            out[f"{_HF_TOP[base]}.{kind}"] = value
            continue
        unmapped.append(full_key)
    if unmapped:
        raise ValueError(
            f"Hugging Face checkpoint has {len(unmapped)} key(s) with no swinlab counterpart: "
            f"{_sample_keys(unmapped)}"
        )
    v2 = any(k.endswith(".attn.logit_scale") for k in out)
    for (i, j, kind), parts in sorted(qkv.items()):
        out.update(_join_hf_qkv(f"layers.{i}.blocks.{j}.attn", kind, parts, v2))
    return out


def _join_hf_qkv(prefix: str, kind: str, parts: dict[int, torch.Tensor], v2: bool) -> dict[str, torch.Tensor]:
    """HF ``query`` / ``key`` / ``value`` ``weight`` or ``bias`` (``parts``: 0, 1, 2)
    as swinlab's ``qkv`` (concatenated in that order); Swin V2's biases
    (query and value only, the key has none) as ``q_bias`` / ``v_bias``."""
    if v2 and kind == "bias" and sorted(parts) == [0, 2]:
        return {f"{prefix}.q_bias": parts[0], f"{prefix}.v_bias": parts[2]}
    if sorted(parts) != [0, 1, 2]:
        missing = [("query", "key", "value")[p] for p in range(3) if p not in parts]
        block = prefix.replace("layers.", "encoder.layers.").removesuffix(".attn")
        raise ValueError(
            f"Hugging Face checkpoint: block {block} lacks the attention {kind} of {missing}; "
            f"expected query, key and value" + (" (Swin V2: query and value biases only)" if v2 else "")
        )
    return {f"{prefix}.qkv.{kind}": torch.cat([parts[0], parts[1], parts[2]], dim=0)}


# --------------------------------------------------------------------- torchvision
_TV_PATCH = {"features.0.0": "patch_embed.proj", "features.0.2": "patch_embed.norm"}
_TV_BLOCK_RE = re.compile(r"^features\.(\d+)\.(\d+)\.(.+)$")
_TV_MERGE_RE = re.compile(r"^features\.(\d+)\.(reduction|norm)\.(weight|bias)$")
_TV_MLP = {"mlp.0.": "mlp.fc1.", "mlp.3.": "mlp.fc2."}


def _torchvision_block(prefix: str, name: str, value: torch.Tensor, v2: bool) -> dict[str, torch.Tensor]:
    """One tensor of a torchvision block, in swinlab's names under ``prefix``
    (V2's ``attn.qkv.bias``, whose key part torchvision ignores, becomes
    ``q_bias`` / ``v_bias``)."""
    for tv, ours in _TV_MLP.items():
        if name.startswith(tv):
            return {prefix + ours + name[len(tv):]: value}
    if v2 and name == "attn.qkv.bias":
        q, _, v = value.chunk(3)
        return {prefix + "attn.q_bias": q, prefix + "attn.v_bias": v}
    return {prefix + name: value}


def _torchvision_to_swinlab(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ``SwinTransformer`` (``swin_t/s/b``, ``swin_v2_t/s/b``):
    ``features.0`` the patch embedding (conv ``.0``, LayerNorm ``.2``),
    ``features.{2i+1}.{j}`` the blocks of stage i (``mlp.0`` / ``mlp.3``),
    ``features.{2i+2}`` the patch merging after stage i, ``norm``, ``head``."""
    sd = _drop_buffers(sd)
    v2 = any(k.endswith(".attn.logit_scale") for k in sd)
    out: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in sd.items():
        base, _, kind = key.rpartition(".")
        merge, block = _TV_MERGE_RE.match(key), _TV_BLOCK_RE.match(key)
        if base in _TV_PATCH:
            out[f"{_TV_PATCH[base]}.{kind}"] = value
        elif merge and int(merge.group(1)) % 2 == 0:
            out[f"layers.{int(merge.group(1)) // 2 - 1}.downsample.{merge.group(2)}.{merge.group(3)}"] = value
        elif block and int(block.group(1)) % 2 == 1:
            prefix = f"layers.{int(block.group(1)) // 2}.blocks.{block.group(2)}."
            out.update(_torchvision_block(prefix, block.group(3), value, v2))
        elif base in ("norm", "head"):
            out[key] = value
        else:
            unmapped.append(key)
    if unmapped:
        raise ValueError(
            f"torchvision checkpoint has {len(unmapped)} key(s) with no swinlab counterpart: "
            f"{_sample_keys(unmapped)}"
        )
    return out


def to_swinlab(state_dict: Mapping[str, Any], layout: str | None = None) -> dict[str, torch.Tensor]:
    """Rename a Swin checkpoint to swinlab's parameter names.

    Follows the layouts of the module docstring: buffers are dropped; timm
    ``layers.{i+1}.downsample`` -> ``layers.i.downsample``, ``head.fc`` ->
    ``head``; Hugging Face ``query``/``key``/``value`` (``q/k/v_proj``) are
    concatenated in that order into ``attn.qkv`` (weight ``(3C, C)``, bias
    ``(3C,)``, the official ``qkv`` Linear), ``attention.output.dense``
    (``o_proj``) -> ``attn.proj``, ``layernorm_before/after`` ->
    ``norm1/norm2``, ``intermediate.dense``/``output.dense`` (``mlp.fc1/fc2``)
    -> ``mlp.fc1/fc2``, ``swin.layernorm`` -> ``norm``, ``classifier`` ->
    ``head``, ``position_embeddings`` -> ``absolute_pos_embed`` ``(1, N, C)``.
    Wrapped checkpoints are unwrapped first (:func:`unwrap_checkpoint`).

    Args:
        state_dict: a state dict or a loaded checkpoint.
        layout: one of :data:`LAYOUTS`; default: :func:`detect_layout`.

    Returns:
        a new dict, loadable with ``strict=True`` into the matching
        :class:`~swinlab.models.swin.SwinTransformer` (or ViT for ViT
        checkpoints in layout ``"swinlab"``). Tensors are shared, not copied,
        except the concatenated ``qkv``.

    Raises:
        ValueError: unknown ``layout``, a layout that cannot be detected, or
            Hugging Face keys without a counterpart (the message lists them).
    """
    sd = unwrap_checkpoint(state_dict)
    if layout is None:
        layout = detect_layout(sd)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown checkpoint layout {layout!r}; expected one of {list(LAYOUTS)}")
    if layout == "hf":
        return _hf_to_swinlab(sd)
    if layout == "timm":
        return _timm_to_swinlab(sd)
    if layout == "torchvision":
        return _torchvision_to_swinlab(sd)
    out = _drop_buffers(sd)
    if "absolute_pos_embed" in out:
        out["absolute_pos_embed"] = _flat_pos_embed(out["absolute_pos_embed"])
    return out


# ------------------------------------------------------------- swinlab -> HF
_TO_HF_BLOCK = {
    "hub": {
        "norm1": "layernorm_before", "norm2": "layernorm_after",
        "attn.proj": "attention.output.dense", "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense",
        "attn.relative_position_bias_table": "attention.self.relative_position_bias_table",
        "qkv": ("attention.self.query", "attention.self.key", "attention.self.value"),
    },
    "transformers": {
        "norm1": "layernorm_before", "norm2": "layernorm_after",
        "attn.proj": "attention.o_proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
        "attn.relative_position_bias_table": "attention.relative_position_bias.relative_position_bias_table",
        "qkv": ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
    },
}
_SL_BLOCK_RE = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(.+?)(?:\.(weight|bias))?$")
_SL_DOWN_RE = re.compile(r"^layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)$")
_SL_TOP = {"patch_embed.proj": "embeddings.patch_embeddings.projection", "patch_embed.norm": "embeddings.norm",
           "norm": "layernorm"}


def swinlab_to_hf(
    state_dict: Mapping[str, torch.Tensor], naming: Literal["hub", "transformers"] = "hub"
) -> dict[str, torch.Tensor]:
    """Rename a swinlab Swin ``state_dict`` to Hugging Face
    ``SwinForImageClassification`` names (inverse of :func:`to_swinlab` for
    layout ``"hf"``).

    ``attn.qkv`` ``(3C, C)``/``(3C,)`` is split in three along dim 0 into
    query, key, value; ``head`` -> ``classifier``; everything else under
    ``swin.``. Buffers, if present, are dropped.

    Args:
        state_dict: swinlab names (e.g. ``model.state_dict()``).
        naming: ``"hub"``: the names of files on the Hub and of
            ``save_pretrained`` (transformers 4.x module names; 5.x renames
            them at load time), for writing ``model.safetensors``;
            ``"transformers"``: the module names of the installed
            transformers 5.x, for ``hf_model.load_state_dict(...)``.

    Returns:
        a new dict of the same tensors (``qkv`` chunks are views).

    Raises:
        ValueError: unknown ``naming``, a key with no Hugging Face counterpart
            (the message lists them; e.g. a ViT or a model without
            ``patch_embed.norm``/``norm`` is fine, unknown names are not), or a
            ``qkv`` whose first dim is not a multiple of 3.
    """
    if naming not in _TO_HF_BLOCK:
        raise ValueError(f"unknown naming {naming!r}; expected 'hub' or 'transformers'")
    names = _TO_HF_BLOCK[naming]
    out: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in _drop_buffers(unwrap_checkpoint(state_dict)).items():
        m = _SL_BLOCK_RE.match(key)
        if m:
            i, j, name, kind = m.group(1), m.group(2), m.group(3), m.group(4)
            prefix = f"swin.encoder.layers.{i}.blocks.{j}."
            suffix = f".{kind}" if kind else ""
            if name == "attn.qkv" and kind:
                if value.shape[0] % 3:
                    raise ValueError(f"{key}: first dim {value.shape[0]} is not a multiple of 3 (q, k, v)")
                for part, hf_name in zip(value.chunk(3, dim=0), names["qkv"]):
                    out[prefix + hf_name + suffix] = part
                continue
            if name in names and name != "qkv":
                out[prefix + names[name] + suffix] = value
                continue
            unmapped.append(key)
            continue
        m = _SL_DOWN_RE.match(key)
        if m:
            out[f"swin.encoder.layers.{m.group(1)}.downsample.{m.group(2)}.{m.group(3)}"] = value
            continue
        if key == "absolute_pos_embed":
            out["swin.embeddings.position_embeddings"] = _flat_pos_embed(value)
            continue
        base, _, kind = key.rpartition(".")
        if kind in ("weight", "bias") and base == "head":
            out[f"classifier.{kind}"] = value
            continue
        if kind in ("weight", "bias") and base in _SL_TOP:
            out[f"swin.{_SL_TOP[base]}.{kind}"] = value
            continue
        unmapped.append(key)
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} key(s) have no Hugging Face Swin counterpart: {_sample_keys(unmapped)}"
        )
    return out


# ------------------------------------------------------------- HF configs
def swin_kwargs_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`~swinlab.models.swin.SwinTransformer` keyword arguments for a
    Hugging Face Swin ``config.json`` (``transformers.SwinConfig`` fields).

    Args:
        config: the parsed ``config.json`` (or ``SwinConfig.to_dict()``).

    Returns:
        ``img_size``, ``patch_size``, ``in_chans``, ``embed_dim``, ``depths``,
        ``num_heads``, ``window_size``, ``mlp_ratio``, ``qkv_bias``, ``ape``,
        ``num_classes`` (``len(id2label)``, else ``num_labels``; 0 for a
        ``SwinModel`` without ``classifier``) and ``drop_path_rate``.

    Raises:
        ValueError: not a Swin V1 config (``model_type`` other than
            ``"swin"``, e.g. ``"swinv2"``), an activation other than GELU, a
            LayerNorm eps other than 1e-5, or a missing required field.
    """
    model_type = config.get("model_type", "swin")
    if model_type != "swin":
        raise ValueError(f"config model_type is {model_type!r}; only Swin V1 ('swin') configs are supported")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"config hidden_act is {config['hidden_act']!r}; swinlab's Swin uses exact 'gelu'")
    eps = float(config.get("layer_norm_eps", 1e-5))
    if abs(eps - 1e-5) > 1e-12:
        raise ValueError(f"config layer_norm_eps is {eps}; swinlab's Swin uses 1e-5")
    missing = [k for k in ("embed_dim", "depths", "num_heads") if k not in config]
    if missing:
        raise ValueError(f"Swin config lacks the field(s) {missing}")
    id2label = config.get("id2label") or {}
    num_classes = len(id2label) if id2label else int(config.get("num_labels", 0))
    image_size = config.get("image_size", 224)
    return {
        "img_size": tuple(image_size) if isinstance(image_size, (list, tuple)) else int(image_size),
        "patch_size": int(config.get("patch_size", 4)),
        "in_chans": int(config.get("num_channels", 3)),
        "embed_dim": int(config["embed_dim"]),
        "depths": [int(d) for d in config["depths"]],
        "num_heads": [int(h) for h in config["num_heads"]],
        "window_size": int(config.get("window_size", 7)),
        "mlp_ratio": float(config.get("mlp_ratio", 4.0)),
        "qkv_bias": bool(config.get("qkv_bias", True)),
        "ape": bool(config.get("use_absolute_embeddings", False)),
        "num_classes": num_classes,
        "drop_path_rate": float(config.get("drop_path_rate", 0.1)),
    }


def swinv2_kwargs_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`~swinlab.models.swin_v2.SwinTransformerV2` keyword arguments
    for a Hugging Face ``Swinv2Config`` ``config.json``.

    Returns:
        the keys of :func:`swin_kwargs_from_hf_config` plus
        ``pretrained_window_sizes`` (per stage; 0 when the config has none).

    Raises:
        ValueError: ``model_type`` other than ``"swinv2"``, or what
            :func:`swin_kwargs_from_hf_config` refuses (activation, eps,
            missing fields), or ``pretrained_window_sizes`` of the wrong length.
    """
    model_type = config.get("model_type", "swinv2")
    if model_type != "swinv2":
        raise ValueError(f"config model_type is {model_type!r}; expected a Swin V2 ('swinv2') config")
    kwargs = swin_kwargs_from_hf_config({**config, "model_type": "swin"})
    stages = len(kwargs["depths"])
    pws = config.get("pretrained_window_sizes") or [0] * stages
    if len(pws) != stages:
        raise ValueError(f"config pretrained_window_sizes {list(pws)} has {len(pws)} entries for {stages} stages")
    kwargs["pretrained_window_sizes"] = [int(p) for p in pws]
    return kwargs


def hf_config_from_swin(model: nn.Module, labels: list[str] | None = None) -> dict[str, Any]:
    """A Hugging Face ``config.json`` dict (``SwinConfig`` fields) describing
    a swinlab :class:`~swinlab.models.swin.SwinTransformer`, for exporting
    with :func:`swinlab_to_hf`.

    Args:
        model: the Swin model.
        labels: class names for ``id2label`` (default ``LABEL_i``).

    Returns:
        a JSON-serialisable dict (``model_type`` ``"swin"``,
        ``architectures`` ``["SwinForImageClassification"]``).

    Raises:
        ValueError: a model transformers cannot express: per-stage windows
            that differ (Swin-S3, or stages whose window was shrunk to the map
            size), no patch/merge/final LayerNorm, an MLP other than
            ``Linear-GELU-Linear``, or ``labels`` of the wrong length.
    """
    windows = set(getattr(model, "window_sizes", []))
    if len(windows) != 1:
        raise ValueError(
            f"transformers' Swin uses one window size for all stages; this model has {sorted(windows)}"
        )
    if getattr(model, "patch_embed", None) is None or model.patch_embed.norm is None:
        raise ValueError("transformers' Swin always has a patch-embedding LayerNorm; this model has none")
    if model.norm is None or any(
        layer.downsample is not None and layer.downsample.norm is None for layer in model.layers
    ):
        raise ValueError("transformers' Swin always has merge and final LayerNorms; this model lacks one")
    num_classes = int(model.num_classes)
    if labels is not None and len(labels) != num_classes:
        raise ValueError(f"got {len(labels)} labels for a model with {num_classes} classes")
    names = list(labels) if labels is not None else [f"LABEL_{i}" for i in range(num_classes)]
    h, w = model.img_size
    block = model.layers[0].blocks[0]
    return {
        "model_type": "swin",
        "architectures": ["SwinForImageClassification"],
        "image_size": h if h == w else [h, w],
        "patch_size": int(model.patch_size),
        "num_channels": int(model.in_chans),
        "embed_dim": int(model.embed_dim),
        "depths": list(model.depths),
        "num_heads": list(model.num_heads),
        "window_size": windows.pop(),
        "mlp_ratio": float(model.mlp_ratio),
        "qkv_bias": block.attn.qkv.bias is not None,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "use_absolute_embeddings": bool(model.ape),
        "hidden_size": int(model.num_features),
        "encoder_stride": int(model.patch_size * 2 ** (model.num_layers - 1)),
        "id2label": {str(i): n for i, n in enumerate(names)},
        "label2id": {n: i for i, n in enumerate(names)},
    }
