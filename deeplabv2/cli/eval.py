"""``deeplabv2 eval``: the scores (mIoU and co.) on a dataset (VOC format by default), in one
process or sharded across ``torchrun`` ranks (rank 0 prints and writes them)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from .._files import atomic_write_text, check_destination
from ..data.constants import DATASETS
from .options import add_options, build_segmenter, check, speed
from .values import int_in
from .vocabulary import add_classes_option

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``eval`` and its options."""
    parser = commands.add_parser("eval", help="mIoU on a dataset (VOC format by default)")
    parser.add_argument(
        "--data", required=True, metavar="ROOT", help="dataset root (e.g. VOCdevkit/VOC2012)"
    )
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default="voc",
        help="the dataset's layout: voc; coco (MS-COCO 2014 with 81 classes); folder (images/ "
        "+ labels/ + <split>.txt); cityscapes, gta5, synthia (split all: every image)",
    )
    add_classes_option(
        parser,
        None,
        "the dataset's own; cityscapes, gta5, synthia: cityscapes (19), cityscapes16 or "
        "cityscapes13 (the 16-class network averaged over 13), synthia's is cityscapes16",
    )
    parser.add_argument(
        "--split", default="val", metavar="NAME|FILE", help="split name or list file"
    )
    parser.add_argument(
        "--out", metavar="FILE", help="write the scores as JSON here (default: printed only)"
    )
    parser.add_argument(
        "--limit", type=int_in(1), metavar="N", help="only the first N images (default: all)"
    )
    parser.add_argument(
        "--strict-labels",
        action="store_true",
        help="fail on label values that are neither a class nor 255 (default: warn once)",
    )
    parser.add_argument(
        "--allow-seen-data",
        action="store_true",
        help="score weights on a split their lineage says they were trained on (default: refuse)",
    )
    add_options(parser)
    parser.set_defaults(run=run)


def _percent(value: Optional[float]) -> str:
    return "   n/a" if value is None else f"{100 * value:6.2f}"


def _print_scores(results: dict) -> None:
    names = results["per_class_iou"]
    width = max(len(n) for n in names)
    averaged = results.get("mean_over", names)
    for name, iou in names.items():
        left_out = "" if name in averaged else "  (not in the means)"
        print(f"{name:<{width}}  {_percent(iou)} %{left_out}")
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
        print(f"{key:<{width}}  {_percent(results[key])} %")


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 eval``; the exit code."""
    from ..data.classes import resolve_class_names
    from ..data.kinds import open_dataset
    from ..distributed import start, stop
    from ..evaluate import evaluate

    check(args)
    out = Path(args.out) if args.out else None
    if out is not None:
        check_destination(out, args.force)
    names = resolve_class_names(args.classes) if args.classes else ()
    dataset = open_dataset(args.dataset, args.data, args.split, class_names=names, limit=args.limit)
    ranks = start()
    try:
        device = ranks.device(args.device)
        results = evaluate(
            build_segmenter(args, device),
            dataset,
            progress=not args.quiet,
            strict_labels=args.strict_labels,
            ranks=ranks,
            skip_unreadable=True,  # reported, and the exit code is 1, as in predict
            allow_seen_data=args.allow_seen_data,
            **speed(args, device),
        )
        code = 1 if results["failed_images"] else 0
        if ranks.rank != 0:
            return code
        for failure in results["failed_images"]:
            print(f"deeplabv2 eval: skipped {failure}", file=sys.stderr)
        _print_scores(results)
        if out is not None:
            text = json.dumps(results, indent=2, allow_nan=False)
            atomic_write_text(out, text, force=args.force)
            print(f"wrote {out}")
        return code
    finally:
        stop(ranks)
