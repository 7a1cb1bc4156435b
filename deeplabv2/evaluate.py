"""Evaluation on a segmentation dataset: the network on the main device, the CRF in workers."""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Optional

import numpy as np
import torch

from .crf import DenseCRF
from .data.classes import VOC_CLASSES
from .metrics import ConfusionMatrix
from .segmenter import Segmenter

__all__ = ["evaluate"]


def _crf_labels(crf: DenseCRF, image: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Worker task: CRF labels ``(H, W) int64`` for one image (one thread per worker)."""
    torch.set_num_threads(1)
    return crf.labels(image, probs)


def evaluate(
    segmenter: Segmenter,
    dataset: Any,
    *,
    crf_workers: int = 2,
    progress: bool = True,
    ignore_index: int = 255,
) -> dict:
    """Segment every ``(image, label, name)`` of ``dataset`` and score it.

    The network runs in this process; with a CRF and ``crf_workers > 0`` the CPU-bound CRF of
    image ``i`` runs in a worker process while the network already works on image ``i + 1``.

    Returns:
        :meth:`deeplabv2.metrics.ConfusionMatrix.scores` plus ``num_images`` and the settings.
    """
    num_classes = int(segmenter.model.num_classes)
    names = segmenter.class_names or (VOC_CLASSES if num_classes == len(VOC_CLASSES) else None)
    matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    crf = segmenter.crf
    pool: Optional[ProcessPoolExecutor] = None
    if crf is not None and crf_workers > 0:
        pool = ProcessPoolExecutor(crf_workers, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[tuple[Future, np.ndarray]] = deque()

    def finish_one() -> None:
        future, label = pending.popleft()
        matrix.update(future.result(), label)

    iterator = range(len(dataset))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="eval", unit="image")
    try:
        for index in iterator:
            image, label, _ = dataset[index]
            probs = segmenter.probabilities(image)
            if crf is None:
                matrix.update(probs.argmax(0).cpu(), label)
            elif pool is None:
                matrix.update(segmenter.refine(image, probs).argmax(0).cpu(), label)
            else:
                pending.append((pool.submit(_crf_labels, crf, image, probs.cpu().numpy()), label))
                while len(pending) > 2 * crf_workers:  # bound the memory held by queued jobs
                    finish_one()
        while pending:
            finish_one()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    results = matrix.scores(names)
    results["num_images"] = len(dataset)
    results["settings"] = {
        "scales": list(segmenter.net.scales),
        "flip": segmenter.net.flip,
        "crf": None if crf is None else {**crf.params.as_dict(), "backend": crf.backend},
    }
    return results
