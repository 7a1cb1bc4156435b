"""Evaluation on a segmentation dataset, in one process or sharded across ``torchrun`` ranks."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

import numpy as np
from tqdm import tqdm

from .data.classes import VOC_CLASSES
from .distributed import Ranks
from .errors import DatasetError, LabelError
from .metrics import ConfusionMatrix
from .pipeline import Result, default_crf_workers, stream
from .segmenter import Segmenter

__all__ = ["evaluate"]


class _Pairs:
    """``index -> (image, (label, name))`` of a dataset, for the decoding workers."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(self, index: int) -> tuple[np.ndarray, tuple[np.ndarray, str]]:
        image, label, name = self.dataset[index]
        return image, (label, name)


def _update(matrix: ConfusionMatrix, results: Iterable[Result]) -> None:
    """Add each result's labels to ``matrix``; an invalid label names its image."""
    for result in results:
        label, name = result.extra
        try:
            matrix.update(result.prediction.labels, label)
        except LabelError as error:
            raise LabelError(f"{name}: {error}") from None


def _warn_if_trained_on(model: Any, dataset: Any) -> None:
    """Loudly warn when weights trained on VOC val are evaluated on a val split."""
    info = getattr(model, "pretrained_info", None)
    split = Path(str(getattr(dataset, "split", ""))).stem
    if info is not None and info.warning and "val" in split:
        warnings.warn(f"WARNING: {info.name or info.source}: {info.warning}", stacklevel=3)


def evaluate(
    segmenter: Segmenter,
    dataset: Any,
    *,
    batch_size: int = 1,
    workers: int = 0,
    crf_workers: Optional[int] = None,
    progress: bool = True,
    ignore_index: int = 255,
    strict_labels: bool = False,
    ranks: Optional[Ranks] = None,
) -> dict:
    """Segment every ``(image, label, name)`` of ``dataset`` and score it.

    Images are decoded in ``workers`` processes and go through the network ``batch_size`` at
    a time; with a CRF on the CPU, ``crf_workers`` processes refine image ``i`` while the
    network already works on the next ones (default:
    :func:`deeplabv2.pipeline.default_crf_workers`: none on two cores or fewer, where that
    measured slower; on a GPU the CRF runs there).
    Under ``torchrun`` (in an initialised ``torch.distributed`` group) every rank scores its
    shard and the confusion matrices are summed, so every rank returns the scores of the whole
    dataset.
    Label values that are neither a class nor ``ignore_index`` are left out of the scores
    with one warning at the end (counted in ``invalid_label_pixels``), or raise a
    :class:`~deeplabv2.errors.LabelError` naming the image with ``strict_labels``.

    Returns:
        :meth:`deeplabv2.metrics.ConfusionMatrix.scores` plus ``num_images`` and the settings.

    Raises:
        DatasetError: an empty dataset.
    """
    if len(dataset) == 0:
        raise DatasetError("the dataset is empty: there is nothing to evaluate")
    ranks = ranks or Ranks.current()
    _warn_if_trained_on(segmenter.model, dataset)
    num_classes = int(segmenter.model.num_classes)
    names = segmenter.class_names or (VOC_CLASSES if num_classes == len(VOC_CLASSES) else None)
    matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index, strict=strict_labels)
    indices = ranks.shard(len(dataset))
    with tqdm(
        total=len(indices), desc="eval", unit="image", disable=not progress or ranks.rank != 0
    ) as bar:
        if crf_workers is None:
            crf_workers = default_crf_workers(segmenter.device)
        results = stream(
            segmenter,
            _Pairs(dataset),
            indices,
            batch_size=batch_size,
            workers=workers,
            crf_workers=crf_workers,
            progress=bar,
        )
        _update(matrix, results)
    if ranks.distributed:
        matrix.all_reduce()
    message = matrix.invalid_label_message()
    if message is not None and ranks.rank == 0:
        warnings.warn(
            f"{message} (strict_labels / --strict-labels makes this an error)", stacklevel=2
        )
    results = matrix.scores(names)
    results["num_images"] = len(dataset)
    results["settings"] = segmenter.settings()
    return results
