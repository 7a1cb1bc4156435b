"""``deeplabv2 predict``: segment image files, write label PNGs (and overlays, probabilities).

Runs in one process or under ``torchrun`` (each rank on its own GPU, or the CPU, with its shard
of the images), batched, with decoding in worker processes and the outputs written in a pool
of threads beside the network (a bounded number of images at a time). An image that fails
(unreadable, too small or large, out of memory, its files not writable) is skipped and reported;
the run goes on.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from .._files import check_destination, check_writable
from ..errors import ImageError
from . import writers
from .options import add_options, build_segmenter, check, speed
from .values import int_in
from .write_pool import Outcome, WritePool, default_writers

if TYPE_CHECKING:
    import numpy as np

    from ..distributed import Ranks
    from ..pipeline import Result

__all__ = ["add_parser", "per_image_failure", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``predict`` and its options."""
    parser = commands.add_parser("predict", help="segment images, write label PNGs")
    parser.add_argument(
        "inputs", nargs="+", metavar="IMAGES", help="image files, or folders of image files"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--overlay", action="store_true", help="also write <name>_overlay.jpg")
    parser.add_argument("--probs", action="store_true", help="also write <name>_probs.npy")
    parser.add_argument(
        "--exif",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="turn each image as its EXIF orientation tag says, as a photo viewer shows it; "
        "the label PNGs are then in the turned grid. --no-exif keeps the stored pixel "
        "grid that datasets, crf, score, eval and training read: use it when the outputs will be "
        "paired with the image files (pseudo-labels, scoring against ground truth)",
    )
    parser.add_argument(
        "--writers",
        type=int_in(0),
        metavar="N",
        help="threads writing the outputs beside the network (0: in the main thread; default: 4)",
    )
    add_options(parser)
    parser.set_defaults(run=run)


def per_image_failure(error: BaseException) -> Optional[str]:
    """What to report for an error that spoils one image only; None for anything else."""
    import torch

    if isinstance(error, (ImageError, OSError)):
        return str(error)
    out_of_memory = isinstance(error, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(error, RuntimeError)
        and ("out of memory" in str(error) or "can't allocate memory" in str(error))
    )
    if out_of_memory:
        return "out of memory; try a smaller --tile-size, fewer scales (no --msc) or --device cpu"
    return None


class _Images:
    """``index -> (RGB, path)`` of the input files, for the decoding workers."""

    def __init__(self, paths: list[Path], max_pixels: Optional[int], exif: bool) -> None:
        self.paths, self.max_pixels, self.exif = paths, max_pixels, exif

    def __call__(self, index: int) -> tuple[np.ndarray, str]:
        from ..data.images import load_image

        path = self.paths[index]
        return load_image(path, exif=self.exif, max_pixels=self.max_pixels), str(path)


def _plan(args: argparse.Namespace) -> tuple[list[Path], Path, list[list[Path]]]:
    """The input files, the output folder and every input's output files, all checked before
    anything is loaded or written (so a run never stops half-way over an existing file)."""
    check(args)
    paths = writers.collect_images(args.inputs)
    if not paths:
        raise ValueError("no images found in the given files/folders")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; give a folder for the outputs")
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError("several inputs share a file name; their outputs would collide")
    outputs = [writers.output_paths(out, p.stem, args.overlay, args.probs) for p in paths]
    check_writable(out, folder=True)  # once for the folder, not once per file
    for files in outputs:  # every output is checked before any is written
        for file in files:
            check_destination(file, args.force, probe=False)
    return paths, out, outputs


def _write(result: Result, files: list[Path], args: argparse.Namespace) -> None:
    prediction, image = result.prediction, result.image
    # stream() gives a result without an error its prediction and the image it segmented
    assert prediction is not None and image is not None
    labels = prediction.labels.numpy()
    writers.save_labels(files[0], labels, args.force)
    if args.overlay:
        writers.save_overlay(files[1], image, labels, args.force)
    if args.probs:
        assert prediction.probs is not None  # _segment streams with return_probs=args.probs
        writers.save_probs(files[-1], prediction.probs.numpy(), args.force)


def _failure(path: Path, error: Outcome) -> Optional[str]:
    """What to report for one image's outcome (None: written); any error that does not spoil
    that image only is raised."""
    if error is None:
        return None
    reason = per_image_failure(error)
    if reason is None:
        raise error
    return reason if str(path) in reason else f"{path}: {reason}"


def _failures(paths: list[Path], outcomes: list[tuple[int, Outcome]]) -> list[str]:
    """What to report for the images whose writes (or earlier steps) failed."""
    reasons = [_failure(paths[index], outcome) for index, outcome in outcomes]
    return [reason for reason in reasons if reason is not None]


def _segment(
    args: argparse.Namespace, ranks: Ranks, paths: list[Path], outputs: list[list[Path]]
) -> list[str]:
    """Segment this rank's shard of ``paths`` and write the outputs (in a :class:`WritePool`
    beside the network); the failures, in the order the images came out of the network."""
    from tqdm import tqdm

    from ..distributed import check_peers
    from ..pipeline import stream

    device = ranks.device(args.device)
    segmenter = build_segmenter(args, device)
    indices = ranks.shard(len(paths))
    failures: list[str] = []
    pool: WritePool[int] = WritePool(default_writers() if args.writers is None else args.writers)
    with tqdm(
        total=len(indices), desc="predict", unit="image", disable=args.quiet or ranks.rank != 0
    ) as bar:
        results = stream(
            segmenter,
            _Images(paths, args.max_pixels, args.exif),
            indices,
            return_probs=args.probs,
            tolerant=(ImageError, OSError),
            on_network_error=lambda error: per_image_failure(error) is not None,
            progress=bar,
            **speed(args, device),
        )
        # leaving: the decoding and CRF workers stop at once, the writes not started are dropped
        with closing(results), pool:
            for result in results:
                check_peers(ranks)  # another rank failed: stop too
                index, error = result.index, result.error
                if error is None:  # the pool holds the image until it is written, no longer
                    finished = pool.submit(index, partial(_write, result, outputs[index], args))
                else:
                    _failure(paths[index], error)  # raised at once if not this image's only
                    finished = pool.done(index, error)
                failures += _failures(paths, finished)
            failures += _failures(paths, pool.finish())
    return failures


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 predict``; the exit code (1 if any image failed)."""
    from ..distributed import start, stop, total, wait_for_peers

    paths, out, outputs = _plan(args)
    ranks = start()
    try:
        wait_for_peers(ranks)  # no rank writes before every rank has checked
        failures = _segment(args, ranks, paths, outputs)
        for failure in failures:
            print(f"deeplabv2 predict: skipped {failure}", file=sys.stderr)
        failed = total(ranks, len(failures))
        if ranks.rank == 0:
            print(f"wrote {len(paths) - failed} of {len(paths)} segmentations to {out}")
        return 1 if failed else 0
    finally:
        stop(ranks)
