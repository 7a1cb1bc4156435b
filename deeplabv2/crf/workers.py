"""CPU worker processes for CRF jobs, shared by ``deeplabv2 predict --crf-workers`` (the
streaming pipeline) and ``deeplabv2 crf --crf-workers`` (pseudo-labels).

The CRF backends on the CPU run one image at a time; several images at once in separate
processes use every core. Workers are started with ``spawn`` (no forked copy of the parent's
threads and CUDA state), ignore Ctrl-C (the whole process group gets it; the parent decides), are
terminated at once when the parent stops on an error or an interrupt, and end within moments of
the parent's death (:mod:`deeplabv2._pools`).
"""

from __future__ import annotations

import torch

from .._pools import Workers

__all__ = ["CRFWorkers", "one_thread"]


def one_thread() -> None:
    """In a worker: one thread for torch (and numba, which follows it): the processes share
    the cores."""
    torch.set_num_threads(1)


#: the CRF's worker processes: :class:`deeplabv2._pools.Workers` (spawned, Ctrl-C left to the
#: parent, ended with it)
CRFWorkers = Workers
