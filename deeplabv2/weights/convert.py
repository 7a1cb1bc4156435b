"""Caffe layer names <-> this library's module names (the one mapping table).

DeepLab v2's Caffe nets name their layers after the original ResNet release: ``conv1`` +
``bn_conv1`` + ``scale_conv1`` for the stem, ``res{stage}{block}_branch{2a,2b,2c,1}`` for the
bottlenecks (blocks ``a, b, c`` for stages of 3 blocks, ``a, b1, b2, ...`` for longer stages:
``res3b3``, ``res4b22``), with ``bn``/``scale`` in place of ``res`` for their BatchNorm and Scale
layers, and ``<head>_c0`` .. ``<head>_c3`` (e.g. ``fc1_voc12_c0``) for the ASPP branches.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import CaffeFormatError, WeightsFormatError, WeightsMismatchError
from .caffe import CaffeLayer, read_caffemodel
from .files import check_destination, check_readable, read_pth, read_safetensors, save_safetensors

__all__ = [
    "CONVERSION_VERSION",
    "WeightsMismatchError",
    "caffe_block_name",
    "caffe_layer_table",
    "caffe_to_state_dict",
    "check_state_dict",
    "convert",
    "load_weights_file",
    "peer_to_state_dict",
    "save_safetensors",
]

#: Caffe branch suffix -> (convolution path, BatchNorm path) inside a ``Bottleneck``.
_BRANCHES = {
    "branch2a": ("conv1", "bn1"),
    "branch2b": ("conv2", "bn2"),
    "branch2c": ("conv3", "bn3"),
    "branch1": ("downsample.0", "downsample.1"),
}


def caffe_block_name(stage_index: int, block_index: int, num_blocks: int) -> str:
    """Caffe name of a bottleneck: stage 0..3 (``res2``..``res5``), block 0.. -> ``res4b22``."""
    if block_index == 0:
        suffix = "a"
    elif num_blocks <= 3:
        suffix = chr(ord("a") + block_index)
    else:
        suffix = f"b{block_index}"
    return f"res{stage_index + 2}{suffix}"


def caffe_layer_table(
    blocks: Sequence[int] = (3, 4, 23, 3), head: str = "fc1_voc12", num_branches: int = 4
) -> dict[str, tuple[str, str]]:
    """Every Caffe layer that has parameters -> ``(module path, kind)``.

    ``kind`` is ``"conv"`` (blobs: weight, optional bias), ``"bn"`` (Caffe ``BatchNorm`` blobs:
    mean*s, var*s, s) or ``"scale"`` (Caffe ``Scale`` blobs: BatchNorm weight, bias). Module
    paths are those of :class:`deeplabv2.models.DeepLabV2`, e.g. ``res4b22_branch2c`` ->
    ``("backbone.layer3.22.conv3", "conv")``, ``scale4b22_branch2c`` ->
    ``("backbone.layer3.22.bn3", "scale")``, ``fc1_voc12_c2`` -> ``("aspp.convs.2", "conv")``.
    """
    table: dict[str, tuple[str, str]] = {
        "conv1": ("backbone.conv1", "conv"),
        "bn_conv1": ("backbone.bn1", "bn"),
        "scale_conv1": ("backbone.bn1", "scale"),
    }
    for stage, count in enumerate(blocks):
        for block in range(count):
            name = caffe_block_name(stage, block, count)
            prefix = f"backbone.layer{stage + 1}.{block}"
            for branch, (conv, bn) in _BRANCHES.items():
                if branch == "branch1" and block != 0:
                    continue
                table[f"{name}_{branch}"] = (f"{prefix}.{conv}", "conv")
                bn_layer = "bn" + name[len("res") :]
                table[f"{bn_layer}_{branch}"] = (f"{prefix}.{bn}", "bn")
                table[f"scale{name[len('res') :]}_{branch}"] = (f"{prefix}.{bn}", "scale")
    for index in range(num_branches):
        table[f"{head}_c{index}"] = (f"aspp.convs.{index}", "conv")
    return table


# --------------------------------------------------------------------------------------------
# Conversion of Caffe nets and the PyTorch port's checkpoints to this library's state dict.
# --------------------------------------------------------------------------------------------

#: Bumped whenever the conversion's output changes; stored in every converted file's header.
CONVERSION_VERSION = "1"
ARCHITECTURE = "deeplab_v2_resnet101"
_BLOCKS = (3, 4, 23, 3)
_REPORT_LIMIT = 8


def expected_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    """Shapes of every state-dict entry of ``deeplab_v2_resnet101(num_classes=...)``."""
    from ..models.deeplab import DeepLabV2

    with torch.device("meta"):
        model = DeepLabV2(num_classes=num_classes, blocks=_BLOCKS)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _names(names: Iterable[str]) -> str:
    names = sorted(names)
    more = f" and {len(names) - _REPORT_LIMIT} more" if len(names) > _REPORT_LIMIT else ""
    return ", ".join(names[:_REPORT_LIMIT]) + more


def check_state_dict(
    state: Mapping[str, torch.Tensor], num_classes: Optional[int], source: str
) -> None:
    """Raise :class:`WeightsMismatchError` naming every missing, unexpected, mis-shaped entry.

    ``num_classes=None`` checks backbone-only weights (no ``aspp.*`` entries).
    """
    shapes = expected_shapes(num_classes or 1)
    if num_classes is None:
        shapes = {k: v for k, v in shapes.items() if not k.startswith("aspp.")}
    missing = shapes.keys() - state.keys()
    unexpected = state.keys() - shapes.keys()
    misshaped = [
        f"{k} {tuple(state[k].shape)} (expected {shapes[k]})"
        for k in shapes.keys() & state.keys()
        if tuple(state[k].shape) != shapes[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected: {_names(unexpected)}")
    if misshaped:
        problems.append(f"wrong shape: {_names(misshaped)}")
    if problems:
        target = f"{num_classes} classes" if num_classes else "a backbone-only initialisation"
        raise WeightsMismatchError(
            f"{source} does not match deeplab_v2_resnet101 with {target}; " + "; ".join(problems)
        )


def _find_head(names: Iterable[str]) -> str:
    backbone = caffe_layer_table(head="\0")
    heads: dict[str, set[int]] = {}
    for name in names:
        match = re.fullmatch(r"(.+)_c(\d)", name)
        if match and name not in backbone:
            heads.setdefault(match.group(1), set()).add(int(match.group(2)))
    complete = [head for head, branches in heads.items() if branches == {0, 1, 2, 3}]
    if len(complete) != 1:
        found = ", ".join(sorted(heads)) or "none"
        raise WeightsMismatchError(
            "cannot find the ASPP head: expected exactly one set of layers <prefix>_c0.."
            f"<prefix>_c3 (e.g. fc1_voc12_c0), found prefixes: {found}"
        )
    return complete[0]


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, whatever the blob shape encoding (``(C,)`` vs legacy ``(1, 1, 1, C)``)."""
    return a.size == b.size and np.array_equal(a.ravel(), b.ravel())


