"""Data utilities: input transforms, image loading, datasets, class names and palettes."""

from .classes import COCO_CLASSES, COCOSTUFF_CLASSES, VOC_CLASSES, voc_palette
from .coco import COCO2014
from .datasets import CITYSCAPES_CLASSES, Cityscapes, COCOStuff, SegmentationFolder
from .images import load_image, read_label
from .kinds import DATASETS, open_dataset
from .samples import sample_image
from .transforms import CAFFE_MEAN_BGR, CaffePreprocess, to_caffe_input
from .voc import IGNORE_INDEX, VOCSegmentation

__all__ = [
    "CAFFE_MEAN_BGR",
    "CITYSCAPES_CLASSES",
    "COCO2014",
    "COCO_CLASSES",
    "DATASETS",
    "COCOStuff",
    "Cityscapes",
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
