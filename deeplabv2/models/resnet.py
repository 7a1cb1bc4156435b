"""Caffe-style ResNet-101 backbone of DeepLab v2, with atrous (dilated) convolution.

Differences from torchvision's ResNet, all taken from the Caffe release (deeplab-public-ver2):

* the stride of a downsampling block sits on its first 1x1 convolution (``branch2a``), not on
  the 3x3 convolution;
* the stem's max pool uses ``ceil_mode=True`` (Caffe's pooling rounds up);
* convolutions have no bias, BatchNorm is frozen (Caffe ``use_global_stats: true``, eps 1e-5);
* ``layer3`` and ``layer4`` keep stride 1 and use dilation 2 and 4 instead: output stride 8.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Bottleneck", "FrozenBatchNorm2d", "ResNet"]


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm with fixed statistics and affine parameters (Caffe ``BatchNorm`` + ``Scale``).

    Computes ``(x - running_mean) / sqrt(running_var + eps) * weight + bias`` in training and
    evaluation mode alike, so ``model.train()`` never updates the running statistics. ``weight``
    and ``bias`` are parameters (they appear in ``parameters()`` and the state dict) created with
    ``requires_grad=False``; call ``requires_grad_(True)`` on them to fine-tune the affine part.
    Its state is exactly Caffe's: ``weight``, ``bias``, ``running_mean``, ``running_var`` (no
    ``num_batches_tracked``, which a frozen layer has no use for).

    Shapes: ``(B, C, H, W) float`` in, same out.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(num_features, eps=eps, affine=True, track_running_stats=True)
        self.register_buffer("num_batches_tracked", None)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)

    def _load_from_state_dict(
        self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # A frozen layer keeps no batch count: accept (and drop) one from ordinary BatchNorm
        # checkpoints, and skip BatchNorm's upgrade step that would add it back.
        state_dict.pop(prefix + "num_batches_tracked", None)
        nn.Module._load_from_state_dict(self, state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class Bottleneck(nn.Module):
    """Caffe ResNet bottleneck: 1x1 (stride) -> 3x3 (dilation) -> 1x1 (x4), plus shortcut.

    Caffe names of a block ``res4b3``: ``conv1``/``bn1`` = ``res4b3_branch2a`` (+ ``bn``/``scale``),
    ``conv2`` = ``branch2b``, ``conv3`` = ``branch2c``, ``downsample`` = ``branch1`` (projection
    shortcut, first block of each stage only).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: bool = False,
    ) -> None:
        super().__init__()
        out_channels = mid_channels * self.expansion
        self.conv1 = _conv1x1(in_channels, mid_channels, stride)
        self.bn1 = FrozenBatchNorm2d(mid_channels)
        self.conv2 = nn.Conv2d(
            mid_channels,
            mid_channels,
            kernel_size=3,
            padding=dilation,
            dilation=dilation,
            bias=False,
        )
        self.bn2 = FrozenBatchNorm2d(mid_channels)
        self.conv3 = _conv1x1(mid_channels, out_channels)
        self.bn3 = FrozenBatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if downsample:
            self.downsample = nn.Sequential(
                _conv1x1(in_channels, out_channels, stride), FrozenBatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet(nn.Module):
    """Caffe DeepLab v2 ResNet backbone (ResNet-101 with ``blocks=(3, 4, 23, 3)``).

    Args:
        blocks: bottleneck blocks per stage (``res2`` .. ``res5``).
        strides: stride of the first block of each stage.
        dilations: dilation of every 3x3 convolution of each stage.

    Shapes: ``(B, 3, H, W) float32`` in, ``(B, 2048, h, w)`` out at output stride 8 with
    Caffe's rounding, see :func:`deeplabv2.models.output_size` (513 -> 65, 321 -> 41).
    """

    layer1: nn.Sequential  # res2..res5, added by name in __init__
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(
        self,
        blocks: Sequence[int] = (3, 4, 23, 3),
        strides: Sequence[int] = (1, 2, 1, 1),
        dilations: Sequence[int] = (1, 1, 2, 4),
    ) -> None:
        super().__init__()
        if not (len(blocks) == len(strides) == len(dilations) == 4):
            raise ValueError(
                f"blocks, strides and dilations need 4 entries each (res2..res5), got "
                f"{tuple(blocks)}, {tuple(strides)}, {tuple(dilations)}"
            )
        self.blocks = tuple(int(b) for b in blocks)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        in_channels = 64
        channels = []
        for index, (n, stride, dilation) in enumerate(zip(blocks, strides, dilations)):
            mid = 64 * 2**index
            stage = nn.Sequential(
                *(
                    Bottleneck(
                        in_channels if i == 0 else mid * Bottleneck.expansion,
                        mid,
                        stride=stride if i == 0 else 1,
                        dilation=dilation,
                        downsample=i == 0,
                    )
                    for i in range(n)
                )
            )
            self.add_module(f"layer{index + 1}", stage)
            in_channels = mid * Bottleneck.expansion
            channels.append(in_channels)
        #: Channels of the features of ``layer1`` .. ``layer4`` (256, 512, 1024, 2048).
        self.stage_channels = tuple(channels)
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_levels(x)[1]

    def forward_levels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The features of ``layer3`` (res4, ``(B, 1024, h, w)`` for ResNet-101) and of
        ``layer4`` (res5, ``(B, 2048, h, w)``): what a multi-level head (the UDA works'
        auxiliary head on ``layer3``) reads."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        c4 = self.layer3(x)
        return c4, self.layer4(c4)
