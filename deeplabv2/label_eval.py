"""Scoring folders of label maps without a model: predictions or pseudo-labels against ground
truth, with :class:`~deeplabv2.metrics.ConfusionMatrix`, read by several processes.

Pseudo-labels mark the pixels they are not sure of with the ignore value (255): every result is
given three ways (:data:`SCORINGS`), with the share of ignored pixels:

* ``ignored_as_wrong``: such a pixel is a miss of its ground-truth class (SEAM's
  ``evaluation.py``, the evaluator of the PSA family: a 255 adds to the ground-truth class's
  pixels and to no prediction);
* ``ignored_as_background``: such a pixel is a prediction of class 0 (IRN's
  ``step/eval_sem_seg.py``, copied by CLIMS and AMN: ``cls_labels[cls_labels == 255] = 0``
  before chainercv's confusion);
* ``confident_only``: only the other pixels are scored (how good the confident pixels are).

The ground truth's ignore value is left out in all three, as chainercv and SEAM do.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from ._pools import finished, process_pool, stop
from .data.classes import resolve_class_names, scored_within
from .data.images import read_label
from .data.paired import read_lines
from .data.voc import VOCSegmentation
from .errors import DatasetError, LabelError
from .metrics import ConfusionMatrix
from .scorings import MAX_DEFAULT_WORKERS, SCORINGS

__all__ = ["MAX_DEFAULT_WORKERS", "SCORINGS", "ScoreResult", "default_workers", "score_folder"]

PathLike = Union[str, os.PathLike]
_SHOWN = 5  # missing files named in an error


@dataclass(frozen=True)
class ScoreResult:
    """What :func:`score_folder` found.

    Attributes:
        scores: per scoring (:data:`SCORINGS`) the dict of
            :meth:`ConfusionMatrix.scores <deeplabv2.metrics.ConfusionMatrix.scores>`
            (``mean_iou``, ``per_class_iou``, ``per_class_precision``, ...).
        class_names: the classes, in label order.
        num_images: the images scored.
        missing: the names whose prediction was missing (skipped with ``skip_missing``).
        ignored_share: the share of scored pixels (ground truth not ignored) predicted as
            ignored; None when no pixel was scored.
        ignored_share_all: the share of all prediction pixels that hold the ignore value.
        matrix: the accumulated confusion matrix (with its ``unsure`` counts).
        convention: the scoring whose mean IoU is :attr:`mean_iou` (one of :data:`SCORINGS`).
    """

    scores: dict
    class_names: tuple[str, ...]
    num_images: int
    missing: tuple[str, ...]
    ignored_share: Optional[float]
    ignored_share_all: Optional[float]
    matrix: ConfusionMatrix = field(repr=False, compare=False)
    convention: str = "ignored_as_wrong"

    @property
    def mean_iou(self) -> Optional[float]:
        """The mean IoU of the chosen :attr:`convention`."""
        return self.scores[self.convention]["mean_iou"]

    def to_dict(self) -> dict:
        """The result as JSON-ready data (no NaN: undefined scores are None); ``mean_iou`` is
        the :attr:`convention`'s."""
        return {
            "convention": self.convention,
            "mean_iou": self.mean_iou,
            "classes": list(self.class_names),
            "ignore_index": self.matrix.ignore_index,
            "num_images": self.num_images,
            "num_missing": len(self.missing),
            "missing": list(self.missing),
            "ignored_share": self.ignored_share,
            "ignored_share_all_pixels": self.ignored_share_all,
            "scores": self.scores,
        }


def _usable_cores() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


def default_workers() -> int:
    """The reading processes used by default: the usable cores, at most
    :data:`MAX_DEFAULT_WORKERS`."""
    return min(MAX_DEFAULT_WORKERS, _usable_cores())


def _names_in_split(split: PathLike) -> list[str]:
    """The names a list file gives: ``<name>`` lines, or the DeepLab release's
    ``/JPEGImages/<name>.jpg /SegmentationClassAug/<name>.png`` lines (the label's name)."""
    path = Path(split)
    if not path.is_file():
        raise FileNotFoundError(
            f"--split {split}: no such list file (one name per line, or '<image> <label>' "
            "lines); with a VOC root, pass it as --data ROOT and a split name"
        )
    names: list[str] = []
    for number, line in enumerate(read_lines(path), 1):
        parts = line.split()
        if len(parts) == 2 and parts[1].lower().endswith(".png"):  # '<image> <label>'
            names.append(Path(parts[1]).stem)
            continue
        name = line[: -len(".png")] if line.lower().endswith(".png") else line
        if name in (".", "..") or "/" in name or "\\" in name or os.path.isabs(name):
            raise DatasetError(
                f"{path}, line {number}: {line!r} is not a file name; a list names the files "
                "inside the predictions and labels folders (no folders, '..' or absolute paths)"
            )
        names.append(name)
    if not names:
        raise DatasetError(f"{path} lists no images")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DatasetError(
            f"{path} lists {_listed(repeated, 'name(s)')} more than once: each image would be "
            "scored that many times; remove the repeated lines"
        )
    return names


