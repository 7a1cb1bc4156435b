"""Raw checkpoints converted for a family (:func:`convert_checkpoint`: what ``deeplabv2 convert``
writes), in this library's format (:mod:`deeplabv2.models._weights_file`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Optional

import torch

from ..protocol import EvalProtocol
from ..weights import Checkpoint
from ._builder import load_state
from ._mapping import check_state_dict, detect_architecture, expected_shapes
from ._registry import get_mapping
from ._weights_file import weights_metadata

__all__ = ["convert_checkpoint"]


def convert_checkpoint(
    checkpoint: Checkpoint,
    model: Optional[str] = None,
    *,
    backbone_only: bool = False,
    classes: Optional[Sequence[str]] = None,
    protocol: Optional[EvalProtocol] = None,
    dialect: Optional[str] = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Raw weights -> ``(state dict in this library's keys, safetensors header)``, checked
    strictly against the network (what ``deeplabv2 convert`` writes).

    Args:
        checkpoint: the file read by :func:`deeplabv2.weights.read_checkpoint`.
        model: the network (a builder name); default: found from the file.
        backbone_only: keep everything but the head.
        classes: the head's class names (their number must match the head).
        protocol: how the weights are evaluated; default: the file's own, or its format's.
        dialect: the code base a state dict comes from where its keys do not say it
            (``"adaptsegnet"``, ``"advent"``); its network variant is recorded in the header.

    Raises:
        WeightsMismatchError: the file does not fit the network.
        ValueError: class names for a backbone, or a wrong count of them.
    """
    mapping = get_mapping(model or detect_architecture(checkpoint))
    loaded = load_state(mapping, checkpoint, backbone_only=backbone_only, dialect=dialect)
    num_classes = loaded.num_classes
    expected = expected_shapes(mapping.architecture, num_classes or 1, loaded.model_args)
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
