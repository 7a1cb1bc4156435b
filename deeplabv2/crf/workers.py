"""CPU worker processes for CRF jobs, shared by ``deeplabv2 predict --crf-workers`` (the
streaming pipeline) and ``deeplabv2 crf --workers`` (pseudo-labels).

The CRF backends on the CPU run one image at a time; several images at once in separate
processes use every core. Workers are started with ``spawn`` (no forked copy of the parent's
threads and CUDA state), ignore Ctrl-C (the whole process group gets it; the parent decides), are
terminated at once when the parent stops on an error or an interrupt, and end within moments of
the parent's death (:mod:`deeplabv2._pools`).
"""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, Callable

import torch

from .._pools import finished, process_pool, stop

__all__ = ["CRFWorkers", "one_thread"]


def _ignore_interrupts() -> None:
    """Worker start: Ctrl-C (sent to the whole process group) is the parent's to handle; it
    terminates the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def one_thread() -> None:
    """In a worker: one thread for torch (and numba, which follows it): the processes share
    the cores."""
    torch.set_num_threads(1)


class CRFWorkers:
    """``workers`` spawned processes running jobs in submission order, with a bounded queue.

    ``submit(fn, *args, tag=...)`` queues ``fn(*args)`` (``fn`` importable, arguments
    picklable) and yields the jobs it had to wait for to keep at most ``2 * workers`` queued;
    :meth:`drain` yields the rest. Each finished job comes back as ``(tag, future)``.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"CRF workers must be >= 1, got {workers}")
        self.workers = workers
        self.pool = process_pool(workers, "spawn", _ignore_interrupts)
        self.pending: deque[tuple[Any, Future]] = deque()

    def submit(self, fn: Callable[..., Any], *args: Any, tag: Any = None) -> Iterator[tuple]:
        """Queue a job; the oldest jobs, once finished, while too many wait."""
        self.pending.append((tag, self.pool.submit(fn, *args)))
        while len(self.pending) > 2 * self.workers:  # bound the memory of queued jobs
            yield self.next()

    def next(self) -> tuple[Any, Future]:
        """Wait for the oldest queued job: ``(tag, future)`` (``future.result()`` raises the
        job's error; ``BrokenProcessPool`` if a worker died)."""
        tag, future = self.pending.popleft()
        return tag, finished(self.pool, future)

    def drain(self) -> Iterator[tuple[Any, Future]]:
        """Every job still queued, oldest first, as each finishes."""
        while self.pending:
            yield self.next()

    def close(self, abort: bool = False) -> None:
        """Stop the workers: once their jobs are done, or (``abort``: interrupted, or an
        error; or a worker is dead) at once, cancelling the queued jobs and terminating the
        running ones. Never waits on a dead worker, now or at interpreter exit."""
        stop(self.pool, abort)
