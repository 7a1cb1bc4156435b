"""DeepLab v2: the Caffe ResNet-101 backbone with atrous convolution and the ASPP head."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any, Optional, Union

import torch
from torch import nn

from ._registry import register_model
from .aspp import ASPP
from .resnet import ResNet

__all__ = ["MIN_INPUT_SIZE", "DeepLabV2", "check_input", "deeplab_v2_resnet101", "output_size"]

#: The smallest input side accepted: one cell of the output stride (8 pixels).
MIN_INPUT_SIZE = 8


def output_size(size: int) -> int:
    """Side of DeepLab v2's logits for an input side ``size``, with Caffe's rounding.

    conv1 (7x7, stride 2, pad 3) floors, pool1 (3x3, stride 2, pad 1) rounds up (Caffe pooling,
    with its rule that the last window must start inside the padded input), res3a (1x1, stride 2)
    floors: 513 -> 65, 321 -> 41, 500 -> 63, 375 -> 48.
    """
    if size < 1:
        raise ValueError(f"input side must be positive, got {size}")
    conv1 = (size - 1) // 2 + 1
    pool1 = -(-(conv1 - 1) // 2) + 1
    if (pool1 - 1) * 2 >= conv1 + 1:
        pool1 -= 1
    return (pool1 - 1) // 2 + 1


def check_input(x: Any) -> None:
    """Raise a ValueError unless ``x`` is a ``(B, 3, H, W)`` floating tensor of usable size."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"DeepLabV2 expects a torch.Tensor of shape (B, 3, H, W), got {type(x).__name__}; "
            "convert images with deeplabv2.data.to_caffe_input"
        )
    if x.dim() != 4:
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(
            f"DeepLabV2 expects a 4-D input (B, 3, H, W), got shape {tuple(x.shape)}{hint}"
        )
    if x.shape[1] != 3:
        raise ValueError(
            f"DeepLabV2 expects 3 input channels (BGR), got {x.shape[1]} in shape "
            f"{tuple(x.shape)}; for (B, H, W, 3) images use x.permute(0, 3, 1, 2)"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"DeepLabV2 expects a floating-point input (BGR, 0..255 minus the mean), got dtype "
            f"{x.dtype}; convert uint8 images with deeplabv2.data.to_caffe_input"
        )
    if min(x.shape[-2:]) < MIN_INPUT_SIZE:
        raise ValueError(
            f"input of {x.shape[-2]}x{x.shape[-1]} pixels is too small for output stride 8: "
            f"both sides must be at least {MIN_INPUT_SIZE} pixels"
        )


class DeepLabV2(nn.Module):
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

    output_stride = 8
    #: The smallest input side the network accepts (one cell of the output stride).
    min_input_size = MIN_INPUT_SIZE

    def __init__(
        self,
        num_classes: int = 21,
        blocks: Sequence[int] = (3, 4, 23, 3),
        rates: Sequence[int] = (6, 12, 18, 24),
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = int(num_classes)
        #: Class names of the loaded weights' head, index = output channel (empty if unknown).
        self.class_names: tuple[str, ...] = ()
        #: Where the loaded weights came from (empty without weights).
        self.weights_info: dict[str, Any] = {}
        self.backbone = ResNet(blocks=blocks)
        self.aspp = ASPP(self.backbone.out_channels, num_classes, rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) float`` BGR mean-subtracted -> ``(B, num_classes, h, w)`` logits."""
        check_input(x)
        return self.aspp(self.backbone(x))


@register_model
def deeplab_v2_resnet101(
    pretrained: Union[None, bool, str, os.PathLike] = None,
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
            weights (``"voc12"``); a registry name (``deeplabv2.weights.list_weights()``); a local
            ``.safetensors`` / ``.pth`` / ``.caffemodel`` file; or
            ``"hf-hub:<owner>/<repo>[/<filename>]"``.
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
        weights came from.
    """
    state: Optional[dict] = None
    info: dict[str, Any] = {}
    new_head = num_classes is not None
    if pretrained is not None and pretrained is not False:
        from ..weights.hub import load_pretrained  # weights code only when weights are asked for

        state, info = load_pretrained(
            pretrained,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            progress=progress,
            new_head=new_head,
        )
    weights_classes = info.get("num_classes")
    if num_classes is None:
        num_classes = weights_classes or 21
    model = DeepLabV2(num_classes=num_classes, blocks=(3, 4, 23, 3), **kwargs)
    if state is None:
        return model
    if weights_classes is None and not new_head:
        warnings.warn(
            f"the weights {info.get('weights') or info.get('source')} have no head (a backbone "
            f"initialisation): the ASPP head ({num_classes} classes) is initialised randomly; "
            "pass num_classes= to choose its size",
            stacklevel=2,
        )
    if weights_classes is not None and weights_classes != num_classes:
        warnings.warn(
            f"the weights {info.get('weights') or info.get('source')} have {weights_classes} "
            f"classes but num_classes={num_classes}: the backbone is loaded and the ASPP head is "
            "initialised randomly",
            stacklevel=2,
        )
        state = {k: v for k, v in state.items() if not k.startswith("aspp.")}
    head_loaded = any(k.startswith("aspp.") for k in state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(head_loaded or not k.startswith("aspp.") for k in missing):
        raise RuntimeError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    if head_loaded:
        model.class_names = tuple(info.get("categories", ()))
    model.weights_info = info
    return model.eval()
