"""Each model family's checkpoint mapping (timm's ``checkpoint_filter_fn``, as data).

A :class:`CheckpointMapping` says how raw weights (:class:`deeplabv2.weights.Checkpoint`: Caffe
layers or a state dict) become a family's state dict: the Caffe layer table of its backbone, how
its head is named in Caffe files, the PyTorch port's key names, and which entries form the
class-specific head (what a backbone-only initialisation lacks). :func:`to_state_dict` applies
it; :func:`check_state_dict` compares the result with a model, naming every difference.

Caffe names (DeepLab v2 ResNet-101, after the original ResNet release): ``conv1`` +
``bn_conv1`` + ``scale_conv1`` for the stem, ``res{stage}{block}_branch{2a,2b,2c,1}`` for the
bottlenecks (blocks ``a, b, c`` for stages of 3 blocks, ``a, b1, b2, ...`` for longer ones:
``res3b3``, ``res4b22``), ``bn``/``scale`` in place of ``res`` for BatchNorm and Scale, and
``<head>_c0`` .. ``<head>_c3`` (e.g. ``fc1_voc12_c0``) for the ASPP branches. VGG-16: the layer
names themselves (``conv1_1`` .. ``conv5_3``), ``fc6_i``/``fc7_i``/``fc8_<data>_i`` (i = 1..4)
for ASPP-L and ``fc6``/``fc7``/``fc8_<data>`` for LargeFOV.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from ..data.transforms import CAFFE_MEAN_BGR
from ..errors import CaffeFormatError, WeightsMismatchError
from ..weights import Checkpoint
from ..weights.caffe import CaffeLayer
from ..weights.registry import (
    PORT_PROTOCOL,
    RELEASE_PROTOCOL,
    VGG_RELEASE_PROTOCOL,
    EvalProtocol,
)
from ._registry import get_model

__all__ = [
    "LARGEFOV_VGG16",
    "MAPPINGS",
    "RESNET101",
    "VGG16_ASPP",
    "CheckpointMapping",
    "caffe_block_name",
    "caffe_layer_table",
    "check_family",
    "check_state_dict",
    "detect_architecture",
    "expected_shapes",
    "head_classes",
    "dialect_of",
    "to_state_dict",
]

_REPORT_LIMIT = 8
# (module path, kind) of a Caffe layer: kind "conv" (weight, optional bias), "bn" (Caffe
# BatchNorm: mean*s, var*s, s) or "scale" (Caffe Scale: BatchNorm weight, bias).
LayerTable = dict[str, tuple[str, str]]


@dataclass(frozen=True)
class Dialect:
    """Another code base's state-dict keys for a family.

    Attributes:
        name: e.g. ``"port"`` (kazuto1011/deeplab-pytorch) or ``"torchvision"``.
        protocol: how weights in this dialect were evaluated (None: not a segmentation model).
        matches: whether a state dict is in this dialect.
        translate: ``(tensors, source, lenient) -> state dict`` in our keys; ``lenient`` drops
            entries that map to nothing (a backbone-only load) instead of failing.
    """

    name: str
    protocol: Optional[EvalProtocol]
    matches: Callable[[Mapping[str, torch.Tensor]], bool]
    translate: Callable[[Mapping[str, torch.Tensor], str, bool], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class CheckpointMapping:
    """How one model family reads checkpoints.

    Attributes:
        architecture: the builder's name.
        backbone: Caffe layer -> ``(module path, kind)`` for everything but the head.
        find_head: Caffe layer names -> the table of the head's layers (raises
            :class:`WeightsMismatchError` if there is no complete head).
        is_head: whether a state-dict key belongs to the class-specific head.
        head_weight: the state-dict key whose first dimension is the class count.
        dialects: other code bases' key names for this family (the PyTorch port's,
            torchvision's) and how to translate them.
        caffe_signature: Caffe layers whose presence identifies the family in a file.
        release_protocol: how the Caffe release evaluated this family.
    """

    architecture: str
    backbone: LayerTable
    find_head: Callable[[Iterable[str]], LayerTable]
    is_head: Callable[[str], bool]
    head_weight: str
    dialects: tuple[Dialect, ...]
    caffe_signature: tuple[str, ...]
    release_protocol: EvalProtocol


def _names(names: Iterable[str]) -> str:
    names = sorted(names)
    more = f" and {len(names) - _REPORT_LIMIT} more" if len(names) > _REPORT_LIMIT else ""
    return ", ".join(names[:_REPORT_LIMIT]) + more


# -- ResNet-101 ---------------------------------------------------------------------------------

#: Caffe branch suffix -> (convolution path, BatchNorm path) inside a ``Bottleneck``.
_BRANCHES = {
    "branch2a": ("conv1", "bn1"),
    "branch2b": ("conv2", "bn2"),
    "branch2c": ("conv3", "bn3"),
    "branch1": ("downsample.0", "downsample.1"),
}
_RESNET101_BLOCKS = (3, 4, 23, 3)


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
    blocks: Sequence[int] = _RESNET101_BLOCKS, head: str = "fc1_voc12", num_branches: int = 4
) -> LayerTable:
    """Every Caffe layer of DeepLab v2 ResNet that has parameters -> ``(module path, kind)``.

    E.g. ``res4b22_branch2c`` -> ``("backbone.layer3.22.conv3", "conv")``,
    ``scale4b22_branch2c`` -> ``("backbone.layer3.22.bn3", "scale")``, ``fc1_voc12_c2`` ->
    ``("aspp.convs.2", "conv")``.
    """
    table: LayerTable = {
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
                table[f"bn{name[3:]}_{branch}"] = (f"{prefix}.{bn}", "bn")
                table[f"scale{name[3:]}_{branch}"] = (f"{prefix}.{bn}", "scale")
    for index in range(num_branches):
        table[f"{head}_c{index}"] = (f"aspp.convs.{index}", "conv")
    return table


def _complete_head(names: Iterable[str], pattern: str, branches: set[str], example: str) -> str:
    """The one prefix whose layers ``<prefix><branch>`` exist for every branch."""
    heads: dict[str, set[str]] = {}
    for name in names:
        match = re.fullmatch(pattern, name)
        if match:
            heads.setdefault(match.group(1), set()).add(match.group(2) or "")
    complete = [head for head, found in heads.items() if found == branches]
    if len(complete) != 1:
        found = ", ".join(sorted(heads)) or "none"
        raise WeightsMismatchError(
            f"cannot find the head: expected exactly one complete set of layers like {example}, "
            f"found prefixes: {found}"
        )
    return complete[0]


def _resnet_head(names: Iterable[str]) -> LayerTable:
    backbone = RESNET101.backbone
    prefix = _complete_head(
        (n for n in names if n not in backbone), r"(.+)_c(\d)", {"0", "1", "2", "3"},
        "fc1_voc12_c0 .. fc1_voc12_c3",
    )  # fmt: skip
    return {f"{prefix}_c{i}": (f"aspp.convs.{i}", "conv") for i in range(4)}


_PORT_BRANCH = {
    "reduce": ("conv1", "bn1"),
    "conv3x3": ("conv2", "bn2"),
    "increase": ("conv3", "bn3"),
    "shortcut": ("downsample.0", "downsample.1"),
    "proj": ("downsample.0", "downsample.1"),
}


def _resnet_port_key(key: str) -> Optional[str]:
    """One key of kazuto1011/deeplab-pytorch's DeepLab v2 / v1 ResNet-101 -> ours (or None).

    Accepts ``base.layer2.block1.reduce.conv.weight`` (v2), ``layer2.block1.shortcut.bn.bias``
    (the v1 COCO init), older ``proj``/``aspp.stages.c0`` spellings and a ``module.`` prefix.
    """
    key = re.sub(r"^(module\.)?(base\.|scale\.)?", "", key)
    match = re.fullmatch(r"layer1\.conv1\.(conv|bn)\.(\w+)", key)
    if match:
        return f"backbone.{'conv1' if match.group(1) == 'conv' else 'bn1'}.{match.group(2)}"
    match = re.fullmatch(r"layer([2-5])\.block(\d+)\.(\w+)\.(conv|bn)\.(\w+)", key)
    if match and match.group(3) in _PORT_BRANCH:
        stage, block, branch, part, entry = match.groups()
        conv, bn = _PORT_BRANCH[branch]
        module = conv if part == "conv" else bn
        return f"backbone.layer{int(stage) - 1}.{int(block) - 1}.{module}.{entry}"
    match = re.fullmatch(r"aspp\.(?:stages\.)?c(\d+)\.(weight|bias)", key)
    if match:
        return f"aspp.convs.{match.group(1)}.{match.group(2)}"
    return None


def _translate_port(
    tensors: Mapping[str, torch.Tensor], source: str, lenient: bool
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in tensors.items():
        if key.endswith("num_batches_tracked"):
            continue
        mapped = _resnet_port_key(key)
        if mapped is None:
            unknown.append(key)
        else:
            out[mapped] = value
    if unknown and not lenient:
        raise WeightsMismatchError(
            f"{source}: entries that are not deeplab_v2_resnet101 parameters: "
            f"{_names(unknown)} (a backbone initialisation loads with --backbone-only)"
        )
    return out


_PORT = Dialect(
    name="port",
    protocol=PORT_PROTOCOL,
    matches=lambda tensors: any(_resnet_port_key(k) for k in tensors),
    translate=_translate_port,
)

# torchvision's ImageNet normalisation (RGB / 255, then minus mean, over std)
_TORCHVISION_MEAN = (0.485, 0.456, 0.406)
_TORCHVISION_STD = (0.229, 0.224, 0.225)


def _translate_torchvision(
    tensors: Mapping[str, torch.Tensor], source: str, lenient: bool
) -> dict[str, torch.Tensor]:
    """torchvision's ``resnet101`` -> our backbone (an approximation: see docs/training.md).

    The module names are the same (``layer3.22.conv3``); the classifier ``fc`` is dropped.
    ``conv1`` is rescaled from torchvision's input (RGB / 255 normalised by the ImageNet mean
    and std) to ours (BGR, 0..255, minus the Caffe mean), and the constant the two means leave
    is moved into ``bn1``'s running mean (exact away from the image border).
    """
    out = {
        f"backbone.{key}": value.clone()
        for key, value in tensors.items()
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked")
    }
    weight = out["backbone.conv1.weight"].double()  # (64, 3, 7, 7), RGB
    std = torch.tensor(_TORCHVISION_STD, dtype=torch.float64).view(1, 3, 1, 1)
    mean = torch.tensor(_TORCHVISION_MEAN, dtype=torch.float64)
    caffe_rgb = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64).flip(0)
    offset = (caffe_rgb / 255 - mean) / std.view(3)  # x_tv = x_ours_rgb / (255 std) + offset
    constant = (weight.sum(dim=(2, 3)) * offset).sum(dim=1)  # conv1 of the constant image
    out["backbone.conv1.weight"] = (weight / (255 * std)).flip(1).float()  # to BGR
    bn_mean = out["backbone.bn1.running_mean"].double()
    out["backbone.bn1.running_mean"] = (bn_mean - constant).float()
    return out


_TORCHVISION = Dialect(
    name="torchvision",
    protocol=None,
    matches=lambda tensors: (
        {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "fc.weight"} <= set(tensors)
    ),  # fmt: skip
    translate=_translate_torchvision,
)

RESNET101 = CheckpointMapping(
    architecture="deeplab_v2_resnet101",
    backbone=caffe_layer_table(head="", num_branches=0),
    find_head=lambda names: _resnet_head(names),
    is_head=lambda key: key.startswith("aspp."),
    head_weight="aspp.convs.0.weight",
    dialects=(_TORCHVISION, _PORT),
    caffe_signature=("res5c_branch2c", "res4b22_branch2c"),
    release_protocol=RELEASE_PROTOCOL,
)


# -- VGG-16 -------------------------------------------------------------------------------------

_VGG_CONVS = [f"conv{s}_{i}" for s, n in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, n + 1)]


def _vgg_table(branches: Sequence[str]) -> LayerTable:
    """VGG-16 convolutions plus ``fc6``/``fc7`` of each branch suffix (``_1``.. or ``""``)."""
    table: LayerTable = {name: (f"backbone.{name}", "conv") for name in _VGG_CONVS}
    for index, suffix in enumerate(branches):
        for fc in ("fc6", "fc7"):
            table[f"{fc}{suffix}"] = (f"aspp.branches.{index}.{fc}", "conv")
    return table


def _vgg_head(names: Iterable[str], branches: Sequence[str], example: str) -> LayerTable:
    pattern = r"(fc8(?:_[A-Za-z0-9]+)*?)(_[1-4])" if branches != ("",) else r"(fc8(?:_.+)?)()"
    prefix = _complete_head(names, pattern, set(branches), example)
    return {
        f"{prefix}{suffix}": (f"aspp.branches.{index}.fc8", "conv")
        for index, suffix in enumerate(branches)
    }


_ASPP_BRANCHES = ("_1", "_2", "_3", "_4")

VGG16_ASPP = CheckpointMapping(
    architecture="deeplab_v2_vgg16",
    backbone=_vgg_table(_ASPP_BRANCHES),
    find_head=lambda names: _vgg_head(names, _ASPP_BRANCHES, "fc8_voc12_1 .. fc8_voc12_4"),
    is_head=lambda key: ".fc8." in key,
    head_weight="aspp.branches.0.fc8.weight",
    dialects=(),
    caffe_signature=("conv5_3", "fc6_1", "fc6_4"),
    release_protocol=VGG_RELEASE_PROTOCOL,
)

LARGEFOV_VGG16 = CheckpointMapping(
    architecture="deeplab_largefov_vgg16",
    backbone=_vgg_table(("",)),
    find_head=lambda names: _vgg_head(names, ("",), "fc8_voc12"),
    is_head=lambda key: ".fc8." in key,
    head_weight="aspp.branches.0.fc8.weight",
    dialects=(),
    caffe_signature=("conv5_3", "fc6", "fc7"),
    release_protocol=VGG_RELEASE_PROTOCOL,
)

#: Every family, by builder name.
MAPPINGS: dict[str, CheckpointMapping] = {
    m.architecture: m for m in (RESNET101, VGG16_ASPP, LARGEFOV_VGG16)
}


# -- conversion ---------------------------------------------------------------------------------


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, whatever the blob shape encoding (``(C,)`` vs legacy ``(1, 1, 1, C)``)."""
    return a.size == b.size and np.array_equal(a.ravel(), b.ravel())


