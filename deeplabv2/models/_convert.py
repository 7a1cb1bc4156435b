"""Writing weights in this library's format: the safetensors header that makes a file load
back as it was (:func:`weights_metadata`), a model's own weights (:func:`save_weights`) and
raw checkpoints converted for a family (:func:`convert_checkpoint`)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional, Union

import torch

from ..protocol import EvalProtocol, PretrainedInfo
from ..version import __version__
from ..weights import Checkpoint, save_safetensors
from ._builder import load_state
from ._mapping import check_state_dict, detect_architecture, expected_shapes
from ._registry import get_mapping

if TYPE_CHECKING:
    from ._base import DeepLabBase

__all__ = ["CONVERSION_VERSION", "convert_checkpoint", "save_weights", "weights_metadata"]

#: Bumped whenever converted files change; stored in every written file's header.
CONVERSION_VERSION = "2"


def convert_checkpoint(
    checkpoint: Checkpoint,
    model: Optional[str] = None,
    *,
    backbone_only: bool = False,
    classes: Optional[Sequence[str]] = None,
    protocol: Optional[EvalProtocol] = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Raw weights -> ``(state dict in this library's keys, safetensors header)``, checked
    strictly against the network (what ``deeplabv2 convert`` writes).

    Args:
        checkpoint: the file read by :func:`deeplabv2.weights.read_checkpoint`.
        model: the network (a builder name); default: found from the file.
        backbone_only: keep everything but the head.
        classes: the head's class names (their number must match the head).
        protocol: how the weights are evaluated; default: the file's own, or its format's.

    Raises:
        WeightsMismatchError: the file does not fit the network.
        ValueError: class names for a backbone, or a wrong count of them.
    """
    mapping = get_mapping(model or detect_architecture(checkpoint))
    loaded = load_state(mapping, checkpoint, backbone_only=backbone_only)
    num_classes = loaded.num_classes
    expected = expected_shapes(mapping.architecture, num_classes or 1)
    if num_classes is None:
        expected = {k: v for k, v in expected.items() if not mapping.is_head(k)}
    target = mapping.architecture + (
        f" with {num_classes} classes" if num_classes else " (backbone)"
    )
    check_state_dict(loaded.state, expected, checkpoint.source, target)
    names = tuple(classes) if classes is not None else loaded.info.classes
    if num_classes is None and names:
        raise ValueError("a backbone-only file has no head to name classes of; drop --classes")
    if protocol is None or num_classes is None:
        protocol = loaded.info.protocol
    info = replace(loaded.info, classes=names, protocol=protocol)
    metadata = weights_metadata(mapping.architecture, num_classes, info, loaded.model_args)
    return loaded.state, metadata


def weights_metadata(
    architecture: Optional[str],
    num_classes: Optional[int],
    info: PretrainedInfo,
    model_args: Optional[Mapping[str, Any]] = None,
) -> dict[str, str]:
    """The safetensors header of a file this library writes (all values are strings): the
    architecture (left out for a custom network that no builder makes), the class count and
    names, the source, the test protocol, the lineage and warning, the network's non-default
    constructor arguments and the versions that wrote it.
    """
    if architecture is not None:
        get_mapping(architecture)  # a ValueError naming the known ones
    metadata = {} if architecture is None else {"architecture": architecture}
    metadata |= {
        "num_classes": "none" if num_classes is None else str(num_classes),
        "source": info.source or "deeplabv2",
        "deeplabv2_version": __version__,
        "conversion_version": CONVERSION_VERSION,
    }
    if info.classes:
        if num_classes is not None and len(info.classes) != num_classes:
            raise ValueError(f"{len(info.classes)} class names for a head of {num_classes} classes")
        metadata["classes"] = json.dumps(list(info.classes))
    if info.protocol is not None:
        metadata["protocol"] = json.dumps(info.protocol.as_dict())
    if info.lineage:
        metadata["lineage"] = json.dumps(list(info.lineage))
    if info.warning:
        metadata["warning"] = info.warning
    if model_args:
        metadata["model_args"] = json.dumps(dict(model_args))
    return metadata


def save_weights(
    model: DeepLabBase, path: Union[str, os.PathLike], *, force: bool = False, source: str = ""
) -> os.PathLike:
    """Write a model's weights to a ``.safetensors`` file that loads back as it is.

    The header records the architecture (when a builder makes the network), the class count
    and names, the test protocol, lineage and warning (``model.pretrained_info``) and the network's
    constructor arguments, so ``<builder>(pretrained=path)`` restores the same network,
    ``class_names`` and protocol. Written atomically; an existing file only with ``force``.
    """
    info = getattr(model, "pretrained_info", None) or PretrainedInfo()
    info = replace(
        info,
        source=source or info.source or "deeplabv2",
        classes=tuple(getattr(model, "class_names", ())),
    )
    metadata = weights_metadata(
        getattr(model, "architecture", None),
        int(model.num_classes),
        info,
        getattr(model, "model_args", None),
    )
    return save_safetensors(model.state_dict(), path, metadata, force=force)
