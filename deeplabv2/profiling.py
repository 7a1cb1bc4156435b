"""Where the time of a segmentation run goes: wall time per pipeline stage, and the bound the
stages allow when they overlap perfectly (``python benchmarks/eval.py --profile``).

A :class:`Profile` passed to :func:`deeplabv2.pipeline.stream` (or ``evaluate``) times each
stage; on CUDA every stage synchronises the device before and after, so that its time is its
own. That serialises host and device, so a profiled run is slower than a plain one: measure
throughput without a profile, and compare it with the profile's bound.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Optional, Union

import torch

__all__ = ["STAGES", "Profile", "stage"]

#: The stages in pipeline order; which resource runs each is in :meth:`Profile.resources`.
STAGES = (
    "decode",
    "waiting for images",
    "copy to device",
    "preprocessing",
    "network",
    "upsampling + softmax",
    "CRF",
    "argmax",
    "copy to host",
    "scoring",
    "writing",
)


class Profile:
    """Seconds spent in each stage of a run, and the images it segmented.

    Args:
        device: the device the network runs on; CUDA stages are synchronised.
    """

    def __init__(self, device: Union[str, torch.device] = "cpu") -> None:
        self.device = torch.device(device)
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.images = 0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (the device synchronised before and after)."""
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] += time.perf_counter() - start

    def add(self, name: str, seconds: float) -> None:
        """Count time measured elsewhere (in a decoding or CRF worker) as stage ``name``."""
        self.seconds[name] += seconds

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def per_image(self) -> dict[str, float]:
        """Milliseconds per image of each stage that took time, in pipeline order."""
        images = max(self.images, 1)
        names = [s for s in STAGES if s in self.seconds] + sorted(set(self.seconds) - set(STAGES))
        return {name: 1000 * self.seconds[name] / images for name in names}

    def resources(self, workers: int, crf_workers: int, writers: int) -> dict[str, float]:
        """Milliseconds per image each resource is busy, its stages' time divided by its
        processes: decoding (``workers`` processes; 0: the main thread), CRF workers
        (``crf_workers`` on the CPU; 0: the CRF runs in the main thread), writers (``writers``
        threads; 0: the main thread), and the main thread with the device, which runs every
        other stage one after the other. Waiting is nobody's work and is left out."""
        ms = self.per_image()
        side = {"decode": workers, "CRF": crf_workers, "writing": writers}
        busy: dict[str, float] = defaultdict(float)
        for name, value in ms.items():
            if name == "waiting for images":
                continue
            processes = side.get(name, 0)
            if processes:
                busy[f"{name} ({processes} processes)"] += value / processes
            else:
                busy["main thread + device"] += value
        return dict(busy)

    def bound(self, workers: int, crf_workers: int = 0, writers: int = 0) -> float:
        """The pipeline's best time per image (ms): its busiest resource's, when everything
        else overlaps with it (:meth:`resources`)."""
        return max(self.resources(workers, crf_workers, writers).values(), default=0.0)


def stage(profile: Optional[Profile], name: str) -> AbstractContextManager[None]:
    """``profile.stage(name)``, or nothing when not profiling."""
    return nullcontext() if profile is None else profile.stage(name)