def _blob_count(source: str, name: str, what: str, blobs: list, allowed: Sequence[int]) -> None:
    if len(blobs) not in allowed:
        raise CaffeFormatError(
            f"{source}: {what} layer {name} has {len(blobs)} blobs, expected "
            f"{' or '.join(str(n) for n in allowed)}: the file is corrupt"
        )


def _layer_entries(source: str, name: str, layer: CaffeLayer, module: str, kind: str) -> dict:
    blobs = [torch.from_numpy(np.ascontiguousarray(b)) for b in layer.blobs]
    if kind == "conv":
        _blob_count(source, name, "convolution", blobs, (1, 2))
        entries = {f"{module}.weight": blobs[0]}
        if len(blobs) > 1:
            entries[f"{module}.bias"] = blobs[1].flatten()
        return entries
    if kind == "bn":
        if len(blobs) != 3 or blobs[2].numel() != 1:
            found = ", ".join(str(tuple(b.shape)) for b in blobs) or "none"
            raise CaffeFormatError(
                f"{source}: BatchNorm layer {name} has blobs of shapes {found}; expected "
                "three (mean*s, var*s and s, a single value): the file is corrupt"
            )
        s = float(blobs[2].flatten()[0])
        factor = 0.0 if s == 0 else 1.0 / s  # Caffe computes zeros for s == 0
        return {
            f"{module}.running_mean": blobs[0].flatten() * factor,
            f"{module}.running_var": blobs[1].flatten() * factor,
        }
    _blob_count(source, name, "Scale", blobs, (1, 2))
    weight = blobs[0].flatten()
    bias = blobs[1].flatten() if len(blobs) > 1 else torch.zeros_like(weight)
    return {f"{module}.weight": weight, f"{module}.bias": bias}


