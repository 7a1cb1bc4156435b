"""Conversion of release and port weights to this library's safetensors files (no Caffe):
:func:`convert` (also :func:`deeplabv2.convert`) and ``deeplabv2 convert``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

from ..data.classes import resolve_class_names
from ..models._builder import load_state, weights_metadata
from ..models._checkpoint import MAPPINGS, check_state_dict, detect_architecture, expected_shapes
from ..weights import EvalProtocol, read_checkpoint, save_safetensors
from ..weights.files import check_destination
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
    architecture = model or detect_architecture(checkpoint)
    if architecture not in MAPPINGS:
        raise ValueError(f"unknown model {architecture!r}; known: {', '.join(MAPPINGS)}")
    mapping = MAPPINGS[architecture]
    state, info = load_state(mapping, checkpoint, backbone_only=backbone_only)
    num_classes = info["num_classes"]
    expected = expected_shapes(architecture, num_classes or 1)
    if num_classes is None:
        expected = {k: v for k, v in expected.items() if not mapping.is_head(k)}
    target = f"{architecture}" + (f" with {num_classes} classes" if num_classes else " (backbone)")
    check_state_dict(state, expected, checkpoint.source, target)
    names = tuple(classes) if classes is not None else info["categories"]
    if num_classes is None and names:
        raise ValueError("a backbone-only file has no head to name classes of; drop --classes")
    if protocol is not None and num_classes is not None:
        info["protocol"] = protocol.as_dict()
    metadata = weights_metadata(architecture, num_classes, info["source"], names, info["protocol"])
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