def caffe_to_state_dict(
    layers: Iterable[CaffeLayer], source: str = "the Caffe model", backbone_only: bool = False
) -> tuple[dict[str, torch.Tensor], Optional[int]]:
    """Caffe layers -> ``(state dict, num_classes)`` of ``deeplab_v2_resnet101``.

    Convolution blobs become weight (and bias); BatchNorm blobs (mean*s, var*s, s) become the
    running statistics divided by ``s`` (``s == 0`` gives zeros, as Caffe computes it); Scale
    blobs become the BatchNorm weight and bias. The ASPP prefix (``fc1_voc12``, ``fc1``, ...) and
    the class count are read from the file. Copies of shared layers in multi-scale training nets
    (``conv1_res075``, ``fc1_voc12_c0_res05``, ...) must equal the original and are dropped.
    Layers without blobs are skipped. With ``backbone_only`` (the release's ``init.caffemodel``,
    whose classifier is not an ASPP head) layers outside the backbone are ignored and
    ``num_classes`` is None.

    Raises:
        WeightsMismatchError: missing, unexpected or mis-shaped layers, or MSC copies that differ.
    """
    with_blobs = {layer.name: layer for layer in layers if layer.blobs}
    head = None if backbone_only else _find_head(with_blobs)
    table = caffe_layer_table(_BLOCKS, head=head or "", num_branches=0 if head is None else 4)
    state: dict[str, torch.Tensor] = {}
    unexpected = []
    for name, layer in with_blobs.items():
        copy_of = re.fullmatch(r"(.+)_res\d+", name)
        if name not in table and copy_of and copy_of.group(1) in table:
            original = with_blobs.get(copy_of.group(1))
            if (
                original is None
                or len(original.blobs) != len(layer.blobs)
                or not all(_same_values(a, b) for a, b in zip(original.blobs, layer.blobs))
            ):
                raise WeightsMismatchError(
                    f"{source}: layer {name} should be a shared copy of {copy_of.group(1)} "
                    "(multi-scale training net) but its blobs differ"
                )
            continue
        if name not in table:
            if not backbone_only:
                unexpected.append(f"{name} ({layer.type or 'unknown type'})")
            continue
        module, kind = table[name]
        blobs = [torch.from_numpy(np.ascontiguousarray(b)) for b in layer.blobs]
        if kind == "conv":
            if not 1 <= len(blobs) <= 2:
                raise CaffeFormatError(
                    f"{source}: convolution layer {name} has {len(blobs)} blobs, expected 1 or "
                    "2 (weight, bias): the file is corrupt"
                )
            state[f"{module}.weight"] = blobs[0]
            if len(blobs) > 1:
                state[f"{module}.bias"] = blobs[1].flatten()
        elif kind == "bn":
            if len(blobs) != 3 or blobs[2].numel() != 1:
                found = ", ".join(str(tuple(b.shape)) for b in blobs) or "none"
                raise CaffeFormatError(
                    f"{source}: BatchNorm layer {name} has blobs of shapes {found}; expected "
                    "three (mean*s, var*s and s, a single value): the file is corrupt"
                )
            s = float(blobs[2].flatten()[0])
            factor = 0.0 if s == 0 else 1.0 / s
            state[f"{module}.running_mean"] = blobs[0].flatten() * factor
            state[f"{module}.running_var"] = blobs[1].flatten() * factor
        else:
            if not 1 <= len(blobs) <= 2:
                raise CaffeFormatError(
                    f"{source}: Scale layer {name} has {len(blobs)} blobs, expected 1 or 2 "
                    "(weight, bias): the file is corrupt"
                )
            weight = blobs[0].flatten()
            state[f"{module}.weight"] = weight
            state[f"{module}.bias"] = blobs[1].flatten() if len(blobs) > 1 else weight * 0
    if unexpected:
        raise WeightsMismatchError(
            f"{source}: layers with parameters that DeepLab v2 ResNet-101 does not have: "
            f"{_names(unexpected)}"
        )
    num_classes = None if head is None else int(state["aspp.convs.0.weight"].shape[0])
    check_state_dict(state, num_classes, source)
    return state, num_classes


