"""Evaluation on a segmentation dataset: the network on the main device, the CRF in workers."""

from __future__ import annotations

import multiprocessing
import warnings
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .crf import DenseCRF
from .data.classes import VOC_CLASSES
from .errors import DatasetError, LabelError
from .metrics import ConfusionMatrix
from .segmenter import Segmenter

__all__ = ["evaluate"]


def _crf_labels(crf: DenseCRF, image: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Worker task: CRF labels ``(H, W) int64`` for one image (one thread per worker)."""
    torch.set_num_threads(1)
    return crf.labels(image, probs)


def _warn_if_trained_on(model: Any, dataset: Any) -> None:
    """Loudly warn when weights trained on VOC val are evaluated on a val split."""
    info = getattr(model, "weights_info", {}) or {}
    split = Path(str(getattr(dataset, "split", ""))).stem
    if info.get("warning") and "val" in split:
        warnings.warn(
            f"WARNING: {info.get('weights') or info.get('source')}: {info['warning']}",
            stacklevel=3,
        )


def evaluate(
    segmenter: Segmenter,
    dataset: Any,
    *,
    crf_workers: int = 2,
    progress: bool = True,
    ignore_index: int = 255,
    strict_labels: bool = False,
) -> dict:
    """Segment every ``(image, label, name)`` of ``dataset`` and score it.

    The network runs in this process; with a CRF and ``crf_workers > 0`` the CPU-bound CRF of
    image ``i`` runs in a worker process while the network already works on image ``i + 1``.
    Label values that are neither a class nor ``ignore_index`` are left out of the scores with
    one warning at the end (counted in ``invalid_label_pixels``), or raise a
    :class:`~deeplabv2.errors.LabelError` naming the image with ``strict_labels``.

    Returns:
        :meth:`deeplabv2.metrics.ConfusionMatrix.scores` plus ``num_images`` and the settings.

    Raises:
        DatasetError: an empty dataset.
    """
    if len(dataset) == 0:
        raise DatasetError("the dataset is empty: there is nothing to evaluate")
    _warn_if_trained_on(segmenter.model, dataset)
    num_classes = int(segmenter.model.num_classes)
    names = segmenter.class_names or (VOC_CLASSES if num_classes == len(VOC_CLASSES) else None)
    matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index, strict=strict_labels)
    crf = segmenter.crf
    pool: Optional[ProcessPoolExecutor] = None
    if crf is not None and crf_workers > 0:
        pool = ProcessPoolExecutor(crf_workers, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[tuple[Future, np.ndarray, str]] = deque()

    def score(prediction: Any, label: np.ndarray, name: str) -> None:
        try:
            matrix.update(prediction, label)
        except LabelError as error:
            raise LabelError(f"{name}: {error}") from None

    def finish_one() -> None:
        future, label, name = pending.popleft()
        score(future.result(), label, name)

    iterator = range(len(dataset))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="eval", unit="image")
    try:
        for index in iterator:
            image, label, name = dataset[index]
            probs = segmenter.probabilities(image)
            if crf is None:
                score(probs.argmax(0).cpu(), label, name)
            elif pool is None:
                score(segmenter.refine(image, probs).argmax(0).cpu(), label, name)
            else:
                job = pool.submit(_crf_labels, crf, image, probs.cpu().numpy())
                pending.append((job, label, name))
                while len(pending) > 2 * crf_workers:  # bound the memory held by queued jobs
                    finish_one()
        while pending:
            finish_one()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    message = matrix.invalid_label_message()
    if message is not None:
        warnings.warn(
            f"{message} (strict_labels / --strict-labels makes this an error)", stacklevel=2
        )
    results = matrix.scores(names)
    results["num_images"] = len(dataset)
    results["settings"] = {
        "scales": list(segmenter.net.scales),
        "flip": segmenter.net.flip,
        "crf": None if crf is None else {**crf.params.as_dict(), "backend": crf.backend},
    }
    return results