def _from_caffe(
    mapping: CheckpointMapping, layers: Iterable[CaffeLayer], source: str, backbone_only: bool
) -> dict[str, torch.Tensor]:
    """Caffe layers -> state dict (our keys). Copies of shared layers in multi-scale training
    nets (``conv1_res075``, ``fc1_voc12_c0_res05``) must equal the original and are dropped."""
    with_blobs = {layer.name: layer for layer in layers if layer.blobs}
    table = dict(mapping.backbone)
    if not backbone_only:
        try:
            table.update(mapping.find_head(with_blobs))
        except WeightsMismatchError as error:
            raise WeightsMismatchError(
                f"{source}: {error}; a backbone initialisation (whose classifier is not this "
                "head) loads with --backbone-only (backbone_only=True)"
            ) from None
    state: dict[str, torch.Tensor] = {}
    unexpected = []
    for name, layer in with_blobs.items():
        copy_of = re.fullmatch(r"(.+)_res\d+", name)
        if name not in table and copy_of and copy_of.group(1) in with_blobs:
            original = with_blobs[copy_of.group(1)]
            if len(original.blobs) != len(layer.blobs) or not all(
                _same_values(a, b) for a, b in zip(original.blobs, layer.blobs)
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
        state.update(_layer_entries(source, name, layer, *table[name]))
    if unexpected:
        raise WeightsMismatchError(
            f"{source}: layers with parameters that {mapping.architecture} does not have: "
            f"{_names(unexpected)}"
        )
    return state


def _ours(keys) -> bool:
    return all(key.startswith(("backbone.", "aspp.")) for key in keys)


def _from_tensors(
    mapping: CheckpointMapping, tensors: Mapping[str, torch.Tensor], source: str, lenient: bool
) -> dict[str, torch.Tensor]:
    """A state dict of ours (keys under ``backbone.``/``aspp.``) or in one of the family's
    dialects. ``lenient`` drops entries that map to nothing (a backbone-only load)."""
    if _ours(tensors):
        return dict(tensors)
    dialect = _dialect(mapping, tensors)
    if dialect is None:
        foreign = [k for k in tensors if not k.startswith(("backbone.", "aspp."))]
        raise WeightsMismatchError(
            f"{source}: entries that are not {mapping.architecture} parameters: {_names(foreign)}"
        )
    return dialect.translate(tensors, source, lenient)


def _dialect(mapping: CheckpointMapping, tensors: Mapping) -> Optional[Dialect]:
    return next((d for d in mapping.dialects if d.matches(tensors)), None)


def dialect_of(mapping: CheckpointMapping, checkpoint: Checkpoint) -> Optional[Dialect]:
    """The dialect a state dict is in (None: ours, or a Caffe file)."""
    if checkpoint.format == "caffemodel" or _ours(checkpoint.tensors):
        return None
    return _dialect(mapping, checkpoint.tensors)


def head_classes(mapping: CheckpointMapping, state: Mapping[str, torch.Tensor], source: str) -> int:
    """The class count of the head in ``state``: first dimension of its classifier weight."""
    weight = state.get(mapping.head_weight)
    if weight is None:
        weight = next(
            (v for k, v in sorted(state.items()) if mapping.is_head(k) and v.dim() == 4), None
        )
    if weight is None or weight.dim() != 4:
        raise WeightsMismatchError(
            f"{source}: its head has no 4-D classifier weight "
            f"(found: {_names(k for k in state if mapping.is_head(k))})"
        )
    return int(weight.shape[0])


def to_state_dict(
    mapping: CheckpointMapping, checkpoint: Checkpoint, backbone_only: bool, new_head: bool
) -> tuple[dict[str, torch.Tensor], Optional[int]]:
    """Raw weights -> ``(state dict in our keys, class count or None for a backbone)``.

    A file without any head entry loads as a backbone only if that is explicit: its metadata
    says so (``num_classes: none``, as this library writes backbone-only files),
    ``backbone_only`` asks for it, or ``new_head`` (the caller builds a new head). A head with
    entries missing is refused later by :func:`check_state_dict`.

    Raises:
        WeightsMismatchError: no head where one is needed, or entries of another network.
        CaffeFormatError: Caffe layers with the wrong blobs.
    """
    source = checkpoint.source
    if checkpoint.format == "caffemodel":
        state = _from_caffe(mapping, checkpoint.layers, source, backbone_only)
        return state, None if backbone_only else head_classes(mapping, state, source)
    state = _from_tensors(mapping, checkpoint.tensors, source, lenient=backbone_only)
    has_head = any(mapping.is_head(k) for k in state)
    explicit = checkpoint.metadata.get("num_classes") == "none" or new_head
    if backbone_only or (not has_head and explicit):
        return {k: v for k, v in state.items() if not mapping.is_head(k)}, None
    if not has_head:
        raise WeightsMismatchError(
            f"{source} has no head (missing: {mapping.head_weight} and the rest of it); a "
            "backbone-only initialisation must be loaded as one: convert it with "
            "--backbone-only (backbone_only=True), or pass num_classes=N to build a new head"
        )
    return state, head_classes(mapping, state, source)


def check_state_dict(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Size],
    source: str,
    target: str,
) -> None:
    """Raise :class:`WeightsMismatchError` naming every missing, unexpected, mis-shaped entry."""
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    misshaped = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k])})"
        for k in expected.keys() & state.keys()
        if tuple(state[k].shape) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append(f"missing: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected: {_names(unexpected)}")
    if misshaped:
        problems.append(f"wrong shape: {_names(misshaped)}")
    if problems:
        raise WeightsMismatchError(f"{source} does not match {target}; " + "; ".join(problems))