_PEER_BRANCH = {
    "reduce": ("conv1", "bn1"),
    "conv3x3": ("conv2", "bn2"),
    "increase": ("conv3", "bn3"),
    "shortcut": ("downsample.0", "downsample.1"),
    "proj": ("downsample.0", "downsample.1"),
}


def _peer_key(key: str) -> str | None:
    """Map one key of the PyTorch port (kazuto1011/deeplab-pytorch) to ours; None = unknown."""
    key = re.sub(r"^(module\.)?(base\.|scale\.)?", "", key)
    match = re.fullmatch(r"layer1\.conv1\.(conv|bn)\.(\w+)", key)
    if match:
        return f"backbone.{'conv1' if match.group(1) == 'conv' else 'bn1'}.{match.group(2)}"
    match = re.fullmatch(r"layer([2-5])\.block(\d+)\.(\w+)\.(conv|bn)\.(\w+)", key)
    if match and match.group(3) in _PEER_BRANCH:
        stage, block, branch, part, entry = match.groups()
        conv, bn = _PEER_BRANCH[branch]
        return (
            f"backbone.layer{int(stage) - 1}.{int(block) - 1}."
            f"{conv if part == 'conv' else bn}.{entry}"
        )
    match = re.fullmatch(r"aspp\.(?:stages\.)?c(\d+)\.(weight|bias)", key)
    if match:
        return f"aspp.convs.{match.group(1)}.{match.group(2)}"
    return None


