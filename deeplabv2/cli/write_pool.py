"""Writing each image's output files in a pool of threads beside the network, a bounded number
of images at a time (``deeplabv2 predict``).

Pillow's PNG and JPEG encoders, zlib and file writes release the GIL, so threads overlap the
network; processes would have to pickle every array across (measured slower:
docs/benchmarks.md, "Writing predictions"). At most ``2 x writers`` images are in flight (queued
or being written): :meth:`WritePool.submit` waits for the oldest while that many are, so memory
stays flat over a folder of any size. Outcomes come back in the order the images were handed in.

An :class:`OSError` out of one image's writes is that image's outcome; any other exception is
raised in the caller. On leaving the pool (normally, on an error, on Ctrl-C or SIGTERM) images
not yet started are dropped and those being written are finished: a write takes milliseconds,
and :func:`deeplabv2._files.atomic_write` removes its temporary file if it fails.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, Optional, TypeVar

__all__ = ["Outcome", "WritePool", "default_writers"]

Key = TypeVar("Key")
#: What became of one image: None (written), or why it was not.
Outcome = Optional[BaseException]


def default_writers() -> int:
    """Writing threads by default: four, even on fewer cores (an image's writes wait on the
    disk, ``fsync``, about as long as they compute: on a 2-core VM four threads measured faster
    than two, docs/benchmarks.md)."""
    return 4


def _write(write: Callable[[], object]) -> Outcome:
    """Run one image's writes; its OSError is its outcome, anything else propagates."""
    try:
        write()
    except OSError as error:
        return error
    return None


class WritePool(Generic[Key]):
    """Runs each image's ``write()`` in one of ``writers`` threads (``0``: at once, in the
    caller's thread), at most ``limit = 2 x writers`` images in flight, outcomes in order.

    Use it as a context manager: leaving it drops what has not started and waits for what has.
    """

    def __init__(self, writers: int) -> None:
        if writers < 0:
            raise ValueError(f"writers must be 0 or more, got {writers}")
        self.limit = 2 * writers
        self._threads = (
            ThreadPoolExecutor(writers, thread_name_prefix="deeplabv2-write") if writers else None
        )
        self._pending: deque[tuple[Key, Future[Outcome]]] = deque()

    def __enter__(self) -> WritePool[Key]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def in_flight(self) -> int:
        """Images handed in whose outcome has not been taken back yet."""
        return len(self._pending)

    def submit(self, key: Key, write: Callable[[], object]) -> list[tuple[Key, Outcome]]:
        """Hand in the image ``key`` and its writes; the outcomes finished by now, oldest first
        (this waits for the oldest while ``limit`` images are in flight)."""
        finished = self._take(self.limit - 1)
        if self._threads is None:
            return [*finished, (key, _write(write))]
        self._pending.append((key, self._threads.submit(_write, write)))
        return finished

    def done(self, key: Key, outcome: BaseException) -> list[tuple[Key, Outcome]]:
        """Hand in an image that failed before its writes, so that its outcome comes back in
        its turn; the outcomes finished by now, oldest first."""
        finished = self._take(self.limit - 1)
        if self._threads is None:
            return [*finished, (key, outcome)]
        future: Future[Outcome] = Future()
        future.set_result(outcome)
        self._pending.append((key, future))
        return finished

    def finish(self) -> list[tuple[Key, Outcome]]:
        """Wait for every image handed in; their outcomes, oldest first."""
        return self._take(0)

    def close(self) -> None:
        """Drop the images not started, wait for those being written, stop the threads."""
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)

    def _take(self, keep: int) -> list[tuple[Key, Outcome]]:
        """The outcomes at the head that are done, and the oldest ones waited for until at
        most ``keep`` images are in flight (an exception other than an OSError is raised)."""
        finished = []
        while self._pending and (len(self._pending) > keep or self._pending[0][1].done()):
            key, future = self._pending[0]
            outcome = future.result()
            self._pending.popleft()
            finished.append((key, outcome))
        return finished
