"""``deeplabv2 coco-masks``: COCO 2014 label PNGs (81 classes) from an instances file.

Reads ``instances_train2014.json`` or ``instances_val2014.json`` and writes, for each of its
images, ``<file_name stem>.png`` in ``--out``: an 8-bit grayscale PNG of class indices, 0 the
background and 1..80 COCO's categories in ascending id order, made as ReCAM's ``annToMask.py``
makes them (:mod:`deeplabv2.data.coco_masks`); :class:`~deeplabv2.data.COCO2014` reads the
folder as its ``label_dir``. Resumable (images whose PNG exists are skipped unless ``--force``)
and parallel (``--workers`` processes).
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from .._files import atomic_write, check_writable
from .values import int_in
from .vocabulary import add_force_option, add_quiet_option, add_workers_option

if TYPE_CHECKING:
    import numpy as np

    from ..data.coco_masks import CocoInstances

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``coco-masks`` and its options."""
    parser = commands.add_parser(
        "coco-masks",
        help="COCO 2014 label PNGs (81 classes, as the WSSS papers use) from instances_*.json",
    )
    parser.add_argument(
        "instances",
        metavar="INSTANCES",
        help="COCO's instances_train2014.json or instances_val2014.json (needs pycocotools: "
        'pip install "deeplabv2[coco]")',
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder of the label PNGs (<stem>.png); images whose PNG is there already are "
        "skipped (a stopped run resumes), unless --force",
    )
    parser.add_argument(
        "--images",
        metavar="DIR",
        help="the split's image folder (e.g. train2014/): check that each image is there and "
        "has the JSON's size (headers only). Without it no image is read: the sizes are the "
        "JSON's",
    )
    add_workers_option(parser, "the instances' masks", "one per usable core")
    parser.add_argument(
        "--max-pixels",
        type=int_in(1),
        metavar="N",
        help="refuse larger images (by the JSON's size; default: no limit)",
    )
    add_force_option(parser)
    add_quiet_option(parser)
    parser.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    """The folders, before the (large) JSON is read."""
    if not os.path.isfile(args.instances):
        raise FileNotFoundError(f"no instances file {args.instances}")
    if args.images is not None and not os.path.isdir(args.images):
        raise NotADirectoryError(f"--images {args.images} is not a folder")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise NotADirectoryError(f"--out {args.out} is a file; give a folder for the labels")
    if args.images is not None:
        out, images = Path(args.out).resolve(), Path(args.images).resolve()
        if out == images or images in out.parents:
            raise ValueError(
                f"--out {args.out} is --images {args.images} or inside it: the labels would be "
                "written among the images; give another folder"
            )
    check_writable(args.out, folder=True)


def _workers(requested: Optional[int], todo: int) -> int:
    """Processes: as asked (never more than the images to do), by default one per usable
    core; none where that is one."""
    if requested is not None:
        return min(requested, todo)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = min(cores or 1, todo)
    return count if count > 1 else 0


def _save(path: Path, labels: np.ndarray, force: bool) -> None:
    """``(H, W) uint8`` class indices as an 8-bit grayscale PNG (what ReCAM's script writes)."""
    from PIL import Image

    image = Image.fromarray(labels)  # (H, W) uint8: mode L
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"), force=force)


def _make(args: argparse.Namespace, instances: CocoInstances, todo: list[int]) -> list[str]:
    """Make and write the labels of the images ``todo``; the failures."""
    from tqdm import tqdm

    from ..data.coco_masks import coco_label_maps

    out, failures = Path(args.out), []
    results = coco_label_maps(
        instances, todo, images_dir=args.images, workers=_workers(args.workers, len(todo)),
        max_pixels=args.max_pixels,
    )  # fmt: skip
    bar = tqdm(total=len(todo), desc="coco-masks", unit="image", disable=args.quiet)
    with bar, closing(results):  # an error or Ctrl-C stops the workers at once
        for result in results:
            bar.update(1)
            if result.error is not None:
                failures.append(str(result.error))
                continue
            assert result.labels is not None  # a MaskResult without an error has its labels
            _save(out / f"{instances.images[result.index].stem}.png", result.labels, args.force)
    return failures


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 coco-masks``; the exit code (1 if any image failed)."""
    from ..data.coco_masks import load_instances, mask_api

    _check(args)
    mask_api()  # a missing pycocotools says so before the JSON is read
    if not args.quiet:  # COCO's train2014 file takes a while to read
        print(f"deeplabv2 coco-masks: reading {args.instances}", file=sys.stderr)
    instances = load_instances(args.instances)
    out = Path(args.out)
    todo = [
        i
        for i, image in enumerate(instances.images)
        if args.force or not (out / f"{image.stem}.png").exists()
    ]
    failures = _make(args, instances, todo) if todo else []
    for failure in failures:
        print(f"deeplabv2 coco-masks: skipped {failure}", file=sys.stderr)
    done = len(instances.images) - len(todo)
    print(
        f"wrote {len(todo) - len(failures)} label PNGs to {args.out}"
        + (f" ({done} already there)" if done else "")
        + (f"; {len(failures)} failed" if failures else "")
    )
    return 1 if failures else 0
