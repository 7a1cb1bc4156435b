"""``deeplabv2 convert``: a release or port file to this library's safetensors
(:func:`deeplabv2.convert`)."""

from __future__ import annotations

import argparse
import sys

from .options import add_model_option
from .vocabulary import add_classes_option, add_dialect_option, add_force_option

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``convert`` and its options."""
    parser = commands.add_parser("convert", help="convert .caffemodel/.pth to .safetensors")
    parser.add_argument("src", metavar="SRC", help="a .caffemodel, .pth/.pt or .safetensors file")
    parser.add_argument("dst", metavar="DST", help="the .safetensors file to write")
    add_force_option(parser)
    parser.add_argument(
        "--backbone-only",
        action="store_true",
        help="keep all but the head (e.g. the release's init.caffemodel)",
    )
    add_classes_option(parser, None, "the file's own, if it names them; else none recorded")
    add_model_option(parser, "the network (default: found from the file)")
    add_dialect_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 convert``; the exit code."""
    from ..conversion import convert
    from ..data.classes import CLASS_LISTS, resolve_class_names

    classes = resolve_class_names(args.classes) if args.classes else None
    path, metadata = convert(
        args.src,
        args.dst,
        model=args.model,
        backbone_only=args.backbone_only,
        classes=classes,
        dialect=args.dialect,
        force=args.force,
    )
    count = metadata["num_classes"]
    head = "backbone only" if count == "none" else f"{count} classes"
    print(f"wrote {path} ({metadata['architecture']}, {head}, from {metadata['source']})")
    if count != "none" and "classes" not in metadata:
        print(
            "note: the file names no classes, so none were recorded; pass --classes "
            f"{'|'.join(CLASS_LISTS)}|FILE to record them",
            file=sys.stderr,
        )
    return 0
