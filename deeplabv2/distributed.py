"""One process or many (``torchrun``): rank, device and sharding.

Used by ``deeplabv2 predict``, ``deeplabv2 eval``, :func:`deeplabv2.evaluate.evaluate` and the
training example (``examples/train.py``): :func:`start` joins the process group ``torchrun``
sets up (if any), :class:`Ranks` says where this process stands, :func:`stop` leaves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

__all__ = ["Ranks", "start", "stop"]


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


def start() -> Ranks:
    """Join the ``torchrun`` process group if this process was started by one (``WORLD_SIZE``
    above 1: NCCL on GPUs, gloo on CPUs); else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    ranks = Ranks.current()
    if torch.cuda.is_available():
        torch.cuda.set_device(ranks.local_rank)
    return ranks


def stop(ranks: Ranks) -> None:
    """Leave the process group (after a barrier, so no rank exits while others still work)."""
    if ranks.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
