"""Multi-scale inputs with max fusion (DeepLab v2's MSC), faithful to the Caffe release."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .interp import caffe_interp_size, resize_bilinear, scale_to_factors

__all__ = ["MultiScale", "MultiScaleOutput"]

_MODES = ("caffe", "pytorch")


class MultiScaleOutput(NamedTuple):
    """What :class:`MultiScale` returns in training mode.

    Attributes:
        per_scale: each branch's logits at its own size, in the order of
            :attr:`MultiScale.scales` (1.0 first, then descending: 1.0, 0.75, 0.5 by default).
        fused: element-wise max of all branches resized to the 1.0 branch's size.
    """

    per_scale: tuple[torch.Tensor, ...]
    fused: torch.Tensor


class MultiScale(nn.Module):
    """Run a segmentation model on several scales of its input and fuse the logits by max.

    The input itself (scale 1.0) is always a branch; ``scales`` adds the others. With
    ``mode="caffe"`` (default) every resize is the release's ``Interp`` layer: bilinear with the
    corners aligned, sizes by integer factors (scale ``s`` = ``zoom / shrink`` with factors up to 8,
    see :func:`deeplabv2.interp.scale_to_factors`: 0.75 = zoom 3 / shrink 4, 513 -> 385;
    0.5 = shrink 2, 513 -> 257). ``mode="pytorch"`` reproduces the widely used PyTorch port
    (kazuto1011/deeplab-pytorch): ``F.interpolate(scale_factor=s, align_corners=False)`` for the
    inputs and ``align_corners=False`` for the logits.

    Args:
        model: maps ``(B, 3, H, W)`` to logits ``(B, C, h, w)`` (e.g. :class:`DeepLabV2`).
        scales: extra input scales besides 1.0, each positive and not 1.0.
        mode: ``"caffe"`` or ``"pytorch"``.
        flip: in evaluation mode, also run the horizontally flipped input and average the fused
            logits of both (flipped back). Ignored in training mode.

    Calling it returns, in training mode, a :class:`MultiScaleOutput` (per-scale logits and the
    fused logits), so a training loop can sum one loss per branch plus one for the fused logits;
    in evaluation mode, the fused logits ``(B, C, h, w)`` at the 1.0 branch's size.
    """

    def __init__(
        self,
        model: nn.Module,
        scales: Sequence[float] = (0.5, 0.75),
        *,
        mode: str = "caffe",
        flip: bool = False,
    ) -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        extra = [float(s) for s in scales]
        if any(not s > 0 or s == 1.0 for s in extra) or len(set(extra)) != len(extra):
            raise ValueError(
                f"scales must be distinct positive numbers other than 1.0 (the input itself is "
                f"always used), got {tuple(scales)}"
            )
        if mode == "caffe":
            for s in extra:
                scale_to_factors(s)  # raises for scales with no zoom/shrink pair
        self.model = model
        self.scales: tuple[float, ...] = (1.0, *sorted(extra, reverse=True))
        self.mode = mode
        self.flip = bool(flip)

    def scaled_side(self, side: int, scale: float) -> int:
        """The side of the input of the branch at ``scale`` for an input side ``side``."""
        if scale == 1.0:
            return side
        if self.mode == "pytorch":
            return int(math.floor(side * scale))  # F.interpolate(scale_factor=...) floors
        zoom, shrink = scale_to_factors(scale)
        return caffe_interp_size(side, zoom=zoom, shrink=shrink)

    def min_input_size(self) -> int:
        """The smallest input side for which every branch's input has at least the wrapped
        model's ``min_input_size`` pixels (8 for :class:`~deeplabv2.models.DeepLabV2`)."""
        need = int(getattr(self.model, "min_input_size", 1))
        side = need
        while any(self.scaled_side(side, s) < need for s in self.scales):
            side += 1
        return side

    def _resize_input(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        if self.mode == "pytorch":
            return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        h, w = x.shape[-2:]
        return resize_bilinear(x, (self.scaled_side(h, scale), self.scaled_side(w, scale)))

    def _resize_logits(self, logits: torch.Tensor, size: torch.Size) -> torch.Tensor:
        if self.mode == "pytorch":
            return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return resize_bilinear(logits, (size[0], size[1]))

    def _branches(self, x: torch.Tensor) -> MultiScaleOutput:
        per_scale = tuple(
            self.model(x if s == 1.0 else self._resize_input(x, s)) for s in self.scales
        )
        size = per_scale[0].shape[-2:]
        fused = per_scale[0]
        for logits in per_scale[1:]:
            fused = torch.maximum(fused, self._resize_logits(logits, size))
        return MultiScaleOutput(per_scale, fused)

    def forward(self, x: torch.Tensor) -> Union[MultiScaleOutput, torch.Tensor]:
        """``(B, 3, H, W) float`` -> :class:`MultiScaleOutput` (training) or fused logits."""
        if self.training:
            return self._branches(x)
        fused = self._branches(x).fused
        if self.flip:
            flipped = self._branches(x.flip(-1)).fused.flip(-1)
            fused = (fused + flipped) / 2
        return fused

    def extra_repr(self) -> str:
        return f"scales={self.scales}, mode={self.mode!r}, flip={self.flip}"
