"""The registry's DeepLab v2 ResNet-101 weights (data, no torch): the release's, the PyTorch
port's, and ImageNet initialisations. The network, its builder and how its checkpoints are read
are in :mod:`deeplabv2.models.deeplab_resnet`; :mod:`deeplabv2.weights.registry` registers these
entries when it is imported (one :class:`~deeplabv2.weights.entry.Weights` per entry)."""

from __future__ import annotations

from typing import Any

from ...data.classes import CITYSCAPES_CLASSES, COCOSTUFF_CLASSES, VOC_CLASSES
from ...protocol import PORT_PROTOCOL, UDA_PROTOCOL
from ..entry import Weights
from ..sources import (
    CITYSCAPES_TRAIN_IMAGES,
    COCO_PIXELS,
    GTA5_PIXELS,
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


_RELEASE_AND_PORT: tuple[Weights, ...] = (
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


# -- the unsupervised domain adaptation works' models (docs/uda.md) ------------------------------

_ADAPTSEGNET_URL = "http://vllab.ucmerced.edu/ytsai/CVPR18/"
_ADVENT_URL = "https://github.com/valeoai/ADVENT/releases/download/v0.1/"
_ADAPTSEGNET_LICENSE = (
    "non-commercial research purposes only (wasidennis/AdaptSegNet README, Note); GTA5's and "
    "Cityscapes' terms apply to the data"
)
_ADVENT_LICENSE = (
    "Apache-2.0 (valeoai/ADVENT's licence); GTA5's and Cityscapes' terms apply to the data"
)
#: AdaptSegNet's multi-level network: the auxiliary head, and heads that sum two branches.
_ADAPTSEGNET_NET = {"aux_head": True, "head_branches": 2}
#: ADVENT's (MULTI_LEVEL: True in its configs): the auxiliary head, heads that sum four.
_ADVENT_NET = {"aux_head": True}
_UDA_DOCS = (
    "GTA5 -> Cityscapes: evaluate on Cityscapes val, resized to 1024x512 (the weights' "
    "protocol); Cityscapes train images were seen without labels (docs/uda.md)."
)


def _uda(tag: str, url: str, dialect: str, lineage: tuple[str, ...], **fields: Any) -> Weights:
    """A GTA5 -> Cityscapes model of a UDA work (19 Cityscapes classes, their protocol)."""
    return Weights(
        architecture=ARCHITECTURE,
        tag=tag,
        num_classes=19,
        categories=CITYSCAPES_CLASSES,
        url=url,
        protocol=UDA_PROTOCOL,
        dialect=dialect,
        model_args=_ADAPTSEGNET_NET if dialect == "adaptsegnet" else _ADVENT_NET,
        lineage=lineage,
        docs=_UDA_DOCS,
        num_params=44_601_560,  # both heads' four branches are in the file
        ops=185.304 if dialect == "adaptsegnet" else 188.263,  # 2 or 4 branches computed
        file_size=178.9,
        **fields,
    )


_UDA: tuple[Weights, ...] = (
    _uda(
        "gta5-adaptsegnet",
        _ADAPTSEGNET_URL + "GTA2Cityscapes_multi-ed35151c.pth",
        "adaptsegnet",
        (IMAGENET, COCO_PIXELS, GTA5_PIXELS, CITYSCAPES_TRAIN_IMAGES),
        description=(
            "AdaptSegNet's multi-level GTA5 -> Cityscapes model (Tsai et al., CVPR 2018): "
            "DeepLab v2 ResNet-101 from the release's init.caffemodel, trained on GTA5 labels "
            "with output-space adversarial adaptation to Cityscapes train images; its heads sum "
            "the rate-6 and rate-12 branches, as its code computes."
        ),
        metrics={
            "Cityscapes-val": {
                "mIoU": 42.4,
                "source": "Tsai et al., CVPR 2018 (arXiv:1802.10349), Table 1, ResNet-101 "
                "multi-level (also the repository's figure/iou_comparison_v2.png)",
            }
        },
        license=_ADAPTSEGNET_LICENSE,
    ),
    _uda(
        "gta5-advent",
        _ADVENT_URL + "gta2cityscapes_advent.pth",
        "advent",
        (IMAGENET, GTA5_PIXELS, CITYSCAPES_TRAIN_IMAGES),
        description=(
            "ADVENT's GTA5 -> Cityscapes model (Vu et al., CVPR 2019, AdvEnt): DeepLab v2 "
            "ResNet-101 from ImageNet, trained on GTA5 labels with adversarial entropy "
            "minimisation on Cityscapes train images (multi-level; heads sum four branches)."
        ),
        metrics={
            "Cityscapes-val": {
                "mIoU": 43.8,
                "source": "Vu et al., CVPR 2019 (arXiv:1811.12833), Table 1, AdvEnt, ResNet-101",
            }
        },
        license=_ADVENT_LICENSE,
    ),
    _backbone(
        "adaptsegnet-init",
        description=(
            "The release's init.caffemodel (ImageNet, then MS-COCO) as AdaptSegNet distributes "
            "it (DeepLab_resnet_pretrained_init-f81d91e8.pth, keys prefixed 'Scale.'): the "
            "starting point of its GTA5 training; backbone only, heads as its training makes."
        ),
        url=_ADAPTSEGNET_URL + "DeepLab_resnet_pretrained_init-f81d91e8.pth",
        dialect="adaptsegnet",
        model_args=_ADAPTSEGNET_NET,
        docs="Initialisation for GTA5 training (examples/configs/gta5_source_only.json); "
        "pass num_classes=19.",
        license=_ADAPTSEGNET_LICENSE,
        lineage=(IMAGENET, COCO_PIXELS),
    ),
    _backbone(
        "advent-imagenet",
        description=(
            "ADVENT's ImageNet ResNet-101 (DeepLab_resnet_pretrained_imagenet.pth), the "
            "starting point of its GTA5 and SYNTHIA training; backbone only."
        ),
        url=_ADVENT_URL + "DeepLab_resnet_pretrained_imagenet.pth",
        dialect="advent",
        model_args=_ADVENT_NET,
        docs="Initialisation for ADVENT-style training; pass num_classes.",
        license=_ADVENT_LICENSE,
        lineage=(IMAGENET,),
    ),
)

#: The entries, in the order they are listed.
ENTRIES: tuple[Weights, ...] = _RELEASE_AND_PORT + _UDA

#: What ``pretrained=True`` loads (full names).
DEFAULTS = (f"{ARCHITECTURE}.voc12",)
