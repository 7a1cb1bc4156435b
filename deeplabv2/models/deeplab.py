"""The DeepLab v2 networks of the Caffe release and their builders.

* :class:`DeepLabV2`: ResNet-101 with atrous convolution and ASPP (``deeplab_v2_resnet101``);
* :class:`DeepLabVGG16`: VGG-16 with DeepLab-ASPP-L (``deeplab_v2_vgg16``) or the single
  DeepLab-LargeFOV branch (``deeplab_largefov_vgg16``).

All take the Caffe input convention and give logits at output stride 8.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, Optional, Union

import torch
from torch import nn

from ._builder import build
from ._checkpoint import LARGEFOV_VGG16, RESNET101, VGG16_ASPP
from ._hub import HubMixin
from ._registry import register_model
from .aspp import ASPP, VGGASPP
from .resnet import ResNet
from .vgg import VGG16

__all__ = [
    "MIN_INPUT_SIZE",
    "DeepLabV2",
    "DeepLabVGG16",
    "check_input",
    "deeplab_largefov_vgg16",
    "deeplab_v2_resnet101",
    "deeplab_v2_vgg16",
    "output_size",
]

#: The smallest input side accepted: one cell of the output stride (8 pixels).
MIN_INPUT_SIZE = 8

Pretrained = Union[None, bool, str, os.PathLike]


def _caffe_pool(size: int, kernel: int = 3, stride: int = 2, pad: int = 1) -> int:
    """Caffe pooling output: rounded up, minus a last window that would start in the padding."""
    out = math.ceil((size + 2 * pad - kernel) / stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def output_size(size: int) -> int:
    """Side of DeepLab v2 ResNet-101's logits for an input side ``size``, with Caffe's rounding.

    conv1 (7x7, stride 2, pad 3) floors, pool1 (3x3, stride 2, pad 1) rounds up (Caffe pooling,
    with its rule that the last window must start inside the padded input), res3a (1x1, stride 2)
    floors: 513 -> 65, 321 -> 41, 500 -> 63, 375 -> 48.
    """
    if size < 1:
        raise ValueError(f"input side must be positive, got {size}")
    conv1 = (size - 1) // 2 + 1
    return (_caffe_pool(conv1) - 1) // 2 + 1


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


class _DeepLab(HubMixin, nn.Module):
    """What every DeepLab network shares: ``backbone`` -> ``aspp`` (the head), metadata, and
    the Hugging Face Hub methods (``save_pretrained``, ``from_pretrained``, ``push_to_hub``)."""

    output_stride = 8
    #: The smallest input side the network accepts (one cell of the output stride).
    min_input_size = MIN_INPUT_SIZE
    #: The builder that makes this network (set by the builders; None for a custom one).
    architecture: Optional[str] = None

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = int(num_classes)
        #: Class names of the loaded weights' head, index = output channel (empty if unknown).
        self.class_names: tuple[str, ...] = ()
        #: Where the loaded weights came from and how they were evaluated (empty without).
        self.weights_info: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) float`` BGR mean-subtracted -> ``(B, num_classes, h, w)`` logits."""
        check_input(x)
        return self.aspp(self.backbone(x))

    @staticmethod
    def output_size(size: int) -> int:  # pragma: no cover - every subclass defines it
        raise NotImplementedError


class DeepLabV2(_DeepLab):
    """DeepLab v2 (Chen et al., TPAMI 2017) as released in Caffe: ResNet + ASPP, output stride 8.

    Input contract (the Caffe convention): ``(B, 3, H, W) float32`` **BGR** in 0..255 minus the
    per-channel mean (B, G, R) = (104.008, 116.669, 122.675), no division by a standard deviation.
    :func:`deeplabv2.data.to_caffe_input` converts RGB uint8 / PIL / float images to this.

    Output: logits ``(B, num_classes, h, w) float32`` with ``h = output_size(H)``,
    ``w = output_size(W)`` (513x513 -> 65x65, 321x321 -> 41x41, 500x375 -> 63x48); upsample with
    :func:`deeplabv2.interp.upsample_logits` (Caffe's zoom 8, corners aligned).

    BatchNorm is frozen (:class:`~deeplabv2.models.resnet.FrozenBatchNorm2d`): ``train()`` only
    affects what wraps the model (e.g. :class:`~deeplabv2.msc.MultiScale`).
    """

    def __init__(
        self,
        num_classes: int = 21,
        blocks: Sequence[int] = (3, 4, 23, 3),
        rates: Sequence[int] = (6, 12, 18, 24),
    ) -> None:
        super().__init__(num_classes)
        self.backbone = ResNet(blocks=blocks)
        self.aspp = ASPP(self.backbone.out_channels, num_classes, rates)

    output_size = staticmethod(output_size)


