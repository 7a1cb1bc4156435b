"""The lattice's geometry, shared by its two implementations (the sparse-matrix lattice of
:mod:`.permutohedral` and the numba backend's compiled one): the feature scaling, the layout of
the packed vertex keys and the key offsets of the blur neighbours."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["INT64_LIMIT", "key_layout", "neighbour_shifts", "scale_factors"]

#: packed keys stay below this, so that adding a neighbour shift never overflows an int64
INT64_LIMIT = 2**62


def scale_factors(d: int, device: torch.device) -> Tensor:
    """``(d,) float32``: the diagonal of the elevation matrix, rounded exactly as the C++ does
    (double, then float)."""
    inv_std_dev = float(torch.tensor(math.sqrt(2.0 / 3.0) * (d + 1), dtype=torch.float32))
    values = [1.0 / math.sqrt((i + 2) * (i + 1)) * inv_std_dev for i in range(d)]
    return torch.tensor(values, dtype=torch.float32, device=device)


def key_layout(low: list[int], high: list[int], batch: int) -> tuple[list[int], list[int], int]:
    """The mixed-radix layout of the packed keys, from the range ``low .. high`` of each of the
    first ``d`` remainder-0 coordinates: the offset subtracted from each coordinate, the stride
    of each and the stride of the image index. ValueError if the keys of ``batch`` images would
    not fit an int64."""
    margin = 2 * (len(low) + 1)
    offsets = [v - margin for v in low]
    radices = [hi + margin - lo + 1 for lo, hi in zip(offsets, high)]
    strides = [1] * len(low)
    for i in range(len(low) - 2, -1, -1):
        strides[i] = strides[i + 1] * radices[i + 1]
    image_stride = strides[0] * radices[0]
    if image_stride * batch >= INT64_LIMIT:
        raise ValueError(
            "the CRF features span too many lattice points to index "
            f"({image_stride * batch:.3g} >= 2^62): the standard deviations are too small "
            "for this image size or batch; increase them or run fewer images at once"
        )
    return offsets, strides, image_stride


def neighbour_shifts(strides: list[int], d: int) -> list[int]:
    """Packed-key offset of the neighbour ``n1`` along each axis ``j = 0..d``.

    ``n1`` has every coordinate minus one except coordinate ``j``, which gets ``+d`` (for
    ``j = d`` only the first ``d`` coordinates are stored, so all are minus one); ``n2`` is
    the opposite shift.
    """
    return [-sum(strides) + (strides[j] * (d + 1) if j < d else 0) for j in range(d + 1)]
