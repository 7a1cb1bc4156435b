"""The DeepLab v2 ResNet family: the network, its builder and how its checkpoints are read.

* :class:`DeepLabV2`: ResNet-101 with atrous convolution (output stride 8) and ASPP, as
  released in Caffe; the builder :func:`deeplab_v2_resnet101`.
* The Caffe layer names (after the original ResNet release): ``conv1`` + ``bn_conv1`` +
  ``scale_conv1`` for the stem, ``res{stage}{block}_branch{2a,2b,2c,1}`` for the bottlenecks
  (blocks ``a, b, c`` for stages of 3 blocks, ``a, b1, b2, ...`` for longer ones: ``res3b3``,
  ``res4b22``), ``bn``/``scale`` in place of ``res`` for BatchNorm and Scale, and
  ``<head>_c0`` .. ``<head>_c3`` (e.g. ``fc1_voc12_c0``) for the ASPP branches.
* Dialects: the PyTorch port's keys (kazuto1011/deeplab-pytorch), torchvision's
  ``resnet101`` (an ImageNet initialisation), and the domain adaptation works' ``ResNetMulti``
  (AdaptSegNet's and ADVENT's, :mod:`deeplabv2.models.resnet_multi`).

Its weights entries (the release's, the port's, ImageNet initialisations) are data in
:mod:`deeplabv2.weights.zoo.deeplab_resnet`, which imports no torch (``deeplabv2 weights``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Optional

import torch

from ..data.transforms import CAFFE_MEAN_BGR
from ..errors import WeightsMismatchError
from ..protocol import PORT_PROTOCOL, RELEASE_PROTOCOL, UDA_PROTOCOL
from ._base import DeepLabBase, caffe_pool, check_input
from ._builder import Pretrained, build
from ._mapping import (
    CheckpointMapping,
    Dialect,
    LayerTable,
    describe_names,
    find_head_prefix,
)
from ._registry import register_mapping, register_model
from .aspp import ASPP
from .resnet import ResNet
from .resnet_multi import resnet_multi_dialects

__all__ = [
    "RESNET101",
    "DeepLabV2",
    "Levels",
    "caffe_block_name",
    "caffe_layer_table",
    "deeplab_v2_resnet101",
    "output_size",
]

_RESNET101_BLOCKS = (3, 4, 23, 3)


def output_size(size: int) -> int:
    """Side of DeepLab v2 ResNet-101's logits for an input side ``size``, with Caffe's rounding.

    conv1 (7x7, stride 2, pad 3) floors, pool1 (3x3, stride 2, pad 1) rounds up (Caffe pooling,
    with its rule that the last window must start inside the padded input), res3a (1x1, stride 2)
    floors: 513 -> 65, 321 -> 41, 500 -> 63, 375 -> 48.
    """
    if size < 1:
        raise ValueError(f"input side must be positive, got {size}")
    conv1 = (size - 1) // 2 + 1
    return (caffe_pool(conv1) - 1) // 2 + 1


class Levels(NamedTuple):
    """The logits of both heads of a multi-level network (:meth:`DeepLabV2.forward_levels`):
    ``main`` on ``layer4`` (what ``model(x)`` returns) and ``aux`` on ``layer3``, each
    ``(B, num_classes, h, w) float32``."""

    main: torch.Tensor
    aux: torch.Tensor


class DeepLabV2(DeepLabBase):
    """DeepLab v2 (Chen et al., TPAMI 2017) as released in Caffe: ResNet + ASPP, output stride 8.

    Input contract (the Caffe convention): ``(B, 3, H, W) float32`` **BGR** in 0..255 minus the
    per-channel mean (B, G, R) = (104.008, 116.669, 122.675), no division by a standard deviation.
    :func:`deeplabv2.data.to_caffe_input` converts RGB uint8 / PIL / float images to this.

    Output: logits ``(B, num_classes, h, w) float32`` with ``h = output_size(H)``,
    ``w = output_size(W)`` (513x513 -> 65x65, 321x321 -> 41x41, 500x375 -> 63x48); upsample with
    :func:`deeplabv2.interp.upsample_logits` (Caffe's zoom 8, corners aligned).

    BatchNorm is frozen (:class:`~deeplabv2.models.resnet.FrozenBatchNorm2d`): ``train()`` only
    affects what wraps the model (e.g. :class:`~deeplabv2.msc.MultiScale`).

    The variant of the domain adaptation works (AdaptSegNet's and ADVENT's ``ResNetMulti``,
    docs/uda.md) is this network with two options: ``aux_head=True`` adds their auxiliary
    ASPP on ``layer3`` (``aux``, 1024 channels in; :meth:`forward_levels` returns both heads'
    logits), and ``head_branches=2`` sums only the rate-6 and rate-12 branches of each head,
    as AdaptSegNet's code does.
    """

    default_protocol = RELEASE_PROTOCOL
    backbone: ResNet
    aux: Optional[ASPP]  # the auxiliary head on layer3 (None unless aux_head)

    def __init__(
        self,
        num_classes: int = 21,
        blocks: Sequence[int] = _RESNET101_BLOCKS,
        rates: Sequence[int] = (6, 12, 18, 24),
        head_branches: Optional[int] = None,
        aux_head: bool = False,
    ) -> None:
        variant: dict[str, Any] = {}
        if head_branches is not None:
            variant["head_branches"] = int(head_branches)
        if aux_head:
            variant["aux_head"] = True
        super().__init__(num_classes, blocks=list(blocks), rates=list(rates), **variant)
        self.backbone = ResNet(blocks=blocks)
        self.aspp = ASPP(self.backbone.out_channels, num_classes, rates, summed=head_branches)
        self.aux = None
        if aux_head:
            channels = self.backbone.stage_channels[2]
            self.aux = ASPP(channels, num_classes, rates, summed=head_branches)

    def _architecture(self) -> Optional[str]:
        if tuple(self.model_args["blocks"]) == _RESNET101_BLOCKS:
            return RESNET101.architecture
        return None

    def forward_levels(self, x: torch.Tensor) -> Levels:
        """Both heads' logits of a multi-level network (``aux_head=True``) in one pass:
        ``(B, 3, H, W)`` Caffe input -> :class:`Levels` ``(main, aux)``, each
        ``(B, num_classes, h, w)``; ``main`` equals ``model(x)``. AdaptSegNet's and ADVENT's
        ``forward`` return the same two as ``(aux, main)`` (their ``layer5``, ``layer6``).

        Raises:
            ValueError: the network has no auxiliary head.
        """
        if self.aux is None:
            raise ValueError(
                "this network has no auxiliary head: build it with aux_head=True (a multi-level "
                "file of AdaptSegNet or ADVENT has one: its layer5 on layer3)"
            )
        check_input(x)
        c4, c5 = self.backbone.forward_levels(x)
        return Levels(main=self.aspp(c5), aux=self.aux(c4))

    output_size = staticmethod(output_size)


#: Caffe branch suffix -> (convolution path, BatchNorm path) inside a ``Bottleneck``.
_BRANCHES = {
    "branch2a": ("conv1", "bn1"),
    "branch2b": ("conv2", "bn2"),
    "branch2c": ("conv3", "bn3"),
    "branch1": ("downsample.0", "downsample.1"),
}
_RESNET101_BLOCKS = (3, 4, 23, 3)


def caffe_block_name(stage_index: int, block_index: int, num_blocks: int) -> str:
    """Caffe name of a bottleneck: stage 0..3 (``res2``..``res5``), block 0.. -> ``res4b22``."""
    if block_index == 0:
        suffix = "a"
    elif num_blocks <= 3:
        suffix = chr(ord("a") + block_index)
    else:
        suffix = f"b{block_index}"
    return f"res{stage_index + 2}{suffix}"


def caffe_layer_table(
    blocks: Sequence[int] = _RESNET101_BLOCKS, head: str = "fc1_voc12", num_branches: int = 4
) -> LayerTable:
    """Every Caffe layer of DeepLab v2 ResNet that has parameters -> ``(module path, kind)``.

    E.g. ``res4b22_branch2c`` -> ``("backbone.layer3.22.conv3", "conv")``,
    ``scale4b22_branch2c`` -> ``("backbone.layer3.22.bn3", "scale")``, ``fc1_voc12_c2`` ->
    ``("aspp.convs.2", "conv")``.
    """
    table: LayerTable = {
        "conv1": ("backbone.conv1", "conv"),
        "bn_conv1": ("backbone.bn1", "bn"),
        "scale_conv1": ("backbone.bn1", "scale"),
    }
    for stage, count in enumerate(blocks):
        for block in range(count):
            name = caffe_block_name(stage, block, count)
            prefix = f"backbone.layer{stage + 1}.{block}"
            for branch, (conv, bn) in _BRANCHES.items():
                if branch == "branch1" and block != 0:
                    continue
                table[f"{name}_{branch}"] = (f"{prefix}.{conv}", "conv")
                table[f"bn{name[3:]}_{branch}"] = (f"{prefix}.{bn}", "bn")
                table[f"scale{name[3:]}_{branch}"] = (f"{prefix}.{bn}", "scale")
    for index in range(num_branches):
        table[f"{head}_c{index}"] = (f"aspp.convs.{index}", "conv")
    return table


def _resnet_head(names: Iterable[str]) -> LayerTable:
    backbone = RESNET101.backbone
    prefix = find_head_prefix(
        (n for n in names if n not in backbone), r"(.+)_c(\d)", {"0", "1", "2", "3"},
        "fc1_voc12_c0 .. fc1_voc12_c3",
    )  # fmt: skip
    return {f"{prefix}_c{i}": (f"aspp.convs.{i}", "conv") for i in range(4)}


_PORT_BRANCH = {
    "reduce": ("conv1", "bn1"),
    "conv3x3": ("conv2", "bn2"),
    "increase": ("conv3", "bn3"),
    "shortcut": ("downsample.0", "downsample.1"),
    "proj": ("downsample.0", "downsample.1"),
}


def _resnet_port_key(key: str) -> Optional[str]:
    """One key of kazuto1011/deeplab-pytorch's DeepLab v2 / v1 ResNet-101 -> ours (or None).

    Accepts ``base.layer2.block1.reduce.conv.weight`` (v2), ``layer2.block1.shortcut.bn.bias``
    (the v1 COCO init), older ``proj``/``aspp.stages.c0`` spellings and a ``module.`` prefix.
    """
    key = re.sub(r"^(module\.)?(base\.|scale\.)?", "", key)
    match = re.fullmatch(r"layer1\.conv1\.(conv|bn)\.(\w+)", key)
    if match:
        return f"backbone.{'conv1' if match.group(1) == 'conv' else 'bn1'}.{match.group(2)}"
    match = re.fullmatch(r"layer([2-5])\.block(\d+)\.(\w+)\.(conv|bn)\.(\w+)", key)
    if match and match.group(3) in _PORT_BRANCH:
        stage, block, branch, part, entry = match.groups()
        conv, bn = _PORT_BRANCH[branch]
        module = conv if part == "conv" else bn
        return f"backbone.layer{int(stage) - 1}.{int(block) - 1}.{module}.{entry}"
    match = re.fullmatch(r"aspp\.(?:stages\.)?c(\d+)\.(weight|bias)", key)
    if match:
        return f"aspp.convs.{match.group(1)}.{match.group(2)}"
    return None


def _translate_port(
    tensors: Mapping[str, torch.Tensor], source: str, lenient: bool
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in tensors.items():
        if key.endswith("num_batches_tracked"):
            continue
        mapped = _resnet_port_key(key)
        if mapped is None:
            unknown.append(key)
        else:
            out[mapped] = value
    if unknown and not lenient:
        raise WeightsMismatchError(
            f"{source}: entries that are not {RESNET101.architecture} parameters: "
            f"{describe_names(unknown)} (a backbone initialisation loads with --backbone-only)"
        )
    return out


_PORT = Dialect(
    name="port",
    protocol=PORT_PROTOCOL,
    matches=lambda tensors: any(_resnet_port_key(k) for k in tensors),
    translate=_translate_port,
)

# torchvision's ImageNet normalisation (RGB / 255, then minus mean, over std)
_TORCHVISION_MEAN = (0.485, 0.456, 0.406)
_TORCHVISION_STD = (0.229, 0.224, 0.225)


def _translate_torchvision(
    tensors: Mapping[str, torch.Tensor], source: str, lenient: bool
) -> dict[str, torch.Tensor]:
    """torchvision's ``resnet101`` -> our backbone (an approximation: see docs/training.md).

    The module names are the same (``layer3.22.conv3``); the classifier ``fc`` is dropped.
    ``conv1`` is rescaled from torchvision's input (RGB / 255 normalised by the ImageNet mean
    and std) to ours (BGR, 0..255, minus the Caffe mean), and the constant the two means leave
    is moved into ``bn1``'s running mean (exact away from the image border).
    """
    out = {
        f"backbone.{key}": value.clone()
        for key, value in tensors.items()
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked")
    }
    weight = out["backbone.conv1.weight"].double()  # (64, 3, 7, 7), RGB
    std = torch.tensor(_TORCHVISION_STD, dtype=torch.float64).view(1, 3, 1, 1)
    mean = torch.tensor(_TORCHVISION_MEAN, dtype=torch.float64)
    caffe_rgb = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64).flip(0)
    offset = (caffe_rgb / 255 - mean) / std.view(3)  # x_tv = x_ours_rgb / (255 std) + offset
    constant = (weight.sum(dim=(2, 3)) * offset).sum(dim=1)  # conv1 of the constant image
    out["backbone.conv1.weight"] = (weight / (255 * std)).flip(1).float()  # to BGR
    bn_mean = out["backbone.bn1.running_mean"].double()
    out["backbone.bn1.running_mean"] = (bn_mean - constant).float()
    return out


_TORCHVISION = Dialect(
    name="torchvision",
    protocol=None,
    matches=lambda tensors: (
        {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "fc.weight"} <= set(tensors)
    ),  # fmt: skip
    translate=_translate_torchvision,
)

RESNET101 = register_mapping(
    CheckpointMapping(
        architecture="deeplab_v2_resnet101",
        backbone=caffe_layer_table(head="", num_branches=0),
        find_head=lambda names: _resnet_head(names),
        is_head=lambda key: key.startswith(("aspp.", "aux.")),
        head_weight="aspp.convs.0.weight",
        dialects=(_TORCHVISION, _PORT, *resnet_multi_dialects(UDA_PROTOCOL)),
        caffe_signature=("res5c_branch2c", "res4b22_branch2c"),
        release_protocol=RELEASE_PROTOCOL,
    )
)


@register_model
def deeplab_v2_resnet101(
    pretrained: Pretrained = None, num_classes: Optional[int] = None, **kwargs: Any
) -> DeepLabV2:
    """DeepLab v2 ResNet-101 with ASPP-L (rates 6, 12, 18, 24), as in the Caffe release.

    Args:
        pretrained: None for random initialisation (ASPP N(0, 0.01)); True for the default
            weights (``"voc12"``); a registry name (``deeplabv2.weights.list_weights()``, e.g.
            ``"voc12"`` or ``"deeplab_v2_resnet101.cocostuff164k"``); a local ``.safetensors``
            / ``.pth`` / ``.caffemodel`` file; ``"hf-hub:<owner>/<repo>[/<filename>]"``; or a
            registry entry (``deeplabv2.weights.get_weights("voc12")``, torchvision style).
        num_classes: output classes; default: the weights' (21 without weights). A value that
            differs from the weights' keeps their backbone and initialises the head (a warning);
            with it, weights without a head (a backbone) load too. Without it, a file that has
            no head and does not say it is backbone-only is refused.
        **kwargs: ``cache_dir`` (Hugging Face Hub cache directory), ``local_files_only``
            (never touch the network; also ``HF_HUB_OFFLINE=1``), ``progress`` (a progress bar
            for URL downloads), and :class:`DeepLabV2`'s ``rates``.

    Returns:
        The model; in eval mode when weights were loaded. ``model.class_names`` holds the class
        names of the loaded head (empty when unknown) and ``model.pretrained_info`` where the
        weights came from, what they have seen and their test protocol.
    """
    return build(
        RESNET101, DeepLabV2, pretrained, num_classes, fixed={"blocks": _RESNET101_BLOCKS}, **kwargs
    )
