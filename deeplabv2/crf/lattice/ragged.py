"""The layout of a ragged set of points: the points of several images of different sizes, each
padded to a multiple of 4 points as densecrf does (the padding points belong to their image; see
:mod:`.permutohedral`). Shared by :class:`.PermutohedralLattice` and the ``numba`` backend's
compiled lattice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Union

import torch
from torch import Tensor

__all__ = ["PaddedLayout", "check_sizes", "padded_layout"]


class PaddedLayout(NamedTuple):
    """Where the real points go among the padded ones.

    Attributes:
        real: ``(P,) int64`` position of each real point in the padded set.
        image: ``(P',) int64`` image of each padded point (real or padding), ascending.
        total: ``P'``, the number of padded points.
    """

    real: Tensor
    image: Tensor
    total: int


def check_sizes(sizes: Sequence[int], points: int) -> tuple[int, ...]:
    """The point count of each image as a tuple of ints; ValueError unless there is at least one
    image, each has at least one point and they add up to ``points``."""
    sizes = tuple(int(n) for n in sizes)
    if not sizes or min(sizes) < 1 or sum(sizes) != points:
        raise ValueError(
            f"sizes must be the point counts (>= 1) of the images, adding up to the {points} "
            f"points of the features; got {sizes}"
        )
    return sizes


def padded_layout(sizes: Sequence[int], device: Union[str, torch.device]) -> PaddedLayout:
    """The layout of images of ``sizes`` points each (``P = sum(sizes)``), each image padded to
    a multiple of 4 points at its end. Built from host-side counts: no device synchronisation."""
    padded = [n + (-n) % 4 for n in sizes]
    before = [0]  # padding points before each image
    for n, p in zip(sizes[:-1], padded[:-1]):
        before.append(before[-1] + p - n)
    images = torch.arange(len(sizes), device=device)
    counts = torch.tensor(sizes, device=device)
    real_image = torch.repeat_interleave(images, counts, output_size=sum(sizes))
    index = torch.arange(sum(sizes), device=device)
    index += torch.tensor(before, device=device)[real_image]
    image = torch.repeat_interleave(
        images, torch.tensor(padded, device=device), output_size=sum(padded)
    )
    return PaddedLayout(index, image, sum(padded))
