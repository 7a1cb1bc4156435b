"""Data utilities: input transforms, image loading, VOC datasets, class names and palettes."""

from .classes import COCOSTUFF_CLASSES, VOC_CLASSES, voc_palette
from .datasets import CITYSCAPES_CLASSES, Cityscapes, COCOStuff, SegmentationFolder
from .images import load_image, read_label
from .transforms import CAFFE_MEAN_BGR, CaffePreprocess, to_caffe_input
from .voc import IGNORE_INDEX, VOCSegmentation

__all__ = [
    "CAFFE_MEAN_BGR",
    "CITYSCAPES_CLASSES",
    "COCOStuff",
    "Cityscapes",
    "SegmentationFolder",
    "COCOSTUFF_CLASSES",
    "CaffePreprocess",
    "IGNORE_INDEX",
    "VOCSegmentation",
    "VOC_CLASSES",
    "load_image",
    "read_label",
    "to_caffe_input",
    "voc_palette",
]
