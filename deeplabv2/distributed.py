"""One process or many (``torchrun``): rank, device, sharding, and how the ranks stop together.

Used by ``deeplabv2 predict``, ``deeplabv2 eval``, :func:`deeplabv2.evaluate.evaluate` and the
training example (``examples/train.py``): :func:`start` joins the process group ``torchrun``
sets up (if any), :class:`Ranks` says where this process stands, :func:`stop` leaves.

Ranks meet only at known points, and tell each other first whether they can go on:

* :func:`collective` wraps every collective (``all_reduce``...): it first waits, polling the
  process group's store, until every rank has arrived, so the collective itself never waits
  for a rank that is still working or has failed;
* a rank that fails says so in the store (:func:`report_failure`, done by :func:`stop` when it
  runs while an exception propagates) instead of waiting in a barrier; the others raise
  :class:`RankFailed` at their next :func:`check_peers` (between images) or while they wait;
* while a rank waits it stays responsive: SIGTERM and Ctrl-C are handled, and a worker whose
  ``torchrun`` is gone stops. The process group's own timeout (:data:`TIMEOUT_ENV`, default
  :data:`DEFAULT_TIMEOUT` seconds) bounds what is left: joining the group and the collectives.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

import torch
import torch.distributed as dist

__all__ = [
    "DEFAULT_TIMEOUT",
    "TIMEOUT_ENV",
    "RankFailed",
    "Ranks",
    "check_peers",
    "collective",
    "report_failure",
    "start",
    "stop",
    "total",
    "wait_for_peers",
]

#: Environment variable with the process group's timeout in seconds (joining, collectives).
TIMEOUT_ENV = "DEEPLABV2_DIST_TIMEOUT"
#: The process group's timeout in seconds when neither ``start(timeout=)`` nor the variable
#: sets one (torch's own default is 30 minutes, during which a stuck run printed nothing).
DEFAULT_TIMEOUT = 300.0

_POLL = 0.05  # seconds between looks at the store while waiting
_GRACE = 5.0  # seconds a failing rank waits for the others to stop before it exits
# under torchrun, the launcher is this process's parent: when that changes, torchrun died
_LAUNCHER = os.getppid() if "TORCHELASTIC_RUN_ID" in os.environ else None


class RankFailed(RuntimeError):
    """Another rank of the run failed (it reports its own error), or the run's launcher or
    store is gone: this rank stops too."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ``world`` processes of a run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def current(cls) -> Ranks:
        """This process's ranks in an initialised ``torch.distributed`` group (else one)."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return cls(dist.get_rank(), dist.get_world_size(), local)

    @property
    def distributed(self) -> bool:
        """Whether there are several processes."""
        return self.world > 1

    def shard(self, count: int) -> range:
        """The indices this rank handles: every ``world``-th, so each index is handled once
        (ranks differ by at most one image when ``count`` does not divide)."""
        return range(self.rank, count, self.world)

    def device(self, requested: Optional[str]) -> torch.device:
        """The requested device, or this rank's GPU (``cuda:LOCAL_RANK``) if there is one."""
        if requested is not None:
            device = torch.device(requested)
            if device.type == "cuda" and device.index is None and self.distributed:
                device = torch.device("cuda", self.local_rank)
            return device
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank if self.distributed else 0)
        return torch.device("cpu")


def _timeout(seconds: Optional[float]) -> timedelta:
    if seconds is None:
        text = os.environ.get(TIMEOUT_ENV, "").strip()
        try:
            seconds = float(text) if text else DEFAULT_TIMEOUT
        except ValueError:
            raise ValueError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds") from None
    if not seconds > 0:
        raise ValueError(f"the process group's timeout must be positive, got {seconds}")
    return timedelta(seconds=seconds)


