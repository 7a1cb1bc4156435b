"""The registry's DeepLab v2 ResNet-101 weights (data, no torch): the release's, the PyTorch
port's, and ImageNet initialisations. The network, its builder and how its checkpoints are read
are in :mod:`deeplabv2.models.deeplab_resnet`; :mod:`deeplabv2.weights.registry` registers these
entries when it is imported (one :class:`~deeplabv2.weights.entry.Weights` per entry)."""

from __future__ import annotations

from typing import Any

from ...data.classes import COCOSTUFF_CLASSES, VOC_CLASSES
from ...protocol import PORT_PROTOCOL
from ..entry import Weights
from ..sources import (
    COCO_PIXELS,
    IMAGENET,
    PAPER,
    RELEASE_LICENSE,
    VOC_TRAINAUG,
    VOC_TRAINAUG_VAL,
)

__all__ = ["ARCHITECTURE", "DEFAULTS", "ENTRIES"]

#: The builder these weights are for (:func:`deeplabv2.models.deeplab_v2_resnet101`).
ARCHITECTURE = "deeplab_v2_resnet101"


_RESNET_ZIP = (
    "http://liangchiehchen.com/projects/released/deeplab_aspp_resnet101/prototxt_and_model.zip"
)
_PORT_URL = "https://github.com/kazuto1011/deeplab-pytorch/releases/download/v1.0/"
_MSRA = "https://github.com/KaimingHe/deep-residual-networks"
_TORCHVISION_URL = "https://download.pytorch.org/models/resnet101-63fe2227.pth"
_PORT_LICENSE = "MIT (the kazuto1011/deeplab-pytorch repository's licence)"
_PORT_README = (
    "kazuto1011/deeplab-pytorch README, Performance "
    "(commit 4219467fa5de07985f834f1bd8c04c186dc8f6d8)"
)
_VAL_WARNING = (
    "these weights were trained on VOC 2012 train+val: scores on VOC val are meaningless; use "
    "them for test-server submissions only, and 'voc12' for anything evaluated on val"
)


def _release(tag: str, member: str, lineage: tuple[str, ...], **fields: Any) -> Weights:
    """A trained ResNet-101 of the release's zip (VOC 2012 classes, the release's protocol)."""
    return Weights(
        architecture=ARCHITECTURE,
        tag=tag,
        num_classes=21,
        categories=VOC_CLASSES,
        url=_RESNET_ZIP,
        url_member=member,
        num_params=44_048_532,
        ops=188.886,
        file_size=176.7,
        license=RELEASE_LICENSE,
        lineage=lineage,
        **fields,
    )


def _backbone(tag: str, **fields: Any) -> Weights:
    """A ResNet-101 initialisation (no head)."""
    return Weights.initialisation(
        ARCHITECTURE, tag, num_params=42_500_160, file_size=170.5, **fields
    )


def _port(tag: str, file: str, **fields: Any) -> Weights:
    """A model trained by the PyTorch port itself (its protocol and licence), converted."""
    return Weights(
        architecture=ARCHITECTURE,
        tag=tag,
        url=_PORT_URL + file,
        protocol=PORT_PROTOCOL,
        **fields,
    )


def _port_cocostuff(tag: str, iterations: str, file: str, **fields: Any) -> Weights:
    """A COCO-Stuff model trained by the PyTorch port (182 classes)."""
    version = tag[len("cocostuff") :]
    return _port(
        tag,
        file,
        num_classes=182,
        categories=COCOSTUFF_CLASSES,
        description=(
            f"DeepLab v2 ResNet-101 (MSC) trained on COCO-Stuff {version} by the PyTorch port "
            f"kazuto1011/deeplab-pytorch ({iterations} iterations), converted."
        ),
        num_params=55_919_384,
        ops=239.037,
        file_size=224.2,
        license=_PORT_LICENSE + "; the training data, COCO-Stuff, has licences of its own",
        lineage=(IMAGENET, COCO_PIXELS, f"COCO-Stuff {version} (pixel labels)"),
        **fields,
    )


def _port_scores(
    accuracy: float, mean_accuracy: float, miou: float, fwiou: float
) -> dict[str, Any]:
    return {
        "pixel accuracy": accuracy,
        "mean accuracy": mean_accuracy,
        "mIoU": miou,
        "FWIoU": fwiou,
        "source": _PORT_README,
    }


