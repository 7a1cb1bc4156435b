"""Conversion of release and port weights to this library's safetensors files (no Caffe):
:func:`convert` (also :func:`deeplabv2.convert`) and ``deeplabv2 convert``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

from .._files import check_destination
from ..data.classes import resolve_class_names
from ..models import convert_checkpoint
from ..protocol import EvalProtocol
from ..weights import read_checkpoint, save_safetensors
from .options import add_model_option

__all__ = ["add_parser", "convert", "run"]


def convert(
    src: Union[str, os.PathLike],
    dst: Union[str, os.PathLike],
    *,
    model: Optional[str] = None,
    backbone_only: bool = False,
    classes: Optional[Sequence[str]] = None,
    protocol: Optional[EvalProtocol] = None,
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
        force: overwrite ``dst``.

    Returns:
        The written path and its header metadata (``architecture``, ``num_classes``,
        ``classes``, ``protocol``, ``source``, versions).
    """
    check_destination(dst, force, suffix=".safetensors")
    checkpoint = read_checkpoint(src)
    state, metadata = convert_checkpoint(
        checkpoint, model, backbone_only=backbone_only, classes=classes, protocol=protocol
    )
    return save_safetensors(state, dst, metadata, force=force), metadata


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``convert`` and its options."""
    parser = commands.add_parser("convert", help="convert .caffemodel/.pth to .safetensors")
    parser.add_argument("src", help="a .caffemodel, .pth/.pt or .safetensors file")
    parser.add_argument("dst", help="the .safetensors file to write")
    parser.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    parser.add_argument(
        "--backbone-only",
        action="store_true",
        help="keep all but the head (e.g. the release's init.caffemodel)",
    )
    parser.add_argument(
        "--classes", help="class names of the head: voc, cocostuff or a file (one per line)"
    )
    add_model_option(parser, "the network (default: found from the file)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 convert``; the exit code."""
    classes = resolve_class_names(args.classes) if args.classes else None
    path, metadata = convert(
        args.src,
        args.dst,
        model=args.model,
        backbone_only=args.backbone_only,
        classes=classes,
        force=args.force,
    )
    count = metadata["num_classes"]
    head = "backbone only" if count == "none" else f"{count} classes"
    print(f"wrote {path} ({metadata['architecture']}, {head}, from {metadata['source']})")
    if count != "none" and "classes" not in metadata:
        print(
            "note: the file names no classes, so none were recorded; pass --classes "
            "voc|cocostuff|FILE to record them",
            file=sys.stderr,
        )
    return 0
