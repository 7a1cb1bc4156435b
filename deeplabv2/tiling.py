"""Tiling of large images: overlapping tiles on the network's output grid, and the assembly of
their logits (or probabilities) into those of the whole image.

Tiles start at multiples of the output stride, so every tile sees the same sampling grid as the
whole image; each pixel is taken from the tile in which it lies furthest from a tile edge. What
tiling keeps in memory is one full-size buffer (the logits, or the probabilities computed tile
by tile) and one tile's results.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from .errors import ImageMemoryError

__all__ = [
    "DEFAULT_TILE_SIZE",
    "OUTPUT_STRIDE",
    "slow_tiling_warning",
    "tile_layout",
    "tile_overlap_for",
    "tiled_logits",
]

#: The networks' output stride: logit ``i`` lies on input pixel ``8 i``.
OUTPUT_STRIDE = 8
#: The default largest tile side (``Segmenter(tile_size=...)``, ``--tile-size``).
DEFAULT_TILE_SIZE = 1025
# A tile size whose network time is this many times the default's is worth a warning.
_SLOW = 10.0


def tile_overlap_for(
    tile_size: Optional[int],
    tile_overlap: Optional[int],
    *,
    names: tuple[str, str] = ("tile_size", "tile_overlap"),
) -> int:
    """Validate tiling settings; the overlap rounded up to a multiple of 8 (default:
    ``min(256, tile_size // 2)``). ``names``: how the messages call the two settings (the
    command line's ``--tile-size`` / ``--tile-overlap``).

    Raises:
        ValueError: ``tile_size`` under 17 pixels, or an overlap outside ``[1, tile_size / 2]``.
    """
    size_name, overlap_name = names
    if tile_size is not None and tile_size < 2 * OUTPUT_STRIDE + 1:
        raise ValueError(f"{size_name} must be at least 17 pixels, got {tile_size}")
    if tile_overlap is None:
        half = (tile_size // 2) if tile_size is not None else 256
        tile_overlap = min(256, half // OUTPUT_STRIDE * OUTPUT_STRIDE)
    if tile_overlap < 1 or (tile_size is not None and tile_overlap > tile_size // 2):
        raise ValueError(
            f"{overlap_name} must be in [1, {size_name} / 2], got {tile_overlap} for "
            f"{size_name} {tile_size}"
        )
    return -(-tile_overlap // OUTPUT_STRIDE) * OUTPUT_STRIDE


def _step(size: int, overlap: int) -> int:
    """The distance between the starts of neighbouring tiles (a multiple of the stride)."""
    return max(OUTPUT_STRIDE, (size - overlap) // OUTPUT_STRIDE * OUTPUT_STRIDE)


def tile_layout(length: int, size: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis: ``(start, end, keep_start, keep_end)``.

    Starts are multiples of the output stride, so every tile sees the same sampling grid as the
    whole image; the last tile ends at the image edge. Consecutive tiles hand over at the middle
    of their overlap.
    """
    if length <= size:
        return [(0, length, 0, length)]
    starts = list(range(0, length - size, _step(size, overlap)))
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


def _network_work(size: int, overlap: int, pad_to: Optional[int]) -> float:
    """Network input pixels per image pixel of a tiled image (each tile padded to ``pad_to``)."""
    return (max(size, pad_to or 0) / _step(size, overlap)) ** 2


def slow_tiling_warning(
    tile_size: Optional[int],
    tile_overlap: int,
    pad_to: Optional[int],
    *,
    names: tuple[str, str] = ("tile_size=", "pad_to=None"),
) -> Optional[str]:
    """What to warn about a tile size far below the padding (each tile runs padded to
    ``pad_to``), when it makes tiled images tens of times slower than the default tiles; None
    when it does not. ``names``: how the message calls the tile size and the unpadded setting
    (``"--tile-size "``, ``"--pad-to none"`` on the command line)."""
    if tile_size is None or pad_to is None or tile_size >= pad_to:
        return None
    default = _network_work(DEFAULT_TILE_SIZE, tile_overlap_for(DEFAULT_TILE_SIZE, None), pad_to)
    factor = _network_work(tile_size, tile_overlap, pad_to) / default
    if factor < _SLOW:
        return None
    size_name, unpadded = names
    return (
        f"{size_name}{tile_size} is far below the padding to {pad_to}x{pad_to}: every tile runs "
        f"as a {pad_to}x{pad_to} input, so images over {tile_size} pixels take about "
        f"{factor:.0f} times the network time of {size_name}{DEFAULT_TILE_SIZE}; use at least "
        f"{pad_to}, or {unpadded}"
    )


def _full_size_buffer(like: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    return like.new_empty(shape)


def _allocate(like: torch.Tensor, shape: tuple[int, int, int], what: str) -> torch.Tensor:
    """The full-size buffer; an :class:`ImageMemoryError` that says so when it does not fit."""
    try:
        return _full_size_buffer(like, shape)
    except (MemoryError, RuntimeError) as error:  # torch.OutOfMemoryError is a RuntimeError
        text = str(error)
        if not isinstance(error, MemoryError) and not (
            "out of memory" in text or "can't allocate memory" in text
        ):
            raise
        channels, height, width = shape
        size = channels * height * width * like.element_size() / 1e9
        raise ImageMemoryError(
            f"the image of {width}x{height} pixels does not fit in memory: its full-size {what} "
            f"({channels} classes, {size:.1f} GB of {str(like.dtype)[6:]} on {like.device}) "
            "cannot be allocated; a smaller tile size does not help (tiles bound the "
            "network's memory, not this): segment a downscaled image, or run where more "
            "memory is free"
        ) from error


def tiled_logits(
    image: np.ndarray,
    logits_of: Callable[[np.ndarray], torch.Tensor],
    tile_size: int,
    tile_overlap: int,
    *,
    softmax: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """The ``(C, H, W)`` logits of an ``(H, W, 3)`` image, assembled from those of its tiles.

    Args:
        image: the whole image.
        logits_of: ``(h, w, 3)`` contiguous tile -> its ``(C, h, w)`` full-resolution logits.
        tile_size: the largest tile side.
        tile_overlap: overlap of neighbouring tiles (from :func:`tile_overlap_for`).
        softmax: return the probabilities (softmax over the classes), computed tile by tile
            into the one full-size buffer (no second full-size copy).
        progress: show a progress bar over the tiles.

    Raises:
        ImageMemoryError: the full-size buffer does not fit in memory.
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
                    what = "probabilities" if softmax else "logits"
                    out = _allocate(logits, (logits.shape[0], h, w), what)
                kept = logits[
                    :,
                    keep_y0 - start_y : keep_y1 - start_y,
                    keep_x0 - start_x : keep_x1 - start_x,
                ]
                out[:, keep_y0:keep_y1, keep_x0:keep_x1] = kept.softmax(0) if softmax else kept
                bar.update(1)
    assert out is not None
    return out
