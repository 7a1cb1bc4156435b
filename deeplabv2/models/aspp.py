"""Atrous Spatial Pyramid Pooling head of DeepLab v2 (``fc1_*_c0`` .. ``fc1_*_c3`` in Caffe)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import nn

__all__ = ["ASPP", "VGGASPP"]


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    """The bias of a convolution built with one."""
    assert conv.bias is not None
    return conv.bias


class ASPP(nn.Module):
    """Parallel 3x3 atrous convolutions whose outputs are **summed** (DeepLab v2, not v3).

    Each branch is a 3x3 convolution with bias, ``dilation = padding = rate``, initialised
    N(0, 0.01) with zero bias as in the release's prototxt.

    Args:
        in_channels: channels of the backbone features (2048 for ResNet-101).
        num_classes: output channels of every branch.
        rates: atrous rates, (6, 12, 18, 24) for DeepLab-v2 ASPP-L.
        summed: how many branches, from the first, are summed (default: all). AdaptSegNet's
            ``Classifier_Module`` returns inside its loop and so sums only the first two (rates
            6 and 12) although it holds, trains nothing of and saves all four: ``summed=2``
            computes its head exactly. The other branches stay in the state dict.

    Shapes: ``(B, in_channels, h, w) float`` in, ``(B, num_classes, h, w)`` out.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        rates: Sequence[int] = (6, 12, 18, 24),
        summed: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        if summed is not None and not 1 <= summed <= len(self.rates):
            raise ValueError(
                f"summed must be between 1 and the number of branches ({len(self.rates)}), "
                f"got {summed}"
            )
        self.summed = len(self.rates) if summed is None else int(summed)
        convs = [
            nn.Conv2d(in_channels, num_classes, kernel_size=3, padding=r, dilation=r, bias=True)
            for r in self.rates
        ]
        for conv in convs:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.zeros_(_bias(conv))
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs[0](x)
        for conv in self.convs[1 : self.summed]:
            out = out + conv(x)
        return out


class _FCBranch(nn.Module):
    """One branch of the VGG-16 heads: ``fc6`` (3x3, dilated) -> ``fc7`` (1x1) -> ``fc8`` (1x1)."""

    def __init__(
        self, in_channels: int, num_classes: int, rate: int, hidden: int, dropout: float
    ) -> None:
        super().__init__()
        self.fc6 = nn.Conv2d(in_channels, hidden, 3, padding=rate, dilation=rate)
        self.fc7 = nn.Conv2d(hidden, hidden, 1)
        self.fc8 = nn.Conv2d(hidden, num_classes, 1)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.fc8.weight, mean=0.0, std=0.01)  # the prototxt's gaussian filler
        nn.init.zeros_(_bias(self.fc8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(torch.relu(self.fc6(x)))
        x = self.dropout(torch.relu(self.fc7(x)))
        return self.fc8(x)


class VGGASPP(nn.Module):
    """The heads of DeepLab's VGG-16 models: parallel ``fc6 -> fc7 -> fc8`` branches, **summed**.

    Each branch is ``fc6`` (3x3, ``dilation = padding = rate``, 1024 channels) -> ReLU ->
    dropout 0.5 -> ``fc7`` (1x1, 1024) -> ReLU -> dropout 0.5 -> ``fc8`` (1x1, classes), as in
    the release prototxts. Rates ``(6, 12, 18, 24)`` give DeepLab-ASPP-L (Caffe layers ``fc6_1``
    .. ``fc8_voc12_4``), ``(12,)`` DeepLab-LargeFOV (``fc6``, ``fc7``, ``fc8_voc12``). Dropout
    is active in training mode only. ``fc8`` is initialised N(0, 0.01) with zero bias (the
    prototxts' fillers); ``fc6``/``fc7`` come from the ImageNet initialisation in the release
    and use PyTorch's default initialisation here.

    Shapes: ``(B, in_channels, h, w) float`` in, ``(B, num_classes, h, w)`` out.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        rates: Sequence[int] = (6, 12, 18, 24),
        hidden: int = 1024,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        self.branches = nn.ModuleList(
            _FCBranch(in_channels, num_classes, rate, hidden, dropout) for rate in self.rates
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out