def start(timeout: Optional[float] = None) -> Ranks:
    """Join the ``torchrun`` process group if this process was started by one (``WORLD_SIZE``
    above 1: NCCL on GPUs, gloo on CPUs); else a single process.

    ``timeout`` (seconds; default: the ``DEEPLABV2_DIST_TIMEOUT`` variable, else
    :data:`DEFAULT_TIMEOUT`) bounds joining the group and each collective.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        limit = _timeout(timeout)
        with _signals_end_process():  # blocks until every rank has joined
            dist.init_process_group(backend, timeout=limit)
    ranks = Ranks.current()
    if torch.cuda.is_available():
        torch.cuda.set_device(ranks.local_rank)
    return ranks


def stop(ranks: Ranks) -> None:
    """Leave the process group.

    After a success, once every rank got here (:func:`wait_for_peers`: no rank exits while
    others still work). Called from a ``finally`` block while an exception propagates, it
    reports the failure to the other ranks (:func:`report_failure`) instead of waiting for
    them, which would deadlock.
    """
    global _state
    if not _active(ranks):
        return
    try:
        error = sys.exc_info()[1]
        if error is not None:
            report_failure(ranks, error)
        elif not _peers().failed:
            wait_for_peers(ranks)
    finally:
        _state = None
        with _signals_end_process():
            dist.destroy_process_group()


class _Peers:
    """What the ranks of one process group share: keys in its store, under ``deeplabv2/``."""

    generation = 0  # process groups seen by this process: the namespace of each

    def __init__(self) -> None:
        self.group = dist.group.WORLD
        _Peers.generation += 1
        base = dist.distributed_c10d._get_default_store()  # the group's (torchrun's) store
        self.store = dist.PrefixStore(f"deeplabv2/{_Peers.generation}/", base)
        self.rounds = 0  # waits so far (every rank waits as often, in the same order)
        self.failed = False  # a rank (this one or another) failed: the group is done

    def add(self, key: str, amount: int) -> int:
        """The store's counter ``key`` after adding ``amount``; :class:`RankFailed` if the
        store is gone (with ``torchrun``, which hosts it)."""
        try:
            return self.store.add(key, amount)
        except Exception as error:  # noqa: BLE001 - DistStoreError, RuntimeError...
            self.failed = True
            raise RankFailed(f"stopped: lost the other ranks ({error})") from None

    def raise_if_failed(self) -> None:
        """:class:`RankFailed` if the launcher is gone or another rank failed."""
        if _LAUNCHER is not None and os.getppid() != _LAUNCHER:
            self.failed = True
            raise RankFailed("stopped: the launcher (torchrun) is gone")
        if self.add("failures", 0) == 0:
            return
        self.failed = True
        try:
            who = self.store.get("failed").decode()
        except Exception:  # noqa: BLE001 - the message only
            who = "another rank"
        self.add("stopped", 1)
        raise RankFailed(f"stopped because {who} failed (its error is reported there)")


_state: Optional[_Peers] = None


def _peers() -> _Peers:
    global _state
    if _state is None or _state.group is not dist.group.WORLD:
        _state = _Peers()
    return _state


def _active(ranks: Ranks) -> bool:
    return ranks.distributed and dist.is_available() and dist.is_initialized()


def check_peers(ranks: Ranks) -> None:
    """Raise :class:`RankFailed` if another rank has failed (or ``torchrun`` is gone); one
    look at the store: call it between work items (images)."""
    if _active(ranks):
        _peers().raise_if_failed()


def wait_for_peers(ranks: Ranks) -> None:
    """A barrier that polls the store: returns once every rank got here, raises
    :class:`RankFailed` as soon as one fails instead, and handles signals while it waits."""
    if not _active(ranks):
        return
    peers = _peers()
    key = f"arrived/{peers.rounds}"
    peers.rounds += 1
    arrived = peers.add(key, 1)
    while arrived < ranks.world:
        peers.raise_if_failed()
        time.sleep(_POLL)
        arrived = peers.add(key, 0)


@contextmanager
def collective(ranks: Ranks) -> Iterator[None]:
    """Around the collectives of one merge (``all_reduce``...) that every rank runs: first
    :func:`wait_for_peers`, so they never wait for a rank that is working or failed; during
    them SIGINT and SIGTERM end the process at once (nothing is left to clean up there)."""
    if not _active(ranks):
        yield
        return
    wait_for_peers(ranks)
    with _signals_end_process():
        yield


def total(ranks: Ranks, value: int) -> int:
    """``value`` summed over the ranks (a collective: every rank calls it)."""
    if not ranks.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.int64)
    with collective(ranks):
        dist.all_reduce(tensor)
    return int(tensor.item())


def report_failure(ranks: Ranks, error: BaseException) -> None:
    """Tell the other ranks that this one failed with ``error`` (they stop with
    :class:`RankFailed`), then give them a few seconds to do so before this rank exits
    (``torchrun`` would terminate them; a rank hosting the store would take it away)."""
    if not _active(ranks):
        return
    peers = _peers()
    if peers.failed or isinstance(error, RankFailed):  # reported already, or another rank's
        peers.failed = True
        return
    peers.failed = True
    try:
        peers.store.set("failed", f"rank {ranks.rank}")
        peers.add("failures", 1)
        stopped = peers.add("stopped", 1)
        end = time.monotonic() + _GRACE
        while stopped < ranks.world and time.monotonic() < end:
            time.sleep(_POLL)
            stopped = peers.add("stopped", 0)
    except Exception:  # noqa: BLE001 - the store is gone: so are the others
        pass


@contextmanager
def _signals_end_process() -> Iterator[None]:
    """SIGINT and SIGTERM take their default action (end the process) inside a blocking call
    of ``torch.distributed``, where a Python handler would only run after it returns."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved: dict[Any, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if callable(handler):  # a Python handler (not SIG_IGN, SIG_DFL or a foreign one)
            saved[signum] = handler
            signal.signal(signum, signal.SIG_DFL)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
