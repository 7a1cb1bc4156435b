"""Resizing with the semantics of the Caffe ``Interp`` layer of the DeepLab release.

Caffe's ``Interp`` is bilinear interpolation with the corners aligned (PyTorch's
``align_corners=True``). Its output size comes from integer factors: first a shrink,
``n -> (n - 1) // shrink + 1``, then a zoom, ``n -> n + (n - 1) * (zoom - 1)``. The release uses
shrink 4 + zoom 3 for the 0.75 input (513 -> 385, 321 -> 241), shrink 2 for the 0.5 input
(513 -> 257) and zoom 8 from logits to image (65 -> 513). Both rules keep pixel ``i`` of the
output on pixel ``i * shrink / zoom`` of the input exactly, which is why the release uses them.
"""

from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn.functional as F

__all__ = [
    "caffe_interp_size",
    "resize_bilinear",
    "scale_to_factors",
    "upsample_logits",
]


def caffe_interp_size(size: int, zoom: int = 1, shrink: int = 1) -> int:
    """Output side of Caffe's ``Interp`` for input side ``size``: shrink first, then zoom."""
    if size < 1 or zoom < 1 or shrink < 1:
        raise ValueError(
            f"size, zoom and shrink must be positive integers, got {size}, {zoom}, {shrink}"
        )
    size = (size - 1) // shrink + 1
    return size + (size - 1) * (zoom - 1)


def scale_to_factors(scale: float, max_factor: int = 8) -> tuple[int, int]:
    """The ``(zoom, shrink)`` pair of integers at most ``max_factor`` nearest to ``scale``.

    0.75 -> (3, 4), 0.5 -> (1, 2), 1.5 -> (3, 2), 0.6 -> (3, 5), 0.33 -> (1, 3).
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    fraction = Fraction(scale).limit_denominator(max_factor)
    if fraction.numerator > max_factor or fraction == 0:
        raise ValueError(
            f"scale {scale} cannot be written as zoom/shrink with factors up to {max_factor}"
        )
    return fraction.numerator, fraction.denominator


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Caffe ``Interp``: bilinear, corners aligned. ``(B, C, H, W) float`` -> ``(B, C, *size)``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def upsample_logits(logits: torch.Tensor, size: tuple[int, int], factor: int = 8) -> torch.Tensor:
    """Logits at output stride ``factor`` -> the input's ``size``, as the release does it.

    Caffe zooms the logits by 8 with the corners aligned (65 -> 513), which puts logit ``i`` on
    input pixel ``8 i`` exactly, and crops to the image (the release pads images to 513x513).
    Where the zoomed map is smaller than ``size`` (an unpadded input whose side is not
    ``8 k + 1``, e.g. 500 -> 63 -> 497), the last ``size - zoomed`` rows/columns repeat the edge,
    which keeps that alignment instead of stretching the map.

    Shapes: ``(B, C, h, w) float`` -> ``(B, C, H, W)`` with ``(H, W) = size``.
    """
    if logits.dim() != 4:
        raise ValueError(f"expected logits of shape (B, C, h, w), got {tuple(logits.shape)}")
    height, width = size
    zoomed = [caffe_interp_size(n, zoom=factor) for n in logits.shape[-2:]]
    if isinstance(height, int) and isinstance(width, int):  # not symbolic (ONNX export)
        if height > zoomed[0] + factor or width > zoomed[1] + factor:
            raise ValueError(
                f"{tuple(logits.shape[-2:])} logits cannot cover a {height}x{width} input at "
                f"stride {factor}: they are not this input's logits"
            )
    out = F.interpolate(logits, size=zoomed, mode="bilinear", align_corners=True)
    # A stride-`factor` network gives h >= H / factor logits, so the zoomed map falls short of the
    # input by less than `factor` rows: padding by `factor` then cropping covers every case
    # without a branch on the sizes (which keeps the function exportable with dynamic shapes).
    out = F.pad(out, (0, factor, 0, factor), mode="replicate")
    return out[..., :height, :width]
