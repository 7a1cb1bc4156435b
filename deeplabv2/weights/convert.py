"""Caffe layer names <-> this library's module names (the one mapping table).

DeepLab v2's Caffe nets name their layers after the original ResNet release: ``conv1`` +
``bn_conv1`` + ``scale_conv1`` for the stem, ``res{stage}{block}_branch{2a,2b,2c,1}`` for the
bottlenecks (blocks ``a, b, c`` for stages of 3 blocks, ``a, b1, b2, ...`` for longer stages:
``res3b3``, ``res4b22``), with ``bn``/``scale`` in place of ``res`` for their BatchNorm and Scale
layers, and ``<head>_c0`` .. ``<head>_c3`` (e.g. ``fc1_voc12_c0``) for the ASPP branches.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .caffe import CaffeLayer, read_caffemodel

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


class WeightsMismatchError(ValueError):
    """A state dict does not fit the model: missing, unexpected or mis-shaped entries."""


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
            state[f"{module}.weight"] = blobs[0]
            if len(blobs) > 1:
                state[f"{module}.bias"] = blobs[1].flatten()
        elif kind == "bn":
            if len(blobs) < 3:
                raise WeightsMismatchError(
                    f"{source}: BatchNorm layer {name} has {len(blobs)} blobs, expected 3 "
                    "(mean*s, var*s, s)"
                )
            s = float(blobs[2].flatten()[0])
            factor = 0.0 if s == 0 else 1.0 / s
            state[f"{module}.running_mean"] = blobs[0].flatten() * factor
            state[f"{module}.running_var"] = blobs[1].flatten() * factor
        else:
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


def _checked(
    state: dict[str, torch.Tensor], source: str, backbone_only: bool
) -> tuple[dict[str, torch.Tensor], Optional[int]]:
    """Check ``state``; weights without an ASPP head (or ``backbone_only``) load as a backbone."""
    head = state.get("aspp.convs.0.weight")
    if backbone_only or head is None:
        state = {k: v for k, v in state.items() if not k.startswith("aspp.")}
        num_classes = None
    elif head.dim() != 4:
        raise WeightsMismatchError(
            f"{source}: aspp.convs.0.weight has shape {tuple(head.shape)}, expected "
            "(num_classes, 2048, 3, 3)"
        )
    else:
        num_classes = int(head.shape[0])
    check_state_dict(state, num_classes, source)
    return state, num_classes


def load_weights_file(
    path: str | os.PathLike, backbone_only: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read weights of any supported format -> ``(state dict, metadata)``.

    ``.safetensors`` (this library's files, metadata from the header), ``.pth``/``.pt`` (this
    library's keys or the PyTorch port's, read with ``torch.load(weights_only=True)``) and
    ``.caffemodel`` (the release's files, converted on the fly). The state dict is checked
    against the model; ``metadata["num_classes"]`` gives its class count (``"none"`` for
    backbone-only weights: files without an ASPP head, or any file with ``backbone_only``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown extension, an unreadable or corrupt file, or weights that do not fit.
    """
    path = os.fspath(path)
    source = os.path.basename(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no weights file at {path!r}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".caffemodel":
        _, layers = read_caffemodel(path)
        state, num_classes = caffe_to_state_dict(layers, source, backbone_only)
        return state, _metadata(num_classes, source)
    if suffix == ".safetensors":
        try:
            with safe_open(path, framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
                state = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as error:  # safetensors raises its own error types
            raise ValueError(
                f"{path}: not a readable safetensors file ({error}); the file is corrupt or "
                "truncated: delete it and download or convert it again"
            ) from None
        state, num_classes = _checked(state, source, backbone_only)
        return state, {**metadata, **_metadata(num_classes, source)}
    if suffix in (".pth", ".pt"):
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - pickle and zip errors alike
            raise ValueError(
                f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error}); "
                "the file is corrupt, truncated or holds more than tensors"
            ) from None
        if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path}: expected a state dict, found {type(loaded).__name__}")
        if all(key.startswith(("backbone.", "aspp.convs.")) for key in loaded):
            state = dict(loaded)
        else:
            state = peer_to_state_dict(loaded, source)
        state, num_classes = _checked(state, source, backbone_only)
        return state, _metadata(num_classes, source)
    raise ValueError(
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


def save_safetensors(
    state: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: Mapping[str, str],
    force: bool = False,
) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + rename), float32, contiguous.

    Raises:
        FileExistsError: ``path`` exists and ``force`` is false.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass force=True (CLI: --force) to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in state.items()}
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        save_file(tensors, tmp, metadata={"format": "pt", **metadata})
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def convert(
    src: str | os.PathLike, dst: str | os.PathLike, force: bool = False, backbone_only: bool = False
) -> tuple[Path, dict[str, str]]:
    """Convert a ``.caffemodel``, ``.pth`` or ``.safetensors`` file to this library's safetensors.

    The weights are checked against the model before anything is written; the output carries
    ``architecture``, ``num_classes``, ``source``, ``deeplabv2_version`` and
    ``conversion_version`` in its header. Returns the written path and its metadata.
    """
    if Path(dst).exists() and not force:
        raise FileExistsError(f"{dst} exists; pass force=True (CLI: --force) to overwrite it")
    state, metadata = load_weights_file(src, backbone_only=backbone_only)
    return save_safetensors(state, dst, metadata, force=force), metadata
