"""Streaming segmentation of many images: decode in worker processes, batch the network, run
the CRF where it is fastest, and hand each result back as soon as it is done.

Used by ``deeplabv2 predict`` and :func:`deeplabv2.evaluate.evaluate`:

* decoding and preprocessing run in ``torch.utils.data.DataLoader`` workers (``workers``), with
  pinned memory and non-blocking copies when the network runs on CUDA;
* images that share a network input size (all of them under the release's 513 padding) go
  through the network ``batch_size`` at a time;
* the CRF runs on the network's device when that is a GPU (native backend), else in
  ``crf_workers`` CPU processes that overlap the network (``0``: in this process).
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from .crf import DenseCRF
from .segmenter import Prediction, Segmenter

__all__ = ["Result", "default_crf_workers", "stream"]


def default_crf_workers(device: torch.device) -> int:
    """CRF processes worth starting: none on a GPU (the CRF runs there) or on a machine of two
    cores or fewer (the network already uses them: measured slower, docs/benchmarks.md),
    else about half the spare cores, up to four."""
    cores = os.cpu_count() or 1
    if device.type != "cpu" or cores <= 2:
        return 0
    return min(4, (cores - 1) // 2)


@dataclass
class Result:
    """One image's outcome: its prediction, or why it has none (``error``)."""

    index: int
    extra: Any
    prediction: Optional[Prediction] = None
    image: Optional[np.ndarray] = None
    error: Optional[BaseException] = None


class _Decoded(torch.utils.data.Dataset):
    """``load(index) -> (rgb, extra)`` for the chosen indices; failures are returned, not
    raised, when ``tolerant`` (the caller reports them per image)."""

    def __init__(
        self, load: Callable[[int], tuple[np.ndarray, Any]], indices: Sequence[int], tolerant
    ) -> None:
        self.load, self.indices, self.tolerant = load, list(indices), tolerant

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        index = self.indices[position]
        try:
            rgb, extra = self.load(index)
        except self.tolerant as error:
            return index, None, None, error
        return index, torch.from_numpy(np.ascontiguousarray(rgb)), extra, None


def _crf_task(crf: DenseCRF, image: np.ndarray, probs: np.ndarray, want_probs: bool):
    """Worker: the CRF of one image, one thread (returns probs, or labels when enough)."""
    torch.set_num_threads(1)
    q = crf(image, probs)
    return q if want_probs else q.argmax(0).astype(np.int64)


def stream(
    segmenter: Segmenter,
    load: Callable[[int], tuple[np.ndarray, Any]],
    indices: Sequence[int],
    *,
    batch_size: int = 1,
    workers: int = 0,
    crf_workers: int = 0,
    return_probs: bool = False,
    tolerant: tuple[type[BaseException], ...] = (),
    on_network_error: Optional[Callable[[BaseException], bool]] = None,
    progress: Any = None,
) -> Iterator[Result]:
    """Segment ``load(i)`` for every ``i`` of ``indices``; yields a :class:`Result` each.

    Args:
        segmenter: the settings (protocol, MSC, CRF, device, precision).
        load: ``index -> (H, W, 3) uint8 RGB, extra``; runs in the worker processes.
        indices: what to segment (e.g. this rank's shard).
        batch_size: images through the network at once (those of one input size).
        workers: decoding processes (0: in this process).
        crf_workers: CRF processes on the CPU (0: in this process); unused on a GPU.
        return_probs: keep the (refined) probabilities in each prediction.
        tolerant: exception types of ``load`` reported per image instead of raised.
        on_network_error: decides whether an exception of the network or the CRF is a
            per-image failure (True: reported in the result) or is raised; a batch that fails
            is retried image by image first.
        progress: a tqdm bar to advance (or None).

    Results come in the order they finish (not necessarily ``indices``' order).
    """
    on_network_error = on_network_error or (lambda error: False)
    cuda = segmenter.device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        _Decoded(load, indices, tolerant),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=cuda,
        prefetch_factor=4 if workers else None,
    )
    crf = segmenter.crf
    pool: Optional[ProcessPoolExecutor] = None
    if crf is not None and not cuda and crf_workers > 0:
        pool = ProcessPoolExecutor(crf_workers, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[tuple[Future, Result]] = deque()
    groups: dict[tuple, list[tuple[int, torch.Tensor, Any]]] = {}

    def done(result: Result) -> Result:
        if progress is not None:
            progress.update(1)
        return result

    def finish_crf() -> Iterator[Result]:
        future, result = pending.popleft()
        try:
            refined = torch.from_numpy(future.result())
        except Exception as error:  # noqa: BLE001 - sorted by on_network_error
            if not on_network_error(error):
                raise
            result.error = error
            yield done(result)
            return
        if return_probs:
            result.prediction = segmenter.prediction(refined, True)
        else:
            result.prediction = Prediction(refined, None, segmenter.class_names)
        yield done(result)

    def after_network(result: Result, probs: torch.Tensor) -> Iterator[Result]:
        if crf is None:
            result.prediction = segmenter.prediction(probs, return_probs)
            yield done(result)
        elif pool is None:
            refined = segmenter.refine(result.image, probs)
            result.prediction = segmenter.prediction(refined, return_probs)
            yield done(result)
        else:
            job = pool.submit(_crf_task, crf, result.image, probs.cpu().numpy(), return_probs)
            pending.append((job, result))
            while len(pending) > 2 * crf_workers:  # bound the memory held by queued jobs
                yield from finish_crf()

    def run(items: list[tuple[int, torch.Tensor, Any]]) -> Iterator[Result]:
        images = [image for _, image, _ in items]
        try:
            probs = segmenter.probabilities_batch(images, batch_size)
        except Exception as error:  # noqa: BLE001 - sorted by on_network_error
            if len(items) > 1 and on_network_error(error):
                for item in items:  # find the image(s) that fail, keep the rest
                    yield from run([item])
                return
            if not on_network_error(error):
                raise
            index, image, extra = items[0]
            yield done(Result(index, extra, image=image.numpy(), error=error))
            return
        for (index, image, extra), p in zip(items, probs):
            yield from after_network(Result(index, extra, image=image.numpy()), p)

    try:
        for index, image, extra, error in loader:
            if error is not None:
                yield done(Result(index, extra, error=error))
                continue
            h, w = image.shape[:2]
            try:
                segmenter.check_size(h, w)
            except Exception as size_error:  # noqa: BLE001 - sorted by on_network_error
                if not on_network_error(size_error):
                    raise
                yield done(Result(index, extra, error=size_error))
                continue
            key = ("tile", index) if segmenter.tiled(h, w) else segmenter.input_size(h, w)
            group = groups.setdefault(key, [])
            group.append((index, image, extra))
            if len(group) >= batch_size or key[0] == "tile":
                yield from run(groups.pop(key))
            elif sum(len(g) for g in groups.values()) > 4 * batch_size:
                largest = max(groups, key=lambda k: len(groups[k]))
                yield from run(groups.pop(largest))
        for key in list(groups):
            yield from run(groups.pop(key))
        while pending:
            yield from finish_crf()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
