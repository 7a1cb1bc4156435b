"""The DeepLab VGG-16 family: DeepLab v2 ASPP-L and DeepLab-LargeFOV, their builders, how
their checkpoints are read (their weights entries are data in
:mod:`deeplabv2.weights.zoo.deeplab_vgg`, which imports no torch).

* :class:`DeepLabVGG16`: VGG-16 with DeepLab-ASPP-L (:func:`deeplab_v2_vgg16`) or the single
  DeepLab-LargeFOV branch (:func:`deeplab_largefov_vgg16`), as released in Caffe.
* Caffe names: the layer names themselves (``conv1_1`` .. ``conv5_3``),
  ``fc6_i``/``fc7_i``/``fc8_<data>_i`` (i = 1..4) for ASPP-L and ``fc6``/``fc7``/``fc8_<data>``
  for LargeFOV.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional

from ..protocol import VGG_RELEASE_PROTOCOL
from ._base import DeepLabBase, caffe_pool
from ._builder import Pretrained, build
from ._mapping import CheckpointMapping, LayerTable, find_head_prefix
from ._registry import register_mapping, register_model
from .aspp import VGGASPP
from .vgg import VGG16

__all__ = [
    "LARGEFOV_VGG16",
    "VGG16_ASPP",
    "DeepLabVGG16",
    "deeplab_largefov_vgg16",
    "deeplab_v2_vgg16",
]


class DeepLabVGG16(DeepLabBase):
    """DeepLab's VGG-16 networks as released in Caffe, output stride 8.

    ``large_fov=False``: DeepLab v2 ASPP-L (four ``fc6_i -> fc7_i -> fc8_i`` branches at rates
    6, 12, 18, 24, summed); ``large_fov=True``: DeepLab-LargeFOV (``pool5a``, one branch at
    rate 12). Same input convention and output as :class:`~deeplabv2.models.DeepLabV2`; logits
    are ``(B, num_classes, h, w)`` with ``h = output_size(H)`` (513 -> 65, 321 -> 41,
    500 -> 64). Dropout in the head is active in training mode.
    """

    default_protocol = VGG_RELEASE_PROTOCOL

    def __init__(
        self,
        num_classes: int = 21,
        rates: Optional[Sequence[int]] = None,
        large_fov: bool = False,
    ) -> None:
        if rates is None:
            rates = (12,) if large_fov else (6, 12, 18, 24)
        super().__init__(num_classes, rates=list(rates), large_fov=bool(large_fov))
        self.backbone = VGG16(pool5a=large_fov)
        self.aspp = VGGASPP(self.backbone.out_channels, num_classes, rates)

    def _architecture(self) -> Optional[str]:
        return (LARGEFOV_VGG16 if self.model_args["large_fov"] else VGG16_ASPP).architecture

    @staticmethod
    def output_size(size: int) -> int:
        """Side of the logits for an input side ``size``: three Caffe max pools of stride 2."""
        if size < 1:
            raise ValueError(f"input side must be positive, got {size}")
        for _ in range(3):
            size = caffe_pool(size)
        return size


_VGG_CONVS = [f"conv{s}_{i}" for s, n in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, n + 1)]


def _vgg_table(branches: Sequence[str]) -> LayerTable:
    """VGG-16 convolutions plus ``fc6``/``fc7`` of each branch suffix (``_1``.. or ``""``)."""
    table: LayerTable = {name: (f"backbone.{name}", "conv") for name in _VGG_CONVS}
    for index, suffix in enumerate(branches):
        for fc in ("fc6", "fc7"):
            table[f"{fc}{suffix}"] = (f"aspp.branches.{index}.{fc}", "conv")
    return table


def _vgg_head(names: Iterable[str], branches: Sequence[str], example: str) -> LayerTable:
    pattern = r"(fc8(?:_[A-Za-z0-9]+)*?)(_[1-4])" if branches != ("",) else r"(fc8(?:_.+)?)()"
    prefix = find_head_prefix(names, pattern, set(branches), example)
    return {
        f"{prefix}{suffix}": (f"aspp.branches.{index}.fc8", "conv")
        for index, suffix in enumerate(branches)
    }


_ASPP_BRANCHES = ("_1", "_2", "_3", "_4")

VGG16_ASPP = register_mapping(
    CheckpointMapping(
        architecture="deeplab_v2_vgg16",
        backbone=_vgg_table(_ASPP_BRANCHES),
        find_head=lambda names: _vgg_head(names, _ASPP_BRANCHES, "fc8_voc12_1 .. fc8_voc12_4"),
        is_head=lambda key: ".fc8." in key,
        head_weight="aspp.branches.0.fc8.weight",
        dialects=(),
        caffe_signature=("conv5_3", "fc6_1", "fc6_4"),
        release_protocol=VGG_RELEASE_PROTOCOL,
    )
)

LARGEFOV_VGG16 = register_mapping(
    CheckpointMapping(
        architecture="deeplab_largefov_vgg16",
        backbone=_vgg_table(("",)),
        find_head=lambda names: _vgg_head(names, ("",), "fc8_voc12"),
        is_head=lambda key: ".fc8." in key,
        head_weight="aspp.branches.0.fc8.weight",
        dialects=(),
        caffe_signature=("conv5_3", "fc6", "fc7"),
        release_protocol=VGG_RELEASE_PROTOCOL,
    )
)


@register_model
def deeplab_v2_vgg16(
    pretrained: Pretrained = None, num_classes: Optional[int] = None, **kwargs: Any
) -> DeepLabVGG16:
    """DeepLab v2 VGG-16 with ASPP-L (four branches at rates 6, 12, 18, 24), as released.

    ``pretrained``, ``num_classes`` and ``kwargs`` work as for
    :func:`~deeplabv2.models.deeplab_v2_resnet101`; registry names are those of
    ``deeplabv2.weights.list_weights("deeplab_v2_vgg16")`` (``"voc12"``, ``"imagenet"``).
    """
    return build(
        VGG16_ASPP, DeepLabVGG16, pretrained, num_classes, fixed={"large_fov": False}, **kwargs
    )


@register_model
def deeplab_largefov_vgg16(
    pretrained: Pretrained = None, num_classes: Optional[int] = None, **kwargs: Any
) -> DeepLabVGG16:
    """DeepLab-LargeFOV VGG-16 (``pool5a``, one branch at rate 12), as released.

    ``pretrained``, ``num_classes`` and ``kwargs`` work as for
    :func:`~deeplabv2.models.deeplab_v2_resnet101`; registry names are those of
    ``deeplabv2.weights.list_weights("deeplab_largefov_vgg16")``.
    """
    return build(
        LARGEFOV_VGG16, DeepLabVGG16, pretrained, num_classes, fixed={"large_fov": True}, **kwargs
    )
