"""Conversion of release and port weights to this library's safetensors files (no Caffe):
:func:`convert` (also :func:`deeplabv2.convert`) and ``deeplabv2 convert``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

from ._files import check_destination
from .models import convert_checkpoint
from .protocol import EvalProtocol
from .weights import read_checkpoint, save_safetensors

__all__ = ["convert"]


def convert(
    src: Union[str, os.PathLike],
    dst: Union[str, os.PathLike],
    *,
    model: Optional[str] = None,
    backbone_only: bool = False,
    classes: Optional[Sequence[str]] = None,
    protocol: Optional[EvalProtocol] = None,
    dialect: Optional[str] = None,
    force: bool = False,
) -> tuple[Path, dict[str, str]]:
    """Convert a ``.caffemodel``, ``.pth`` or ``.safetensors`` file to this library's format.

    Args:
        src: the release's ``.caffemodel``, a PyTorch-port or own ``.pth``, or a safetensors.
        dst: the ``.safetensors`` file to write (checked before ``src`` is read).
        model: the network (a builder name); default: found from the file's metadata, layer
            names or keys.
        backbone_only: keep everything but the head (an initialisation such as the release's
            ``init.caffemodel``, or the port's ``deeplabv1_resnet101-coco.pth``).
        classes: the head's class names, for files that do not name them (Caffe and ``.pth``
            files never do); their number must match the head.
        protocol: how the weights are evaluated; default: the file's own, or what its format
            says (Caffe files: the release's protocol; the port's files: the port's).
        dialect: the code base of a ``.pth`` whose keys do not say it (``"adaptsegnet"``,
            ``"advent"``: docs/uda.md); the file's network variant and protocol are recorded.
        force: overwrite ``dst``.

    Returns:
        The written path and its header metadata (``architecture``, ``num_classes``,
        ``classes``, ``protocol``, ``source``, versions).
    """
    check_destination(dst, force, suffix=".safetensors")
    checkpoint = read_checkpoint(src)
    state, metadata = convert_checkpoint(
        checkpoint,
        model,
        backbone_only=backbone_only,
        classes=classes,
        protocol=protocol,
        dialect=dialect,
    )
    return save_safetensors(state, dst, metadata, force=force), metadata
