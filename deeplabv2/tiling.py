"""Tiling of large images: overlapping tiles on the network's output grid, and the assembly of
their logits into those of the whole image.

Tiles start at multiples of the output stride, so every tile sees the same sampling grid as the
whole image; each pixel is taken from the tile in which it lies furthest from a tile edge.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

__all__ = ["OUTPUT_STRIDE", "tile_layout", "tile_overlap_for", "tiled_logits"]

#: The networks' output stride: logit ``i`` lies on input pixel ``8 i``.
OUTPUT_STRIDE = 8


def tile_overlap_for(tile_size: Optional[int], tile_overlap: Optional[int]) -> int:
    """Validate tiling settings; the overlap rounded up to a multiple of 8 (default:
    ``min(256, tile_size // 2)``).

    Raises:
        ValueError: ``tile_size`` under 17 pixels, or an overlap outside ``[1, tile_size / 2]``.
    """
    if tile_size is not None and tile_size < 2 * OUTPUT_STRIDE + 1:
        raise ValueError(f"tile_size must be at least 17 pixels, got {tile_size}")
    if tile_overlap is None:
        half = (tile_size // 2) if tile_size is not None else 256
        tile_overlap = min(256, half // OUTPUT_STRIDE * OUTPUT_STRIDE)
    if tile_overlap < 1 or (tile_size is not None and tile_overlap > tile_size // 2):
        raise ValueError(
            f"tile_overlap must be in [1, tile_size / 2], got {tile_overlap} for tile_size "
            f"{tile_size}"
        )
    return -(-tile_overlap // OUTPUT_STRIDE) * OUTPUT_STRIDE


def tile_layout(length: int, size: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis: ``(start, end, keep_start, keep_end)``.

    Starts are multiples of the output stride, so every tile sees the same sampling grid as the
    whole image; the last tile ends at the image edge. Consecutive tiles hand over at the middle
    of their overlap.
    """
    if length <= size:
        return [(0, length, 0, length)]
    step = (size - overlap) // OUTPUT_STRIDE * OUTPUT_STRIDE
    starts = list(range(0, length - size, step))
    last = -(-(length - size) // OUTPUT_STRIDE) * OUTPUT_STRIDE  # cover the end, 8-aligned
    if not starts or starts[-1] < last:
        starts.append(min(last, length - 1))
    ends = [min(s + size, length) for s in starts]
    tiles = []
    for i, (start, end) in enumerate(zip(starts, ends)):
        keep_start = 0 if i == 0 else (starts[i] + ends[i - 1]) // 2
        keep_end = length if i == len(starts) - 1 else (starts[i + 1] + end) // 2
        tiles.append((start, end, keep_start, keep_end))
    return tiles


def tiled_logits(
    image: np.ndarray,
    logits_of: Callable[[np.ndarray], torch.Tensor],
    tile_size: int,
    tile_overlap: int,
    *,
    progress: bool = False,
) -> torch.Tensor:
    """The ``(C, H, W)`` logits of an ``(H, W, 3)`` image, assembled from those of its tiles.

    Args:
        image: the whole image.
        logits_of: ``(h, w, 3)`` contiguous tile -> its ``(C, h, w)`` full-resolution logits.
        tile_size: the largest tile side.
        tile_overlap: overlap of neighbouring tiles (from :func:`tile_overlap_for`).
        progress: show a progress bar over the tiles.
    """
    h, w = image.shape[:2]
    rows = tile_layout(h, tile_size, tile_overlap)
    cols = tile_layout(w, tile_size, tile_overlap)
    out: Optional[torch.Tensor] = None
    with tqdm(
        total=len(rows) * len(cols),
        desc=f"tiles of {w}x{h}",
        unit="tile",
        leave=False,
        disable=not progress,
    ) as bar:
        for start_y, end_y, keep_y0, keep_y1 in rows:
            for start_x, end_x, keep_x0, keep_x1 in cols:
                logits = logits_of(np.ascontiguousarray(image[start_y:end_y, start_x:end_x]))
                if out is None:
                    out = logits.new_empty(logits.shape[0], h, w)
                out[:, keep_y0:keep_y1, keep_x0:keep_x1] = logits[
                    :,
                    keep_y0 - start_y : keep_y1 - start_y,
                    keep_x0 - start_x : keep_x1 - start_x,
                ]
                bar.update(1)
    assert out is not None
    return out
