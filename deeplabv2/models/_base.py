"""What every DeepLab network shares: the input checks, Caffe's pooling arithmetic, and the
base class (``backbone`` -> ``aspp``, metadata, the Hugging Face Hub methods)."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

from ..protocol import RELEASE_PROTOCOL, EvalProtocol, PretrainedInfo
from .hub_mixin import HubMixin

__all__ = ["MIN_INPUT_SIZE", "DeepLabBase", "caffe_pool", "check_input"]

#: The smallest input side accepted: one cell of the output stride (8 pixels).
MIN_INPUT_SIZE = 8


def caffe_pool(size: int, kernel: int = 3, stride: int = 2, pad: int = 1) -> int:
    """Caffe pooling output: rounded up, minus a last window that would start in the padding."""
    out = math.ceil((size + 2 * pad - kernel) / stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def check_input(x: Any) -> None:
    """Raise a ValueError unless ``x`` is a ``(B, 3, H, W)`` floating tensor of usable size."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"DeepLab expects a torch.Tensor of shape (B, 3, H, W), got {type(x).__name__}; "
            "convert images with deeplabv2.data.to_caffe_input"
        )
    if x.dim() != 4:
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(
            f"DeepLab expects a 4-D input (B, 3, H, W), got shape {tuple(x.shape)}{hint}"
        )
    if x.shape[1] != 3:
        raise ValueError(
            f"DeepLab expects 3 input channels (BGR), got {x.shape[1]} in shape "
            f"{tuple(x.shape)}; for (B, H, W, 3) images use x.permute(0, 3, 1, 2)"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"DeepLab expects a floating-point input (BGR, 0..255 minus the mean), got dtype "
            f"{x.dtype}; convert uint8 images with deeplabv2.data.to_caffe_input"
        )
    if min(x.shape[-2:]) < MIN_INPUT_SIZE:
        raise ValueError(
            f"input of {x.shape[-2]}x{x.shape[-1]} pixels is too small for output stride 8: "
            f"both sides must be at least {MIN_INPUT_SIZE} pixels"
        )


class DeepLabBase(HubMixin, nn.Module):
    """What every DeepLab network shares: ``backbone`` -> ``aspp`` (the head), metadata, and
    the Hugging Face Hub methods (``save_pretrained``, ``from_pretrained``, ``push_to_hub``).

    A family's class sets ``default_protocol`` and implements :meth:`output_size` and
    :meth:`_architecture`; its constructor passes the arguments that shape the network (other
    than ``num_classes``) as ``model_args``, so a saved model can be rebuilt exactly.
    """

    output_stride = 8
    #: The smallest input side the network accepts (one cell of the output stride).
    min_input_size = MIN_INPUT_SIZE
    #: How the family's weights are evaluated when the weights do not say (the release's).
    default_protocol: EvalProtocol = RELEASE_PROTOCOL
    backbone: nn.Module  # (B, 3, H, W) -> features, set by the family
    aspp: nn.Module  # features -> (B, num_classes, h, w) logits

    def __init__(self, num_classes: int, **model_args: Any) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = int(num_classes)
        #: The constructor's arguments besides ``num_classes`` (JSON-able values).
        self.model_args: dict[str, Any] = dict(model_args)
        #: Class names of the loaded weights' head, index = output channel (empty if unknown).
        self.class_names: tuple[str, ...] = ()
        #: What the loaded weights are (None without weights).
        self.pretrained_info: Optional[PretrainedInfo] = None

    @property
    def architecture(self) -> Optional[str]:
        """The registered builder that makes this network, or None for a custom layout
        (e.g. a ResNet depth no builder has)."""
        return self._architecture()

    def _architecture(self) -> Optional[str]:  # pragma: no cover - every family defines it
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) float`` BGR mean-subtracted -> ``(B, num_classes, h, w)`` logits."""
        check_input(x)
        return self.aspp(self.backbone(x))

    @staticmethod
    def output_size(size: int) -> int:  # pragma: no cover - every family defines it
        """Side of the logits for an input side ``size``."""
        raise NotImplementedError
