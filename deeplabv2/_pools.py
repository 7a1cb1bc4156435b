"""The library's worker process pools (the CRF workers, the reading processes of scoring): their
workers end with the process that started them, and stopping a pool never waits on dead workers.

* **Orphans.** Each worker watches its parent: a daemon thread looks every
  :data:`POLL_SECONDS` whether the parent is still there (its parent pid changes when it dies)
  and ends the worker (``os._exit``) when it is not. On Linux the worker also asks the kernel to
  kill it with its parent (``prctl(PR_SET_PDEATHSIG)``), at once and even inside compiled code
  that holds the GIL -- but only when the thread that started it is the parent's main thread:
  the kernel sends that signal when the starting *thread* ends.
* **Dead workers.** :func:`stop` never joins a pool whose workers may be dead: a worker killed
  while it sent a result (SIGKILL, the OOM killer, or :func:`stop` itself terminating it)
  leaves ``concurrent.futures``' manager thread reading that result forever, and interpreter
  exit joins that thread. :func:`stop` terminates the workers, then closes this process's copy
  of the result pipe's writing end, so the read ends; :func:`finished` notices dead workers while
  it waits for a job.

Python 3.14's ``ProcessPoolExecutor.terminate_workers()`` does part of this; before it, the
workers and queues are reached through the executor's private attributes (CPython 3.9-3.13:
``_processes``, ``_result_queue``, ``_call_queue``), each one looked up with a fallback.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Any, Callable, Optional, TypeVar

__all__ = [
    "POLL_SECONDS",
    "Workers",
    "finished",
    "process_pool",
    "run_jobs",
    "stop",
    "watch_parent",
]

#: How often a worker's watch thread looks for its parent, in seconds.
POLL_SECONDS = 0.5
_ORPHANED = 1  # a worker's exit code once its parent is gone (no process reads it)
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_GRACE = 5.0  # seconds a terminated worker has to exit before it is killed
T = TypeVar("T")


class _Starter:
    """The process that starts a worker, as the worker sees it: its pid, and whether the thread
    starting the worker is its main thread. A spawned worker gets it pickled at the moment it is
    started, in the thread that starts it (``ProcessPoolExecutor`` starts workers on demand, in
    whichever thread submits); a forked one inherits it as made with the pool."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.main = threading.current_thread() is threading.main_thread()

    def __getstate__(self) -> dict[str, Any]:
        return vars(_Starter())  # now, in the starting thread

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when the thread that started it ends (the
    watch thread alone remains if that is not possible)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    os._exit(_ORPHANED)


def watch_parent(parent: int, started_by_main_thread: bool) -> None:
    """In a worker process: end it as soon as ``parent`` (the pid of the process that started
    it) is gone -- at once with ``PR_SET_PDEATHSIG`` on Linux when ``started_by_main_thread``,
    else within :data:`POLL_SECONDS` (the watch thread needs the GIL: compiled code holding it
    delays the exit until it returns)."""
    if started_by_main_thread and sys.platform.startswith("linux"):
        _die_with_parent()
    if os.getppid() != parent:  # gone already, before the kernel could be told
        os._exit(_ORPHANED)
    threading.Thread(
        target=_watch, args=(parent,), name="deeplabv2-watch-parent", daemon=True
    ).start()


def _start_worker(starter: _Starter, initializer: Callable[[], None]) -> None:
    """Worker start: watch the parent, then the pool's own initializer."""
    watch_parent(starter.pid, starter.main)
    initializer()


