"""``deeplabv2 score``: the mIoU (and per-class IoU, precision, recall) of a folder of label maps,
predictions or pseudo-labels, against the ground truth; no model involved."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from .._files import atomic_write, check_destination
from ..scorings import MAX_DEFAULT_WORKERS, SCORINGS
from .values import int_in
from .vocabulary import add_classes_option, add_force_option, add_workers_option

if TYPE_CHECKING:
    from ..label_eval import ScoreResult

__all__ = ["add_parser", "run"]

_COLUMNS = (
    ("IoU", "per_class_iou"),
    ("prec.", "per_class_precision"),
    ("recall", "per_class_recall"),
)
_SUMMARY = (
    ("mean IoU", "mean_iou"),
    ("pixel accuracy", "pixel_accuracy"),
    ("mean accuracy", "mean_accuracy"),
    ("fw IoU", "fw_iou"),
)
_LISTED = 20  # skipped names printed (all are in the JSON)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``score`` and its options."""
    parser = commands.add_parser(
        "score",
        help="mIoU of a folder of label PNGs (predictions, pseudo-labels) against ground truth",
        description="Score label PNGs (<name>.png, palette or 8-bit grayscale) against the "
        "ground truth, three ways: pixels predicted as --ignore counted as wrong "
        "(ignored_as_wrong: SEAM's evaluation.py, the PSA family), as background "
        "(ignored_as_background: IRN's eval_sem_seg.py, CLIMS, AMN), or left out "
        "(confident_only). Ground-truth --ignore pixels are left out in all three.",
    )
    parser.add_argument("predictions", metavar="PRED_DIR", help="folder of predicted label PNGs")
    truth = parser.add_mutually_exclusive_group(required=True)
    truth.add_argument("--labels", metavar="DIR", help="folder of ground-truth label PNGs")
    truth.add_argument(
        "--data",
        metavar="ROOT",
        help="a VOC root (VOCdevkit/VOC2012): SegmentationClassAug/ or SegmentationClass/",
    )
    parser.add_argument(
        "--split",
        metavar="NAME|FILE",
        help="the images to score: a list file (names, or '<image> <label>' lines); with --data "
        "also a split name (train, val, trainaug). Default with --labels: every PNG there",
    )
    add_classes_option(parser, "voc")
    parser.add_argument(
        "--ignore", type=int_in(0, 65535), default=255, metavar="N",
        help="ignored / not-sure label value",
    )  # fmt: skip
    parser.add_argument(
        "--convention",
        choices=SCORINGS,
        default="ignored_as_wrong",
        help="the scoring printed first and saved as mean_iou at the top of --out's JSON: "
        "ignored_as_background to compare with IRN / CLIMS / AMN numbers, ignored_as_wrong "
        "with SEAM's",
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="score the images that have a prediction and list the others (default: error)",
    )
    add_workers_option(parser, "the label PNGs", f"the usable cores, at most {MAX_DEFAULT_WORKERS}")
    parser.add_argument(
        "--out", metavar="FILE", help="write the scores as JSON here (default: printed only)"
    )
    add_force_option(parser)
    parser.set_defaults(run=run)


def _percent(value: Optional[float]) -> str:
    return "   n/a" if value is None else f"{100 * value:6.2f}"


def _order(result: ScoreResult) -> tuple[str, ...]:
    """The scorings, the result's convention first."""
    return (result.convention, *(s for s in SCORINGS if s != result.convention))


def print_table(result: ScoreResult) -> None:
    """The per-class IoU, precision and recall, then the summary scores, the scorings side
    by side (the result's convention first)."""
    width = max(len(name) for name in (*result.class_names, *(s for s, _ in _SUMMARY)))
    block = len(_COLUMNS) * 7 - 1
    order = _order(result)
    print((" " * width + "".join(f"  {scoring:<{block}}" for scoring in order)).rstrip())
    header = " ".join(f"{title:>6}" for title, _ in _COLUMNS)
    print(f"{'class':<{width}}" + f"  {header}" * len(order))
    for name in result.class_names:
        cells = []
        for scoring in order:
            scores = result.scores[scoring]
            cells.append(" ".join(_percent(scores[key][name]) for _, key in _COLUMNS))
        print(f"{name:<{width}}" + "".join(f"  {cell}" for cell in cells))
    for title, key in _SUMMARY:
        row = "".join(f"  {_percent(result.scores[s][key]):<{block}}" for s in order).rstrip()
        print(f"{title:<{width}}{row}")


def _report(result: ScoreResult, predictions: str) -> None:
    """What was scored: images, the skipped ones, the share of ignored predictions."""
    print(f"scored {result.num_images} images of {predictions} (values in %)")
    if result.missing:
        shown = ", ".join(result.missing[:_LISTED])
        more = f" and {len(result.missing) - _LISTED} more" if len(result.missing) > _LISTED else ""
        print(
            f"deeplabv2 score: skipped {len(result.missing)} images without a prediction "
            f"(--skip-missing): {shown}{more}",
            file=sys.stderr,
        )
    print(
        f"predicted as ignored: {_percent(result.ignored_share).strip()} % of the scored pixels "
        f"(ground truth not ignored), {_percent(result.ignored_share_all).strip()} % of all"
    )
    print(
        "ignored predictions: misses (ignored_as_wrong), left out (confident_only), class 0 "
        "(ignored_as_background)"
    )
    print(f"mean IoU ({result.convention}): {_percent(result.mean_iou).strip()} %")


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 score``; the exit code."""
    from ..label_eval import score_folder

    out = Path(args.out) if args.out else None
    if out is not None:
        check_destination(out, args.force)
    result = score_folder(
        args.predictions,
        args.labels,
        data=args.data,
        split=args.split,
        classes=args.classes,
        ignore_index=args.ignore,
        skip_missing=args.skip_missing,
        workers=args.workers,
        convention=args.convention,
    )
    _report(result, args.predictions)
    print_table(result)
    if out is not None:
        data = {"predictions": args.predictions, "labels": args.labels or args.data}
        data.update(split=args.split, **result.to_dict())
        text = json.dumps(data, indent=2, allow_nan=False)
        atomic_write(out, lambda tmp: Path(tmp).write_text(text), force=args.force)
        print(f"wrote {out}")
    return 0
