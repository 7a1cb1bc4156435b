"""Data utilities: input transforms, image loading, datasets, class names and palettes.

The names are imported when first read (``deeplabv2._lazy``), so that a torch-free module of
this package (:mod:`.constants`, :mod:`.classes`) loads without the others.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .classes import (
        CITYSCAPES13_CLASSES,
        CITYSCAPES16_CLASSES,
        CITYSCAPES_CLASSES,
        COCO_CLASSES,
        COCOSTUFF_CLASSES,
        VOC_CLASSES,
        voc_palette,
    )
    from .coco import COCO2014
    from .datasets import Cityscapes, COCOStuff, SegmentationFolder
    from .driving import GTA5, SYNTHIA
    from .images import load_image, read_label
    from .kinds import DATASETS, open_dataset
    from .samples import sample_image
    from .transforms import CAFFE_MEAN_BGR, CaffePreprocess, to_caffe_input
    from .voc import IGNORE_INDEX, VOCSegmentation

__all__ = [
    "CAFFE_MEAN_BGR",
    "CITYSCAPES13_CLASSES",
    "CITYSCAPES16_CLASSES",
    "CITYSCAPES_CLASSES",
    "COCO2014",
    "COCO_CLASSES",
    "DATASETS",
    "COCOStuff",
    "Cityscapes",
    "GTA5",
    "SYNTHIA",
    "SegmentationFolder",
    "COCOSTUFF_CLASSES",
    "CaffePreprocess",
    "IGNORE_INDEX",
    "VOCSegmentation",
    "VOC_CLASSES",
    "load_image",
    "open_dataset",
    "read_label",
    "sample_image",
    "to_caffe_input",
    "voc_palette",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(("COCO_CLASSES", "COCOSTUFF_CLASSES", "VOC_CLASSES"), ".classes"),
        **dict.fromkeys(
            ("CITYSCAPES_CLASSES", "CITYSCAPES16_CLASSES", "CITYSCAPES13_CLASSES"), ".classes"
        ),
        "voc_palette": ".classes",
        "COCO2014": ".coco",
        "sample_image": ".samples",
        **dict.fromkeys(("Cityscapes", "COCOStuff"), ".datasets"),
        **dict.fromkeys(("GTA5", "SYNTHIA"), ".driving"),
        "SegmentationFolder": ".datasets",
        **dict.fromkeys(("load_image", "read_label"), ".images"),
        **dict.fromkeys(("DATASETS", "open_dataset"), ".kinds"),
        **dict.fromkeys(("CaffePreprocess", "to_caffe_input"), ".transforms"),
        "CAFFE_MEAN_BGR": ".constants",
        **dict.fromkeys(("IGNORE_INDEX", "VOCSegmentation"), ".voc"),
    },
)