#: The entries, in the order they are listed.
ENTRIES: tuple[Weights, ...] = (
    _release(
        "voc12",
        "train_iter_20000.caffemodel",
        (IMAGENET, COCO_PIXELS, VOC_TRAINAUG),
        description=(
            "DeepLab v2 ResNet-101 (MSC, ASPP-L) trained on PASCAL VOC 2012 trainaug "
            "(10,582 images) from the MS-COCO initialisation: the release's "
            "train_iter_20000.caffemodel (not train2_iter_20000, which also saw VOC val)."
        ),
        metrics={
            "VOC2012-val": {
                "mIoU": 76.35,
                "mIoU+CRF": 77.69,
                "source": PAPER + " (ResNet-101, MSC, COCO pretraining)",
            }
        },
        docs="Evaluate with MSC (0.5, 0.75, 1.0) on 513x513 mean-padded inputs.",
    ),
    _release(
        "voc12-trainval",
        "train2_iter_20000.caffemodel",
        (IMAGENET, COCO_PIXELS, VOC_TRAINAUG_VAL),
        description=(
            "DeepLab v2 ResNet-101 (MSC, ASPP-L) trained on VOC 2012 trainaug + val: the "
            "release's train2_iter_20000.caffemodel (the PyTorch port's convert.py writes it "
            "as deeplabv2_resnet101_msc-vocaug.pth; the port's released "
            "deeplabv2_resnet101_msc-vocaug-20000.pth is the port's own training on trainaug, "
            "another model). For VOC test-server submissions only."
        ),
        docs="Trained on VOC val: never evaluate it there.",
        warning=_VAL_WARNING,
    ),
    _backbone(
        "coco-init",
        description=(
            "The release's MS-COCO pretrained ResNet-101 (init.caffemodel), the starting "
            "point of DeepLab v2's VOC training; backbone only, the head is initialised."
        ),
        url=_RESNET_ZIP,
        url_member="init.caffemodel",
        docs="Backbone initialisation for training; pass num_classes.",
        license=RELEASE_LICENSE,
        lineage=(IMAGENET, COCO_PIXELS),
    ),
    _backbone(
        "imagenet",
        description=(
            "MSRA's ResNet-101 trained on ImageNet (ResNet-101-model.caffemodel of He et al., "
            "the layer names DeepLab v2 keeps, plus fc1000): the initialisation for training "
            "without COCO (e.g. weakly supervised segmentation); backbone only."
        ),
        url=_MSRA,
        url_member="ResNet-101-model.caffemodel",
        docs="Download ResNet-101-model.caffemodel from the page by hand (it is behind a "
        "OneDrive link); pass num_classes.",
        license="MIT (KaimingHe/deep-residual-networks); ImageNet's terms apply to the data",
        manual_download=True,
        lineage=(IMAGENET,),
    ),
    _backbone(
        "torchvision-imagenet",
        description=(
            "torchvision's ResNet-101 ImageNet weights (IMAGENET1K_V1) mapped onto this network: "
            "an approximation, since torchvision puts the stride on the 3x3 convolution and "
            "DeepLab on the first 1x1; conv1 is rescaled to the Caffe input convention."
        ),
        url=_TORCHVISION_URL,
        docs="Initialisation for training when the MSRA file cannot be had; pass num_classes.",
        license="BSD-3-Clause (torchvision); ImageNet's terms apply to the data",
        lineage=(IMAGENET,),
    ),
    _port_cocostuff(
        "cocostuff164k",
        "100k",
        "deeplabv2_resnet101_msc-cocostuff164k-100000.pth",
        metrics={
            "COCO-Stuff-164k-val": _port_scores(66.8, 51.2, 39.1, 51.5),
            "COCO-Stuff-164k-val+CRF": _port_scores(67.6, 51.5, 39.7, 52.3),
        },
        docs="Output i is COCO-Stuff label i (0..181, 255 ignored) of the 164k PNG labels.",
    ),
    _port_cocostuff(
        "cocostuff10k",
        "20k",
        "deeplabv2_resnet101_msc-cocostuff10k-20000.pth",
        metrics={"COCO-Stuff-10k-test": {"mIoU": 34.8, "mIoU+CRF": 35.6, "source": _PORT_README}},
        docs="Output i is COCO-Stuff label i (0..181, 255 ignored), as the port trains it.",
    ),
    _port(
        "voc12-port",
        "deeplabv2_resnet101_msc-vocaug-20000.pth",
        num_classes=21,
        categories=VOC_CLASSES,
        description=(
            "DeepLab v2 ResNet-101 (MSC) trained on VOC 2012 trainaug by the PyTorch port "
            "kazuto1011/deeplab-pytorch itself (configs/voc12.yaml: 20,000 iterations of 5 x "
            "iter_size 2 images, lr 2.5e-4, from the release's init.caffemodel converted to "
            "deeplabv1_resnet101-coco.pth), converted. Not a conversion of the release's "
            "train2_iter_20000.caffemodel (that is 'voc12-trainval')."
        ),
        metrics={
            "VOC2012-val": _port_scores(94.64, 86.50, 76.65, 90.41),
            "VOC2012-val+CRF": _port_scores(95.04, 86.64, 77.93, 91.06),
        },
        num_params=44_048_532,
        ops=188.886,
        file_size=176.7,
        license=_PORT_LICENSE + "; PASCAL VOC's terms apply to the data",
        lineage=(IMAGENET, COCO_PIXELS, VOC_TRAINAUG),
        docs="Evaluate with the port's protocol: its MSC resizing, images at their own size.",
    ),
)

#: What ``pretrained=True`` loads (full names).
DEFAULTS = (f"{ARCHITECTURE}.voc12",)