def process_pool(workers: int, method: str, initializer: Callable[[], None]) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` of ``workers`` processes started by ``method`` (``"spawn"``
    or ``"fork"``, whose workers are children of this process), each running ``initializer``
    (importable) once it watches its parent (:func:`watch_parent`)."""
    if method not in ("spawn", "fork"):
        raise ValueError(f"workers are started by 'spawn' or 'fork', not {method!r}")
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context(method),
        initializer=_start_worker,
        initargs=(_Starter(), initializer),
    )


def _processes(pool: ProcessPoolExecutor) -> list[Any]:
    return list((getattr(pool, "_processes", None) or {}).values())


def finished(pool: ProcessPoolExecutor, future: Future[T]) -> Future[T]:
    """Wait until ``future`` (a job of ``pool``) is done; returned done. If a worker died and the
    job is still not done a moment later (it died sending a result, which the pool cannot see),
    the pool is stopped: the job then fails with ``BrokenProcessPool``."""
    dead_since = None
    while not wait_for([future], timeout=POLL_SECONDS).done:
        if dead_since is None and not all(p.is_alive() for p in _processes(pool)):
            dead_since = time.monotonic()
        elif dead_since is not None and time.monotonic() - dead_since > 2 * POLL_SECONDS:
            stop(pool, abort=True)  # the job fails at once (the pool is broken)
            dead_since = float("inf")
    return future


def stop(pool: ProcessPoolExecutor, abort: bool = False) -> None:
    """Shut ``pool`` down: once the jobs it runs are done, or (``abort``, or when a worker is
    dead) at once: queued jobs are cancelled, the workers terminated (killed after
    :data:`_GRACE` seconds), and nothing is left that interpreter exit would wait on."""
    processes = _processes(pool)
    if not abort and all(p.is_alive() for p in processes):
        pool.shutdown(cancel_futures=True)
        return
    results = getattr(pool, "_result_queue", None)
    calls = getattr(pool, "_call_queue", None)
    pool.shutdown(wait=False, cancel_futures=True)  # forgets its queues and processes
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(_GRACE)
        if process.is_alive():
            process.kill()
            process.join()
    if results is not None:  # every other writer is dead: a result cut short reads as EOF
        results._writer.close()
    if calls is not None:  # jobs that no worker will read stay in the pipe: do not wait on them
        calls.cancel_join_thread()


def _ignore_interrupts() -> None:
    """Worker start: Ctrl-C (sent to the whole process group) is the parent's to handle; it
    terminates the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Workers:
    """``workers`` spawned processes running jobs in submission order, with a bounded queue
    (the CRF's workers, ``coco-masks``' decoders).

    ``submit(fn, *args, tag=...)`` queues ``fn(*args)`` (``fn`` importable, arguments
    picklable) and yields the jobs it had to wait for to keep at most ``2 * workers`` queued;
    :meth:`drain` yields the rest. Each finished job comes back as ``(tag, future)``.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
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


Outcome = tuple[Any, Any, Optional[BaseException]]


def run_jobs(
    fn: Callable[..., Any],
    jobs: Iterable[tuple[Any, tuple]],
    workers: int,
    errors: tuple[type[BaseException], ...],
    inline: Optional[Callable[..., Any]] = None,
) -> Iterator[Outcome]:
    """``(tag, fn(*args), None)`` for each ``(tag, args)`` of ``jobs``, or ``(tag, None,
    error)`` when it raised one of ``errors`` (anything else is raised): here when ``workers``
    is 0 (``inline(*args)`` if given), else in :class:`Workers` in submission order. The
    workers stop at once on an error, an interrupt, or when the caller closes the stream."""

    def outcome(tag: Any, call: Callable[[], Any]) -> Outcome:
        try:
            return tag, call(), None
        except errors as error:
            return tag, None, error

    if workers == 0:
        here = inline or fn
        for tag, args in jobs:
            yield outcome(tag, lambda: here(*args))  # noqa: B023 - called at once
        return
    pool = Workers(workers)
    try:
        for tag, args in jobs:
            for done, future in pool.submit(fn, *args, tag=tag):
                yield outcome(done, future.result)
        for done, future in pool.drain():
            yield outcome(done, future.result)
    except BaseException:  # an error, an interrupt, or the caller closed the stream
        pool.close(abort=True)
        raise
    pool.close()
