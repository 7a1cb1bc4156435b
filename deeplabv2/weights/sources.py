"""Facts that several weights entries share: the release's licence and paper, where converted
files are published, and the names of the training stages of their lineages."""

from __future__ import annotations

__all__ = [
    "CITYSCAPES_TRAIN_IMAGES",
    "COCO_PIXELS",
    "GTA5_PIXELS",
    "HF_OWNER",
    "IMAGENET",
    "PAPER",
    "RELEASE_LICENSE",
    "VOC_TRAINAUG",
    "VOC_TRAINAUG_VAL",
]

#: The Hugging Face Hub owner of the converted files (``<HF_OWNER>/<architecture>.<tag>``).
HF_OWNER = "deeplabv2"
RELEASE_LICENSE = (
    "as released by the DeepLab authors (http://liangchiehchen.com/projects/DeepLab.html); "
    "check the release's terms before redistributing"
)
PAPER = "Chen et al., DeepLab, TPAMI 2017 (arXiv:1606.00915)"

# Training stages of a lineage (``Weights.lineage``), each with its data and kind of labels.
IMAGENET = "ImageNet (image labels)"
COCO_PIXELS = "MS-COCO (pixel labels)"
VOC_TRAINAUG = "VOC 2012 trainaug (pixel labels)"
VOC_TRAINAUG_VAL = "VOC 2012 trainaug + val (pixel labels)"
#: A synthetic source domain: every GTA5 image with its labels (the UDA works train on all 24,966).
GTA5_PIXELS = "GTA5 all (pixel labels)"
#: A target domain: images only, their labels never used (unsupervised domain adaptation).
CITYSCAPES_TRAIN_IMAGES = "Cityscapes train (images without labels)"