def peer_to_state_dict(
    state: Mapping[str, torch.Tensor], source: str = "the checkpoint"
) -> dict[str, torch.Tensor]:
    """A checkpoint of the PyTorch port -> this library's key names (not yet shape-checked).

    Accepts the keys of kazuto1011/deeplab-pytorch's released DeepLab v2 files (e.g.
    ``base.layer2.block1.reduce.conv.weight``, older ``proj``/``aspp.stages.c0`` spellings, a
    ``module.`` prefix); ``num_batches_tracked`` entries are dropped.

    Raises:
        WeightsMismatchError: entries the port's DeepLab v2 does not have.
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        mapped = _peer_key(key)
        if mapped is None:
            unknown.append(key)
        else:
            out[mapped] = value
    if unknown:
        raise WeightsMismatchError(
            f"{source}: entries that are not DeepLab v2 ResNet-101 parameters: {_names(unknown)}"
        )
    return out


def _head_classes(state: Mapping[str, torch.Tensor], source: str) -> int:
    """The class count of an ASPP head: output channels of its first 4-D weight."""
    for index in range(4):
        weight = state.get(f"aspp.convs.{index}.weight")
        if weight is not None and weight.dim() == 4:
            return int(weight.shape[0])
    raise WeightsMismatchError(
        f"{source}: its ASPP head has no (num_classes, 2048, 3, 3) weight "
        f"(found: {_names(k for k in state if k.startswith('aspp.'))})"
    )


def _checked(
    state: dict[str, torch.Tensor],
    source: str,
    backbone_only: bool,
    metadata: Mapping[str, str],
    new_head: bool,
) -> tuple[dict[str, torch.Tensor], Optional[int]]:
    """Check ``state`` strictly; return it with its class count (None: backbone only).

    A file without any ``aspp.*`` entry loads as a backbone only if that is explicit: its
    metadata says so (``num_classes: none``, as this library writes backbone-only files),
    ``backbone_only`` asks for it, or ``new_head`` (the caller asked for a new head). A head
    with some entries missing is always an error.
    """
    has_head = any(k.startswith("aspp.") for k in state)
    explicit = metadata.get("num_classes") == "none" or new_head
    if backbone_only or (not has_head and explicit):
        state = {k: v for k, v in state.items() if not k.startswith("aspp.")}
        num_classes = None
    elif not has_head:
        raise WeightsMismatchError(
            f"{source} has no ASPP head (missing: {_names(_head_keys())}); a backbone-only "
            "initialisation must be loaded as one: convert it with --backbone-only "
            "(backbone_only=True), or pass num_classes=N to build a new head"
        )
    else:
        num_classes = _head_classes(state, source)
    check_state_dict(state, num_classes, source)
    return state, num_classes


def _head_keys() -> list[str]:
    return [f"aspp.convs.{i}.{entry}" for i in range(4) for entry in ("weight", "bias")]


def load_weights_file(
    path: str | os.PathLike, backbone_only: bool = False, new_head: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read weights of any supported format -> ``(state dict, metadata)``.

    ``.safetensors`` (this library's files, metadata from the header), ``.pth``/``.pt`` (this
    library's keys or the PyTorch port's, read with ``torch.load(weights_only=True)``) and
    ``.caffemodel`` (the release's files, converted on the fly). The state dict is checked
    strictly against the model; ``metadata["num_classes"]`` gives its class count (``"none"``
    for backbone-only weights). A file without an ASPP head is refused unless it says it is
    backbone-only, ``backbone_only`` is set, or ``new_head`` (a new head will be built).

    Raises:
        FileNotFoundError / PermissionError / IsADirectoryError: the file cannot be opened.
        WeightsFormatError: unknown extension, or an unreadable or corrupt file.
        WeightsMismatchError: weights that do not fit the model.
    """
    path = os.fspath(path)
    source = os.path.basename(path)
    suffix = os.path.splitext(path)[1].lower()
    check_readable(path, "weights file")
    if suffix == ".caffemodel":
        _, layers = read_caffemodel(path)
        state, num_classes = caffe_to_state_dict(layers, source, backbone_only)
        return state, _metadata(num_classes, source)
    if suffix == ".safetensors":
        state, metadata = read_safetensors(path)
        state, num_classes = _checked(state, source, backbone_only, metadata, new_head)
        return state, {**metadata, **_metadata(num_classes, source)}
    if suffix in (".pth", ".pt"):
        loaded = read_pth(path)
        if all(key.startswith(("backbone.", "aspp.convs.")) for key in loaded):
            state = loaded
        else:
            state = peer_to_state_dict(loaded, source)
        state, num_classes = _checked(state, source, backbone_only, {}, new_head)
        return state, _metadata(num_classes, source)
    raise WeightsFormatError(
        f"{path}: unknown weights format {suffix or '(no extension)'}; expected .safetensors, "
        ".pth/.pt or .caffemodel"
    )


def _metadata(num_classes: Optional[int], source: str) -> dict[str, str]:
    from .. import __version__

    return {
        "architecture": ARCHITECTURE,
        "num_classes": "none" if num_classes is None else str(num_classes),
        "source": source,
        "deeplabv2_version": __version__,
        "conversion_version": CONVERSION_VERSION,
    }


def convert(
    src: str | os.PathLike, dst: str | os.PathLike, force: bool = False, backbone_only: bool = False
) -> tuple[Path, dict[str, str]]:
    """Convert a ``.caffemodel``, ``.pth`` or ``.safetensors`` file to this library's safetensors.

    The weights are checked against the model before anything is written; the output carries
    ``architecture``, ``num_classes``, ``source``, ``deeplabv2_version`` and
    ``conversion_version`` in its header. Returns the written path and its metadata.
    """
    check_destination(dst, force, suffix=".safetensors")
    state, metadata = load_weights_file(src, backbone_only=backbone_only)
    return save_safetensors(state, dst, metadata, force=force), metadata
