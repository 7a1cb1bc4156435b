"""Inference fast path: fold frozen BatchNorm into the convolutions that precede it."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .resnet import Bottleneck, FrozenBatchNorm2d, ResNet

__all__ = ["fold_batchnorm"]

# (convolution, BatchNorm) pairs, as attribute paths, of each module type that owns them.
_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {
    ResNet: (("conv1", "bn1"),),
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
}
_DOWNSAMPLE = ("downsample.0", "downsample.1")


@torch.no_grad()
def _fold_pair(owner: nn.Module, conv_path: str, bn_path: str) -> None:
    conv = owner.get_submodule(conv_path)
    bn = owner.get_submodule(bn_path)
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"cannot fold {bn_path} ({type(bn).__name__}) into {conv_path}")
    if bn.running_mean is None or bn.running_var is None:
        raise TypeError(f"cannot fold {bn_path}: it keeps no running statistics")
    # Computed in float64 so the folded weights round only once.
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    new_bias = bn.bias.double() + (bias - bn.running_mean.double()) * scale
    conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
    conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype), requires_grad=False)
    conv.weight.requires_grad_(False)
    parent_path, _, name = bn_path.rpartition(".")
    parent = owner.get_submodule(parent_path) if parent_path else owner
    setattr(parent, name, nn.Identity())


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return an equivalent model whose frozen BatchNorms are folded into the preceding convs.

    Every :class:`FrozenBatchNorm2d` of the DeepLab v2 backbone becomes ``nn.Identity`` and its
    convolution gains the bias ``beta + (b - mean) * gamma / sqrt(var + eps)`` and the weight
    ``w * gamma / sqrt(var + eps)``. Outputs agree with the unfolded model to float32 rounding
    (relative error well below 1e-4); the folded parameters are not trainable.

    Args:
        model: any module containing this library's ``ResNet`` (e.g. ``DeepLabV2``,
            ``MultiScale``). Not modified unless ``inplace=True``.
        inplace: fold ``model`` itself instead of a deep copy.

    Raises:
        ValueError: if ``model`` contains no foldable BatchNorm (e.g. it is already folded).
    """
    folded = model if inplace else copy.deepcopy(model)
    count = 0
    for module in list(folded.modules()):
        pairs = list(_PAIRS.get(type(module), ()))
        if isinstance(module, Bottleneck) and module.downsample is not None:
            pairs.append(_DOWNSAMPLE)
        for conv_path, bn_path in pairs:
            if isinstance(module.get_submodule(bn_path), FrozenBatchNorm2d):
                _fold_pair(module, conv_path, bn_path)
                count += 1
    if count == 0:
        raise ValueError(
            "found no frozen BatchNorm to fold: the model is already folded or is not a "
            "deeplabv2 ResNet model"
        )
    return folded
