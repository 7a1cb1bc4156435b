"""The domain adaptation works' DeepLab v2 ResNet-101 files: two dialects of the ResNet family.

AdaptSegNet (wasidennis/AdaptSegNet ``model/deeplab_multi.py``) and ADVENT (valeoai/ADVENT
``advent/model/deeplabv2.py``) build the same ``ResNetMulti``: the Caffe backbone under
torchvision-like names (``conv1``, ``bn1``, ``layer1.0.conv1`` .. ``layer4.2.downsample.1``,
exactly our ``backbone.`` names) and one or two heads of four 3x3 convolutions with bias,
``layer{5,6}.conv2d_list.{0..3}`` (rates 6, 12, 18, 24): ``layer6`` on ``layer4`` (the main
head) and, in multi-level models, ``layer5`` on ``layer3`` (the auxiliary head). Their
initialisation files (``DeepLab_resnet_pretrained_init-f81d91e8.pth``, the release's
``init.caffemodel`` in the older PyTorch port's names) prefix every key with ``Scale.`` and hold
one head, ``layer5``, on ``layer4``; some saves add ``module.`` (``DataParallel``).

The keys do not say which code made a file, and the two compute different things with them:
AdaptSegNet's ``Classifier_Module.forward`` returns inside its loop, so each head sums only its
first two branches (rates 6 and 12), while ADVENT's sums all four. Hence two dialects with the
same keys: ``"adaptsegnet"`` builds :class:`~deeplabv2.models.DeepLabV2` with
``head_branches=2``, ``"advent"`` with all four; both add the auxiliary head (``aux_head=True``)
when the file has one. Which repository revisions were read is in docs/uda.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..errors import WeightsMismatchError
from ..protocol import EvalProtocol
from ._mapping import describe_names
from ._registry import Dialect
from .aspp import ASPP

__all__ = ["init_heads", "multi_level", "resnet_multi_dialects", "resnet_multi_key"]

_PREFIX = re.compile(r"^(?:module\.)?(?:Scale\.)?")
_BACKBONE = re.compile(
    r"(?:conv1\.weight|bn1\.\w+|layer[1-4]\.\d+\.(?:conv[123]|bn[123]|downsample\.[01])\.\w+)"
)
_HEAD = re.compile(r"layer([56])\.conv2d_list\.(\d+)\.(weight|bias)")
_MAIN_KEY = "layer6.conv2d_list.0.weight"
_FIRST_BLOCK = "layer1.0.conv1.weight"


def _bare(tensors: Mapping[str, torch.Tensor]) -> set[str]:
    return {_PREFIX.sub("", key) for key in tensors}


def multi_level(tensors: Mapping[str, torch.Tensor]) -> bool:
    """Whether a ``ResNetMulti`` state dict has both heads (``layer5`` is then the auxiliary
    head on ``layer3``; alone, ``layer5`` is the head on ``layer4``)."""
    keys = _bare(tensors)
    return _MAIN_KEY in keys and "layer5.conv2d_list.0.weight" in keys


def resnet_multi_key(key: str, multi: bool) -> Optional[str]:
    """One ``ResNetMulti`` key -> ours, or None (``num_batches_tracked`` and foreign keys).

    ``layer3.22.conv3.weight`` -> ``backbone.layer3.22.conv3.weight``;
    ``layer6.conv2d_list.2.bias`` -> ``aspp.convs.2.bias``; ``layer5.conv2d_list.0.weight`` ->
    ``aux.convs.0.weight`` in a multi-level file (``multi``), else ``aspp.convs.0.weight``.
    """
    key = _PREFIX.sub("", key)
    if key.endswith("num_batches_tracked"):
        return None
    if _BACKBONE.fullmatch(key):
        return f"backbone.{key}"
    match = _HEAD.fullmatch(key)
    if match is None:
        return None
    layer, branch, entry = match.groups()
    head = "aux" if layer == "5" and multi else "aspp"
    return f"{head}.convs.{branch}.{entry}"


def _matches(tensors: Mapping[str, torch.Tensor]) -> bool:
    """Every key is a ``ResNetMulti`` key (a torchvision ResNet's ``fc`` is not)."""
    keys = _bare(tensors)
    if _FIRST_BLOCK not in keys:
        return False
    multi = multi_level(tensors)
    return all(key.endswith("num_batches_tracked") or resnet_multi_key(key, multi) for key in keys)


def _translate(
    tensors: Mapping[str, torch.Tensor], source: str, lenient: bool
) -> dict[str, torch.Tensor]:
    multi = multi_level(tensors)
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in tensors.items():
        mapped = resnet_multi_key(key, multi)
        if mapped is not None:
            out[mapped] = value
        elif not key.endswith("num_batches_tracked"):
            unknown.append(key)
    if unknown and not lenient:
        raise WeightsMismatchError(
            f"{source}: entries that are not ResNetMulti parameters: {describe_names(unknown)}"
        )
    return out


def _model_args(head_branches: Optional[int]) -> Callable[[Mapping[str, torch.Tensor]], dict]:
    def model_args(tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        args: dict[str, Any] = {} if head_branches is None else {"head_branches": head_branches}
        if multi_level(tensors):
            args["aux_head"] = True
        return args

    return model_args


def init_heads(model: nn.Module) -> None:
    """Initialise the heads of a new ``ResNetMulti`` as both works do before training: every
    convolution weight N(0, 0.01) and the biases left at PyTorch's default,
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with ``fan_in = in_channels * 9`` (their
    ``Classifier_Module`` sets only the weights). ``model``: a
    :class:`~deeplabv2.models.DeepLabV2` (``aspp`` and the optional ``aux``)."""
    for head in (m for m in model.modules() if isinstance(m, ASPP)):
        for conv in (c for c in head.modules() if isinstance(c, nn.Conv2d)):
            assert conv.bias is not None  # every head convolution has one
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            bound = 1.0 / math.sqrt(conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1])
            nn.init.uniform_(conv.bias, -bound, bound)


def resnet_multi_dialects(protocol: EvalProtocol) -> tuple[Dialect, Dialect]:
    """The ``"adaptsegnet"`` and ``"advent"`` dialects (in that order: a file that does not
    name its code base is read as AdaptSegNet's, whose head most works copied, with a note).
    ``protocol``: how their weights are evaluated (Cityscapes resized to 1024x512)."""
    return (
        Dialect(
            name="adaptsegnet",
            protocol=protocol,
            matches=_matches,
            translate=_translate,
            description="AdaptSegNet's ResNetMulti (each head sums its rate-6 and rate-12 "
            "branches)",
            model_args=_model_args(2),
            init_head=init_heads,
        ),
        Dialect(
            name="advent",
            protocol=protocol,
            matches=_matches,
            translate=_translate,
            description="ADVENT's ResNetMulti (each head sums its four branches)",
            model_args=_model_args(None),
            init_head=init_heads,
        ),
    )
