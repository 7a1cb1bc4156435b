"""Data utilities: input transforms (and, later, datasets, palettes, class names)."""

from .transforms import CAFFE_MEAN_BGR, CaffePreprocess, to_caffe_input

__all__ = ["CAFFE_MEAN_BGR", "CaffePreprocess", "to_caffe_input"]
