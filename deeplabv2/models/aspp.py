"""Atrous Spatial Pyramid Pooling head of DeepLab v2 (``fc1_*_c0`` .. ``fc1_*_c3`` in Caffe)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ASPP"]


class ASPP(nn.Module):
    """Parallel 3x3 atrous convolutions whose outputs are **summed** (DeepLab v2, not v3).

    Each branch is a 3x3 convolution with bias, ``dilation = padding = rate``, initialised
    N(0, 0.01) with zero bias as in the release's prototxt.

    Args:
        in_channels: channels of the backbone features (2048 for ResNet-101).
        num_classes: output channels of every branch.
        rates: atrous rates, (6, 12, 18, 24) for DeepLab-v2 ASPP-L.

    Shapes: ``(B, in_channels, h, w) float`` in, ``(B, num_classes, h, w)`` out.
    """

    def __init__(
        self, in_channels: int, num_classes: int, rates: Sequence[int] = (6, 12, 18, 24)
    ) -> None:
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, kernel_size=3, padding=r, dilation=r, bias=True)
            for r in self.rates
        )
        for conv in self.convs:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs[0](x)
        for conv in self.convs[1:]:
            out = out + conv(x)
        return out
