"""The registry's DeepLab VGG-16 weights (data, no torch): DeepLab v2 ASPP-L's and
DeepLab-LargeFOV's, trained on VOC and their ImageNet initialisations. The networks, their
builders and how their checkpoints are read are in :mod:`deeplabv2.models.deeplab_vgg`;
:mod:`deeplabv2.weights.registry` registers these entries when it is imported."""

from __future__ import annotations

from typing import Any

from ...data.classes import VOC_CLASSES
from ...protocol import VGG_RELEASE_PROTOCOL
from ..entry import Weights
from ..sources import IMAGENET, PAPER, RELEASE_LICENSE, VOC_TRAINAUG

__all__ = ["DEFAULTS", "ENTRIES"]


_VGG_ZIP = "http://liangchiehchen.com/projects/released/deeplab_aspp_vgg16/prototxt_and_model.zip"
_LARGEFOV = "http://www.cs.jhu.edu/~alanlab/ccvl/DeepLab-LargeFOV/train_iter_6000.caffemodel"
_VGG16_20M = "http://www.cs.jhu.edu/~alanlab/ccvl/init_models/vgg16_20M.caffemodel"


def _voc12(architecture: str, miou: tuple[float, float], network: str, **fields: Any) -> Weights:
    """A VGG-16 network trained on VOC 2012 trainaug from ImageNet, with the paper's VOC val
    mIoU (without, with the CRF)."""
    return Weights(
        architecture=architecture,
        tag="voc12",
        num_classes=21,
        categories=VOC_CLASSES,
        protocol=VGG_RELEASE_PROTOCOL,
        metrics={
            "VOC2012-val": {"mIoU": miou[0], "mIoU+CRF": miou[1], "source": f"{PAPER} ({network})"}
        },
        docs="Evaluate on 513x513 mean-padded inputs; the VGG-16 CRF preset.",
        license=RELEASE_LICENSE,
        lineage=(IMAGENET, VOC_TRAINAUG),
        **fields,
    )


#: The entries, in the order they are listed.
ENTRIES: tuple[Weights, ...] = (
    _voc12(
        "deeplab_v2_vgg16",
        (68.96, 71.57),
        "VGG-16, DeepLab-ASPP-L",
        description=(
            "DeepLab v2 VGG-16 with ASPP-L trained on PASCAL VOC 2012 trainaug: the release's "
            "DeepLabv2_VGG16 model (the train_iter_*.caffemodel in its zip; the exact file "
            "name inside the archive could not be checked here)."
        ),
        url=_VGG_ZIP,
        url_member="train_iter_*.caffemodel",
        num_params=37_877_652,
        ops=201.956,
        file_size=151.5,
    ),
    _voc12(
        "deeplab_largefov_vgg16",
        (65.76, 69.84),
        "VGG-16, DeepLab-LargeFOV, trained with the v2 recipe",
        description=(
            "DeepLab-LargeFOV VGG-16 trained on PASCAL VOC 2012 trainaug: train_iter_6000."
            "caffemodel of the DeepLab-LargeFOV release (DeepLab v1, ICLR 2015). The DeepLab "
            "v2 paper's LargeFOV scores below were obtained with v2's training recipe."
        ),
        url=_LARGEFOV,
        num_params=20_505_429,
        ops=128.585,
        file_size=82.0,
    ),
    Weights.initialisation(
        "deeplab_v2_vgg16",
        "imagenet",
        description=(
            "The VGG-16 ImageNet initialisation of the DeepLab v2 VGG-16 release (init.caffemodel "
            "in its zip): conv1_1 .. fc7_i, no classifier."
        ),
        url=_VGG_ZIP,
        url_member="init.caffemodel",
        num_params=37_791_552,
        file_size=151.2,
        docs="Initialisation for training; pass num_classes.",
        license=RELEASE_LICENSE,
        lineage=(IMAGENET,),
    ),
    Weights.initialisation(
        "deeplab_largefov_vgg16",
        "imagenet",
        description=(
            "vgg16_20M.caffemodel: VGG-16 trained on ImageNet with fc6/fc7 subsampled to "
            "1024 channels (fc6 3x3), the initialisation of DeepLab-LargeFOV; conv1_1 .. fc7."
        ),
        url=_VGG16_20M,
        num_params=20_483_904,
        file_size=81.9,
        docs="Initialisation for training (weakly supervised segmentation uses it); pass "
        "num_classes.",
        license=RELEASE_LICENSE,
        lineage=(IMAGENET,),
    ),
)

#: What ``pretrained=True`` loads, one per network (full names).
DEFAULTS = ("deeplab_v2_vgg16.voc12", "deeplab_largefov_vgg16.voc12")
