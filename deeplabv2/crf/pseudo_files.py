"""Pseudo-labels for image files and their score files, as fast as the machine allows.

:func:`pseudo_label_files` streams :func:`~deeplabv2.crf.pseudo.pseudo_label` over many
images: on the CPU in ``workers`` processes (each loads one image and its scores and runs the CRF
on one thread: the ``numba`` backend when installed), on a GPU with the ``torch`` backend on
batches of images of one size. ``deeplabv2 crf`` writes what it yields.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import torch

from .._pools import run_jobs
from ..data.images import load_image
from .params import PseudoLabelRecipe
from .pseudo import PseudoLabel, check_image, pseudo_labels_batch
from .score_maps import Scores, load_scores
from .workers import one_thread

__all__ = ["FileResult", "PER_IMAGE_ERRORS", "pseudo_label_files"]

PathLike = Union[str, os.PathLike]

#: what spoils one image only (unreadable image or scores, bad values, sizes that differ): it
#: is reported in its :class:`FileResult`, and the others go on
PER_IMAGE_ERRORS = (ValueError, OSError)


@dataclass
class FileResult:
    """One image's outcome: ``index`` into the inputs, its pseudo-label or ``error``."""

    index: int
    label: Optional[PseudoLabel] = None
    error: Optional[BaseException] = None


@dataclass(frozen=True)
class _Job:
    """What a worker needs besides the file names (picklable)."""

    recipe: PseudoLabelRecipe
    backend: str
    min_confidence: float
    allow_pickle: bool
    max_pixels: Optional[int]

    def load(self, image: str, scores: str) -> tuple[np.ndarray, Scores]:
        """The image, then its scores: arrays larger than the image are refused unread."""
        rgb = load_image(image, max_pixels=self.max_pixels)
        return rgb, load_scores(scores, allow_pickle=self.allow_pickle, size=rgb.shape[:2])

    def run(
        self, images: list[np.ndarray], scores: list[Scores], names: list[str], **kw: Any
    ) -> list[PseudoLabel]:
        return pseudo_labels_batch(
            images, scores, self.recipe, backend=self.backend,
            min_confidence=self.min_confidence, names=names, **kw,
        )  # fmt: skip

    def one(self, image: str, scores: str) -> PseudoLabel:
        """One image, start to end."""
        rgb, score = self.load(image, scores)
        return self.run([rgb], [score], [image])[0]


def _one(job: _Job, image: str, scores: str) -> PseudoLabel:
    """Worker: one image, start to end, on one thread."""
    one_thread()
    return job.one(image, scores)


def _on_cpu(
    job: _Job, images: list[str], scores: list[str], indices: Sequence[int], workers: int
) -> Iterator[FileResult]:
    """Each image in a worker process (or here, with ``workers=0``)."""
    jobs = ((i, (job, images[i], scores[i])) for i in indices)
    here = _Job.one  # in this process: its threads as they are
    for i, label, error in run_jobs(_one, jobs, workers, PER_IMAGE_ERRORS, inline=here):
        yield FileResult(i, label=label, error=error)


def _on_device(
    job: _Job,
    images: list[str],
    scores: list[str],
    indices: Sequence[int],
    device: Union[str, torch.device],
    batch_size: int,
) -> Iterator[FileResult]:
    """Loaded here, the CRF on ``device`` for groups of ``batch_size`` images of one shape."""
    groups: dict[tuple, list[tuple[int, np.ndarray, Scores]]] = {}

    def run(group: list[tuple[int, np.ndarray, Scores]]) -> Iterator[FileResult]:
        chosen, rgbs, score_list = zip(*group)
        names = [images[i] for i in chosen]
        try:
            labels = job.run(list(rgbs), list(score_list), names, device=device,
                             batch_size=batch_size)  # fmt: skip
        except PER_IMAGE_ERRORS as error:
            if len(group) == 1:
                yield FileResult(chosen[0], error=error)
            for item in group if len(group) > 1 else ():  # find the image(s) that fail
                yield from run([item])
            return
        yield from (FileResult(i, label=label) for i, label in zip(chosen, labels))

    for i in indices:
        try:
            rgb, score = job.load(images[i], scores[i])
            check_image(rgb, score, images[i])
            key = (rgb.shape, score.values.shape, score.cams)
        except PER_IMAGE_ERRORS as error:
            yield FileResult(i, error=error)
            continue
        group = groups.setdefault(key, [])
        group.append((i, rgb, score))
        if len(group) >= batch_size:
            yield from run(groups.pop(key))
    for key in list(groups):
        yield from run(groups.pop(key))


def pseudo_label_files(
    images: Sequence[PathLike],
    scores: Sequence[PathLike],
    recipe: Optional[PseudoLabelRecipe] = None,
    *,
    indices: Optional[Sequence[int]] = None,
    backend: str = "auto",
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 8,
    workers: int = 0,
    min_confidence: float = 0.0,
    allow_pickle: bool = False,
    max_pixels: Optional[int] = None,
) -> Generator[FileResult, None, None]:
    """Pseudo-labels of ``images[i]`` with the scores in ``scores[i]`` for each ``i`` of
    ``indices`` (default: all); yields a :class:`FileResult` each, in the order they finish.

    Args:
        images: image files (any format :func:`~deeplabv2.data.images.load_image` reads).
        scores: their score files (:func:`~deeplabv2.crf.score_maps.load_scores` layouts).
        recipe: :class:`~deeplabv2.crf.PseudoLabelRecipe` (e.g. ``PSEUDO_LABEL_RECIPES["irn"]``;
            None: ``PseudoLabelRecipe()``, DeepLab's CRF on the scores as they are).
        indices: which images (e.g. this rank's shard).
        backend: the CRF backend; ``"auto"``: numba (else pydensecrf, torch) on the CPU, torch
            on a GPU.
        device: ``"cpu"``, or a GPU for the torch backend on batches.
        batch_size: on a GPU, images of one size and class count per CRF call.
        workers: on the CPU, processes running one image each (0: in this process).
        min_confidence: pixels whose refined probability is below this are 255.
        allow_pickle: read pickled score files (runs code from them; only for trusted files).
        max_pixels: refuse larger images.

    An image whose files cannot be read or do not fit (:data:`PER_IMAGE_ERRORS`) comes back with
    ``error`` set; anything else is raised. Close the generator (``contextlib.closing``) to stop
    the worker processes early.
    """
    if len(images) != len(scores):
        raise ValueError(f"{len(images)} images but {len(scores)} score files")
    if batch_size < 1 or workers < 0:
        raise ValueError(f"batch_size must be >= 1 and workers >= 0, got {batch_size}, {workers}")
    recipe = recipe if recipe is not None else PseudoLabelRecipe()
    job = _Job(recipe, backend, min_confidence, allow_pickle, max_pixels)
    images_, scores_ = [os.fspath(p) for p in images], [os.fspath(p) for p in scores]
    chosen = range(len(images_)) if indices is None else list(indices)
    if torch.device(device).type == "cpu":
        yield from _on_cpu(job, images_, scores_, chosen, workers)
    else:
        yield from _on_device(job, images_, scores_, chosen, device, batch_size)