def _references(
    labels: Optional[PathLike], data: Optional[PathLike], split: Optional[str]
) -> list[tuple[str, Path]]:
    """``(name, ground-truth file)`` of every image to score."""
    if (labels is None) == (data is None):
        given = "both" if data is not None else "neither"
        raise ValueError(
            f"the ground truth is a labels folder (--labels) or a VOC root (--data); {given} given"
        )
    if data is not None:
        if split is None:
            raise ValueError(
                "a VOC root needs a split: --split train (val, trainaug, or a list file)"
            )
        return [(name, label) for name, _, label in VOCSegmentation(data, split).items]
    assert labels is not None  # one of the two, checked above
    folder = Path(labels)
    if not folder.is_dir():
        raise FileNotFoundError(f"the ground-truth folder {folder} does not exist")
    if split is not None:
        return [(name, folder / f"{name}.png") for name in _names_in_split(split)]
    found = [(path.stem, path) for path in sorted(folder.glob("*.png"))]
    if not found:
        raise DatasetError(f"{folder} holds no .png label maps")
    return found


def _listed(names: Sequence[str], what: str) -> str:
    shown = ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")
    return f"{len(names)} {what} ({shown})"


def _pairs(
    predictions: Path, references: list[tuple[str, Path]], skip_missing: bool
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """The ``(prediction, ground truth)`` files to score and the names without a prediction."""
    if not predictions.is_dir():
        raise FileNotFoundError(f"the predictions folder {predictions} does not exist")
    no_truth = [str(label) for _, label in references if not label.is_file()]
    if no_truth:
        raise FileNotFoundError(
            f"{_listed(no_truth, 'ground-truth files are missing')}: check the labels folder "
            "(--labels / --data) and the names in --split"
        )
    pairs, missing = [], []
    for name, label in references:
        prediction = predictions / f"{name}.png"
        if prediction.is_file():
            pairs.append((prediction, label))
        else:
            missing.append(name)
    if missing and not skip_missing:
        raise FileNotFoundError(
            f"{_listed(missing, f'of {len(references)} predictions are missing')} in "
            f"{predictions}: score a subset with --split LIST, or pass --skip-missing "
            "(skip_missing=True) to score the others and list these"
        )
    if not pairs:
        raise FileNotFoundError(f"no prediction of the {len(references)} images in {predictions}")
    return pairs, missing


def _check_values(labels: np.ndarray, path: Path, what: str, num_classes: int, ignore: int) -> int:
    """Refuse values that are neither a class nor ``ignore``; the pixels holding ``ignore``."""
    if labels.min(initial=0) < 0:  # 32-bit PNGs may hold them
        raise LabelError(f"{path}: the {what} holds negative values; labels are 0..{ignore}")
    counts = np.bincount(labels.ravel(), minlength=max(num_classes, ignore + 1))
    bad = [int(v) for v in np.flatnonzero(counts) if v >= num_classes and v != ignore]
    if bad:
        shown = ", ".join(str(v) for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise LabelError(
            f"{path}: the {what} holds {int(counts[bad].sum())} pixels of values outside the "
            f"{num_classes} classes (0..{num_classes - 1}) and {ignore} (ignore): {shown}; "
            "check --classes (the class list) and --ignore, or the file"
        )
    return int(counts[ignore])


def _score_chunk(
    pairs: Sequence[tuple[Path, Path]], num_classes: int, ignore: int
) -> tuple[ConfusionMatrix, int, int]:
    """Worker: the confusion matrix of some pairs, the prediction pixels holding ``ignore``
    and the prediction pixels in all."""
    matrix = ConfusionMatrix(num_classes, ignore, strict=True, allow_unsure=True)
    unsure = pixels = 0
    for prediction_file, label_file in pairs:
        prediction, truth = read_label(prediction_file), read_label(label_file)
        if prediction.shape != truth.shape:
            raise DatasetError(
                f"{prediction_file} is {prediction.shape[1]}x{prediction.shape[0]} (WxH) but its "
                f"ground truth {label_file} is {truth.shape[1]}x{truth.shape[0]}; predictions "
                "must be at the labels' size"
            )
        unsure += _check_values(prediction, prediction_file, "prediction", num_classes, ignore)
        _check_values(truth, label_file, "ground truth", num_classes, ignore)
        matrix.update(prediction, truth)
        pixels += prediction.size
    return matrix, unsure, pixels


def _worker_start() -> None:
    """Reading worker start: one thread each; Ctrl-C is the parent's to handle, SIGTERM ends
    the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the command line's handler, if forked
    torch.set_num_threads(1)


def _chunks(items: Sequence, workers: int) -> list[Sequence]:
    """About eight chunks per worker (of at most 64 items), for an even load."""
    size = max(1, min(64, math.ceil(len(items) / (8 * workers))))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _map(task: Callable, chunks: list[Sequence], workers: int) -> Iterator:
    """``task`` over ``chunks``, in this process (one worker) or in ``workers`` processes
    (forked on Linux, spawned elsewhere; they end with this process); one torch thread each."""
    if workers <= 1 or len(chunks) <= 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small per-image operations: threads only contend
        try:
            yield from map(task, chunks)
        finally:
            torch.set_num_threads(threads)
        return
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    pool = process_pool(min(workers, len(chunks)), method, _worker_start)
    try:
        for job in [pool.submit(task, chunk) for chunk in chunks]:
            yield finished(pool, job).result()
    except BaseException:  # an error, an interrupt, or the caller stopped early
        stop(pool, abort=True)
        raise
    stop(pool)


def _share(part: int, whole: int) -> Optional[float]:
    return part / whole if whole else None


def _class_names(classes: Union[str, Iterable[str]]) -> tuple[str, ...]:
    return resolve_class_names(classes) if isinstance(classes, str) else tuple(classes)


def score_folder(
    predictions: PathLike,
    labels: Optional[PathLike] = None,
    *,
    data: Optional[PathLike] = None,
    split: Optional[str] = None,
    classes: Union[str, Iterable[str]] = "voc",
    ignore_index: int = 255,
    skip_missing: bool = False,
    workers: Optional[int] = None,
    convention: str = "ignored_as_wrong",
) -> ScoreResult:
    """Score a folder of label PNGs (``<name>.png``: palette or 8-bit grayscale class indices,
    ``ignore_index`` = ignored or "not sure") against the ground truth.

    The images scored are those of ``split`` (a list file of names, or of the DeepLab
    release's ``<image> <label>`` lines; with ``data``, a VOC split name), else every
    ``.png`` in ``labels``.

    Args:
        predictions: the folder of predicted labels or pseudo-labels.
        labels: the ground-truth folder; or ``data``: a VOC root (``VOCdevkit/VOC2012``),
            whose ``SegmentationClassAug/`` (else ``SegmentationClass/``) is read.
        split: the images to score (required with ``data``).
        classes: ``"voc"``, ``"cocostuff"``, a class-list file, or the names themselves;
            ``"cityscapes13"`` scores labels of the 16 classes and averages over 13 of them
            (:func:`~deeplabv2.data.classes.scored_within`), as ``eval`` does.
        ignore_index: the label of ignored ground truth and unsure predictions.
        skip_missing: score the images that have a prediction and list the others
            (default: a missing prediction is an error).
        workers: reading processes (default :func:`default_workers`; 1: this process).
        convention: the scoring (:data:`SCORINGS`) whose mean IoU is the result's
            :attr:`~ScoreResult.mean_iou`; all are computed.

    Raises:
        FileNotFoundError: a missing folder, ground-truth file or (unless ``skip_missing``)
            prediction; the message names them.
        DatasetError: a prediction whose size is not its ground truth's (both named).
        LabelError: a value that is neither a class nor ``ignore_index`` (file named).
        ImageError: a file that is not a label map (RGB, unreadable).
    """
    if convention not in SCORINGS:
        raise ValueError(f"convention {convention!r} is not one of {', '.join(SCORINGS)}")
    names, mean_over = scored_within(_class_names(classes))
    if not names:
        raise ValueError("classes: no class names given")
    if not 0 <= ignore_index <= 65535 or ignore_index < len(names):
        raise ValueError(
            f"ignore index {ignore_index} must be a label value (<= 65535) that is not one of "
            f"the {len(names)} classes (0..{len(names) - 1})"
        )
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers > _usable_cores():
        warnings.warn(
            f"workers={workers} lowered to the {_usable_cores()} usable cores (more reading "
            "processes than cores only add start-up time)",
            stacklevel=2,
        )
        workers = _usable_cores()
    pairs, missing = _pairs(Path(predictions), _references(labels, data, split), skip_missing)
    task = functools.partial(_score_chunk, num_classes=len(names), ignore=ignore_index)
    matrix = ConfusionMatrix(len(names), ignore_index, strict=True, allow_unsure=True)
    unsure = pixels = 0
    for part, part_unsure, part_pixels in _map(task, _chunks(pairs, workers), workers):
        matrix.merge(part)
        unsure, pixels = unsure + part_unsure, pixels + part_pixels
    scores = {
        "ignored_as_wrong": matrix.scores(names, mean_over=mean_over),
        "confident_only": matrix.scores(names, confident_only=True, mean_over=mean_over),
        "ignored_as_background": matrix.scores(names, unsure_as=0, mean_over=mean_over),
    }
    scored = scores["ignored_as_wrong"]["num_pixels"]
    if scored == 0:
        warnings.warn(
            f"no labelled pixel in the {len(pairs)} ground-truth image(s): every pixel is "
            f"{ignore_index} (ignored), so the scores are undefined (null)",
            stacklevel=2,
        )
    return ScoreResult(
        scores=scores,
        class_names=names,
        num_images=len(pairs),
        missing=tuple(missing),
        ignored_share=_share(int(matrix.unsure.sum()), scored),
        ignored_share_all=_share(unsure, pixels),
        matrix=matrix,
        convention=convention,
    )