def expected_shapes(architecture: str, num_classes: int) -> dict[str, torch.Size]:
    """Shapes of every state-dict entry of the family's model (built on the meta device)."""
    with torch.device("meta"):
        model = get_model(architecture, num_classes=num_classes)
    return {k: v.shape for k, v in model.state_dict().items()}


def _fits(mapping: CheckpointMapping, tensors: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict has exactly the family's entries outside the head (whatever its
    head, and whatever else a backbone initialisation carries, such as a classifier)."""
    try:
        state = _from_tensors(mapping, tensors, "", lenient=True)
    except WeightsMismatchError:
        return False
    backbone = {k for k in expected_shapes(mapping.architecture, 1) if not mapping.is_head(k)}
    return {k for k in state if not mapping.is_head(k)} == backbone


def _candidates(checkpoint: Checkpoint) -> list[str]:
    if checkpoint.format == "caffemodel":
        names = {layer.name for layer in checkpoint.layers}
        return [m.architecture for m in MAPPINGS.values() if set(m.caffe_signature) <= names]
    return [m.architecture for m in MAPPINGS.values() if _fits(m, checkpoint.tensors)]


def check_family(mapping: CheckpointMapping, checkpoint: Checkpoint) -> None:
    """Refuse a checkpoint that clearly belongs to another family (by metadata or layout)."""
    named = checkpoint.metadata.get("architecture")
    found = [named] if named else _candidates(checkpoint)
    if len(found) == 1 and found[0] != mapping.architecture:
        raise WeightsMismatchError(
            f"{checkpoint.source} is a {found[0]} file, not {mapping.architecture}: load it with "
            f"deeplabv2.models.{found[0]} (CLI: --model {found[0]}, or leave --model out)"
        )


def detect_architecture(checkpoint: Checkpoint) -> str:
    """The family of a checkpoint: from its metadata, else its layer names or keys.

    Raises:
        WeightsMismatchError: no family (or more than one) fits; pass the model explicitly.
    """
    named = checkpoint.metadata.get("architecture")
    if named:
        if named not in MAPPINGS:
            raise WeightsMismatchError(
                f"{checkpoint.source} is for {named!r}, which this version of deeplabv2 does not "
                f"have (known: {', '.join(MAPPINGS)})"
            )
        return named
    found = _candidates(checkpoint)
    if len(found) != 1:
        raise WeightsMismatchError(
            f"cannot tell which network {checkpoint.source} is for "
            f"({'several fit' if found else 'none fits'}); name it: --model "
            f"{' | '.join(MAPPINGS)} (model= in Python)"
        )
    return found[0]
