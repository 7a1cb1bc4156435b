"""Streaming segmentation of many images: decode in worker processes, batch the network, run
the CRF where it is fastest, and hand each result back as soon as it is done.

Used by :func:`deeplabv2.evaluate.evaluate` and ``deeplabv2 predict``:

* decoding and preprocessing run in ``torch.utils.data.DataLoader`` workers (``workers``), with
  pinned memory and non-blocking copies when the network runs on CUDA;
* images that share a network input size (all of them under the release's 513 padding) go
  through the network ``batch_size`` at a time;
* everything after the network stays on its device, batch by batch: upsampling, softmax, the
  CRF (one call for the batch's images, whatever their sizes), the arg-max; only the ``uint8``
  label maps come back to the host, in one copy per batch (or, for scoring, none:
  ``on_device``);
* on the CPU the CRF may instead run in ``crf_workers`` processes that overlap the network
  (``0``: in this process).

A :class:`deeplabv2.profiling.Profile` times every stage (``benchmarks/eval.py --profile``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from .crf import DenseCRF
from .crf.workers import CRFWorkers, one_thread
from .profiling import Profile, stage
from .segmenter import Prediction, Segmenter, label_dtype

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
    """One image's outcome: its prediction, or why it has none (``error``).

    ``labels``: in an ``on_device`` stream, the ``(H, W) uint8`` label map on the segmenter's
    device, in place of ``prediction``.
    """

    index: int
    extra: Any
    prediction: Optional[Prediction] = None
    image: Optional[np.ndarray] = None
    error: Optional[BaseException] = None
    labels: Optional[torch.Tensor] = None


class _Decoded(torch.utils.data.Dataset):
    """``load(index) -> (rgb, extra)`` for the chosen indices; failures are returned, not
    raised, when ``tolerant`` (the caller reports them per image)."""

    def __init__(
        self,
        load: Callable[[int], tuple[np.ndarray, Any]],
        indices: Sequence[int],
        tolerant: tuple[type[BaseException], ...],
    ) -> None:
        self.load, self.indices, self.tolerant = load, list(indices), tolerant

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, Any, Any, Optional[BaseException], float]:
        """``(index, (H, W, 3) uint8 tensor or None, extra, error or None, decoding seconds)``"""
        index = self.indices[position]
        start = time.perf_counter()
        try:
            rgb, extra = self.load(index)
        except self.tolerant as error:
            return index, None, None, error, time.perf_counter() - start
        image = torch.from_numpy(np.ascontiguousarray(rgb))
        return index, image, extra, None, time.perf_counter() - start


def _crf_task(
    crf: DenseCRF, image: np.ndarray, probs: np.ndarray, want_probs: bool
) -> tuple[np.ndarray, float]:
    """Worker: the CRF of one image, one thread (probs, or ``(H, W)`` labels when enough, uint8
    up to 256 classes), and the seconds it took."""
    one_thread()
    start = time.perf_counter()
    q = crf(image, probs)
    if not want_probs:
        q = torch.from_numpy(q.argmax(0)).to(label_dtype(q.shape[0])).numpy()
    return q, time.perf_counter() - start


class _Stream:
    """The state of one :func:`stream`: images waiting in groups of one network input size,
    and CRF jobs queued in the worker pool. Each method yields the results it finishes."""

    def __init__(
        self,
        segmenter: Segmenter,
        batch_size: int,
        crf_workers: int,
        return_probs: bool,
        on_network_error: Callable[[BaseException], bool],
        progress: Any,
        on_device: bool = False,
        profile: Optional[Profile] = None,
    ) -> None:
        self.segmenter, self.batch_size, self.crf_workers = segmenter, batch_size, crf_workers
        self.return_probs, self.on_network_error = return_probs, on_network_error
        self.progress, self.on_device, self.profile = progress, on_device, profile
        self.pool: Optional[CRFWorkers] = None
        if segmenter.crf is not None and segmenter.device.type != "cuda" and crf_workers > 0:
            self.pool = CRFWorkers(crf_workers)
        self.groups: dict[tuple, list[tuple[int, torch.Tensor, Any]]] = {}

    def done(self, result: Result) -> Result:
        """A finished result (the progress bar advances)."""
        if self.progress is not None:
            self.progress.update(1)
        if self.profile is not None:
            self.profile.images += 1
        return result

    def add(self, index: int, image: torch.Tensor, extra: Any) -> Iterator[Result]:
        """A decoded image: checked, grouped by input size; a full group (or a tiled image,
        alone) goes through the network, as does the largest group when too many wait."""
        h, w = image.shape[:2]
        try:
            self.segmenter.check_size(h, w)
        except Exception as size_error:  # noqa: BLE001 - sorted by on_network_error
            if not self.on_network_error(size_error):
                raise
            yield self.done(Result(index, extra, error=size_error))
            return
        tiled = self.segmenter.tiled(h, w)
        key = ("tile", index) if tiled else self.segmenter.input_size(h, w)
        group = self.groups.setdefault(key, [])
        group.append((index, image, extra))
        if tiled or len(group) >= self.batch_size:
            yield from self.run(self.groups.pop(key))
        elif sum(len(g) for g in self.groups.values()) > 4 * self.batch_size:
            largest = max(self.groups, key=lambda k: len(self.groups[k]))
            yield from self.run(self.groups.pop(largest))

    def flush(self) -> Iterator[Result]:
        """The images still waiting in groups, then the CRF jobs still queued."""
        for key in list(self.groups):
            yield from self.run(self.groups.pop(key))
        if self.pool is not None:
            for result, future in self.pool.drain():
                yield from self.finish_crf(result, future)

    def run(self, items: list[tuple[int, torch.Tensor, Any]]) -> Iterator[Result]:
        """The network on images of one input size, then the CRF and the labels (unless the
        CRF runs in workers); a failing batch is retried one by one."""
        images = [image for _, image, _ in items]
        try:
            probs = self.segmenter.probabilities_batch(
                images, self.batch_size, profile=self.profile
            )
            results = None if self.pool is not None else self.finish_batch(items, probs)
        except Exception as error:  # noqa: BLE001 - sorted by on_network_error
            if len(items) > 1 and self.on_network_error(error):
                for item in items:  # find the image(s) that fail, keep the rest
                    yield from self.run([item])
                return
            if not self.on_network_error(error):
                raise
            index, image, extra = items[0]
            yield self.done(Result(index, extra, image=image.numpy(), error=error))
            return
        if results is None:  # the CRF workers take it from here
            for (index, image, extra), p in zip(items, probs):
                yield from self.to_workers(Result(index, extra, image=image.numpy()), p)
            return
        for result in results:
            yield self.done(result)

    def finish_batch(
        self, items: list[tuple[int, torch.Tensor, Any]], probs: list[torch.Tensor]
    ) -> list[Result]:
        """The CRF of the batch (one call), its label maps and, unless ``on_device``, one copy
        of all of them to the host."""
        segmenter, profile = self.segmenter, self.profile
        images = [image for _, image, _ in items]
        if segmenter.crf is not None:
            probs = segmenter.refine_batch(images, probs, profile=profile)
        labels = segmenter.label_maps(probs, profile=profile)
        results = [Result(i, extra, image=image.numpy()) for i, image, extra in items]
        if self.on_device:
            for result, label in zip(results, labels):
                result.labels = label
            return results
        with stage(profile, "copy to host"):
            flat = torch.cat([label.reshape(-1) for label in labels]).cpu()
            kept = [p.float().cpu() if self.return_probs else None for p in probs]
        start = 0
        for result, label, p in zip(results, labels, kept):
            host = flat[start : start + label.numel()].reshape(label.shape).long()
            result.prediction = Prediction(host, p, segmenter.class_names)
            start += label.numel()
        return results

    def to_workers(self, result: Result, probs: torch.Tensor) -> Iterator[Result]:
        """Queue the CRF of one image for a worker; the jobs finished meanwhile."""
        args = (self.segmenter.crf, result.image, probs.cpu().numpy(), self.return_probs)
        for done, future in self.pool.submit(_crf_task, *args, tag=result):  # type: ignore[union-attr]
            yield from self.finish_crf(done, future)

    def finish_crf(self, result: Result, future: Future) -> Iterator[Result]:
        """A finished CRF job's result."""
        try:
            q, seconds = future.result()
            refined = torch.from_numpy(q)
        except Exception as error:  # noqa: BLE001 - sorted by on_network_error
            if not self.on_network_error(error):
                raise
            result.error = error
            yield self.done(result)
            return
        if self.profile is not None:
            self.profile.add("CRF", seconds)
        if self.on_device:
            result.labels = refined.to(self.segmenter.device)
        elif self.return_probs:
            result.prediction = self.segmenter.prediction(refined, True)
        else:
            result.prediction = Prediction(refined.long(), None, self.segmenter.class_names)
        yield self.done(result)

    def close(self, abort: bool = False) -> None:
        """Stop the CRF workers: once their jobs are done, or (``abort``: interrupted, or an
        error) at once, cancelling the queued jobs and terminating the running ones."""
        if self.pool is not None:
            self.pool.close(abort)


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
    on_device: bool = False,
    profile: Optional[Profile] = None,
) -> Generator[Result, None, None]:
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
        on_device: leave each label map on the segmenter's device (``Result.labels``, no
            ``prediction``), e.g. to score it there; ``return_probs`` does not apply.
        profile: times every stage (:class:`deeplabv2.profiling.Profile`), or None.

    Results come in the order they finish (not necessarily ``indices``' order). Close the
    generator (``contextlib.closing``) to stop the decoding and CRF workers early.
    """
    loader = torch.utils.data.DataLoader(
        _Decoded(load, indices, tolerant),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=segmenter.device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )
    state = _Stream(
        segmenter,
        batch_size,
        crf_workers,
        return_probs and not on_device,
        on_network_error or (lambda error: False),
        progress,
        on_device,
        profile,
    )
    try:
        for index, image, extra, error, seconds in _timed(loader, profile):
            if profile is not None:
                profile.add("decode", seconds)
            if error is not None:
                yield state.done(Result(index, extra, error=error))
            else:
                yield from state.add(index, image, extra)
        yield from state.flush()
    except BaseException:  # an error, an interrupt, or the caller closed the stream
        state.close(abort=True)
        raise
    state.close()


def _timed(items: Iterable[Any], profile: Optional[Profile]) -> Iterator[Any]:
    """``items``, the time spent waiting for each counted as "waiting for images"."""
    iterator = iter(items)
    while True:
        with stage(profile, "waiting for images"):
            item = next(iterator, _END)
        if item is _END:
            return
        yield item


_END = object()