class DeepLabVGG16(_DeepLab):
    """DeepLab's VGG-16 networks as released in Caffe, output stride 8.

    ``large_fov=False``: DeepLab v2 ASPP-L (four ``fc6_i -> fc7_i -> fc8_i`` branches at rates
    6, 12, 18, 24, summed); ``large_fov=True``: DeepLab-LargeFOV (``pool5a``, one branch at
    rate 12). Same input convention and output as :class:`DeepLabV2`; logits are
    ``(B, num_classes, h, w)`` with ``h = output_size(H)`` (513 -> 65, 321 -> 41, 500 -> 64).
    Dropout in the head is active in training mode.
    """

    def __init__(
        self,
        num_classes: int = 21,
        rates: Optional[Sequence[int]] = None,
        large_fov: bool = False,
    ) -> None:
        super().__init__(num_classes)
        if rates is None:
            rates = (12,) if large_fov else (6, 12, 18, 24)
        self.backbone = VGG16(pool5a=large_fov)
        self.aspp = VGGASPP(self.backbone.out_channels, num_classes, rates)

    @staticmethod
    def output_size(size: int) -> int:
        """Side of the logits for an input side ``size``: three Caffe max pools of stride 2."""
        if size < 1:
            raise ValueError(f"input side must be positive, got {size}")
        for _ in range(3):
            size = _caffe_pool(size)
        return size


@register_model
def deeplab_v2_resnet101(
    pretrained: Pretrained = None,
    num_classes: Optional[int] = None,
    *,
    cache_dir: Union[None, str, os.PathLike] = None,
    local_files_only: bool = False,
    progress: bool = True,
    **kwargs: Any,
) -> DeepLabV2:
    """DeepLab v2 ResNet-101 with ASPP-L (rates 6, 12, 18, 24), as in the Caffe release.

    Args:
        pretrained: None for random initialisation (ASPP N(0, 0.01)); True for the default
            weights (``"voc12"``); a registry name (``deeplabv2.weights.list_weights()``, e.g.
            ``"voc12"`` or ``"deeplab_v2_resnet101.cocostuff164k"``); a local ``.safetensors``
            / ``.pth`` / ``.caffemodel`` file; or ``"hf-hub:<owner>/<repo>[/<filename>]"``.
        num_classes: output classes; default: the weights' (21 without weights). A value that
            differs from the weights' keeps their backbone and initialises the head (a warning);
            with it, weights without a head (a backbone) load too. Without it, a file that has
            no head and does not say it is backbone-only is refused.
        cache_dir: Hugging Face Hub cache directory.
        local_files_only: never touch the network (also: ``HF_HUB_OFFLINE=1``).
        progress: progress bar for URL downloads.
        **kwargs: passed to :class:`DeepLabV2` (``rates``).

    Returns:
        The model; in eval mode when weights were loaded. ``model.class_names`` holds the class
        names of the loaded head (empty when unknown) and ``model.weights_info`` where the
        weights came from and their test protocol.
    """
    return build(
        RESNET101,
        lambda n: DeepLabV2(num_classes=n, blocks=(3, 4, 23, 3), **kwargs),
        pretrained,
        num_classes,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
    )


@register_model
def deeplab_v2_vgg16(
    pretrained: Pretrained = None,
    num_classes: Optional[int] = None,
    *,
    cache_dir: Union[None, str, os.PathLike] = None,
    local_files_only: bool = False,
    progress: bool = True,
) -> DeepLabVGG16:
    """DeepLab v2 VGG-16 with ASPP-L (four branches at rates 6, 12, 18, 24), as released.

    ``pretrained`` and the other arguments work as for :func:`deeplab_v2_resnet101`; registry
    names are those of ``deeplabv2.weights.list_weights("deeplab_v2_vgg16")`` (``"voc12"``,
    ``"imagenet"``).
    """
    return build(
        VGG16_ASPP,
        lambda n: DeepLabVGG16(num_classes=n),
        pretrained,
        num_classes,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
    )


@register_model
def deeplab_largefov_vgg16(
    pretrained: Pretrained = None,
    num_classes: Optional[int] = None,
    *,
    cache_dir: Union[None, str, os.PathLike] = None,
    local_files_only: bool = False,
    progress: bool = True,
) -> DeepLabVGG16:
    """DeepLab-LargeFOV VGG-16 (``pool5a``, one branch at rate 12), as released.

    ``pretrained`` and the other arguments work as for :func:`deeplab_v2_resnet101`; registry
    names are those of ``deeplabv2.weights.list_weights("deeplab_largefov_vgg16")``.
    """
    return build(
        LARGEFOV_VGG16,
        lambda n: DeepLabVGG16(num_classes=n, large_fov=True),
        pretrained,
        num_classes,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
    )
