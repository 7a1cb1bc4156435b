"""The VGG-16 trunk of DeepLab's Caffe releases, with atrous convolution (output stride 8).

Every layer detail is taken from the release prototxts (see ``docs/model.md`` for the sources):

* ``conv1_1`` .. ``conv5_3``: 3x3 convolutions with bias, each followed by a ReLU;
* ``pool1`` .. ``pool3``: max pooling 3x3, stride 2, pad 1 (Caffe rounds up: ``ceil_mode``);
* ``pool4``, ``pool5``: max pooling 3x3, stride **1**, pad 1, so the resolution is kept;
* ``conv5_1`` .. ``conv5_3``: dilation 2 (pad 2) to keep the field of view of the skipped strides;
* DeepLab-LargeFOV only: ``pool5a``, average pooling 3x3, stride 1, pad 1, before ``fc6``.

Module names are the Caffe layer names, so weights map one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VGG16"]

# Output channels of the convolutions of each stage (conv1_x .. conv5_x).
_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(nn.Module):
    """DeepLab's VGG-16 feature extractor (``conv1_1`` .. ``pool5`` [``pool5a``]).

    Args:
        pool5a: add DeepLab-LargeFOV's average pooling after ``pool5``.

    Shapes: ``(B, 3, H, W) float32`` in, ``(B, 512, h, w)`` out; each of the three stride-2
    pools maps ``n -> ceil((n - 1) / 2) + 1`` (Caffe's rounding), e.g. 513 -> 65, 321 -> 41.
    """

    out_channels = 512

    def __init__(self, pool5a: bool = False) -> None:
        super().__init__()
        in_channels = 3
        self.stages: list[tuple[str, ...]] = []
        for stage, widths in enumerate(_STAGES, start=1):
            dilation = 2 if stage == 5 else 1
            names = []
            for index, out_channels in enumerate(widths, start=1):
                name = f"conv{stage}_{index}"
                conv = nn.Conv2d(
                    in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=True
                )
                self.add_module(name, conv)
                names.append(name)
                in_channels = out_channels
            self.stages.append(tuple(names))
            stride = 2 if stage <= 3 else 1
            self.add_module(f"pool{stage}", nn.MaxPool2d(3, stride, padding=1, ceil_mode=True))
        # Caffe's AVE pooling divides by the window including the padding (here always 9)
        self.pool5a = nn.AvgPool2d(3, 1, padding=1, count_include_pad=True) if pool5a else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage, names in enumerate(self.stages, start=1):
            for name in names:
                x = F.relu(getattr(self, name)(x))
            x = getattr(self, f"pool{stage}")(x)
        return x if self.pool5a is None else self.pool5a(x)
