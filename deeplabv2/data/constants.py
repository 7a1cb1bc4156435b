"""The data layer's constants that other layers and the command line's help show, in a module
that imports nothing (``deeplabv2 --help`` loads no torch): the release's mean, the largest image
read and the dataset names :func:`~deeplabv2.data.open_dataset` knows."""

from __future__ import annotations

__all__ = ["CAFFE_MEAN_BGR", "DATASETS", "DEFAULT_MAX_PIXELS", "LABEL_DIR_DATASETS"]

#: Per-channel mean (B, G, R) subtracted by the DeepLab release (ImageNet mean of the Caffe model).
CAFFE_MEAN_BGR: tuple[float, float, float] = (104.008, 116.669, 122.675)

#: The largest image (in pixels) that :class:`deeplabv2.Segmenter` and ``deeplabv2 predict``
#: accept unless told otherwise (``max_pixels`` / ``--max-pixels``): 25 megapixels, e.g.
#: 6000x4000. A 10000x10000 image takes over an hour on a CPU.
DEFAULT_MAX_PIXELS = 25_000_000

#: The dataset names :func:`~deeplabv2.data.open_dataset` knows.
DATASETS = (
    "voc", "coco", "folder", "cocostuff164k", "cocostuff10k", "cityscapes", "gta5", "synthia",
)  # fmt: skip
#: Those whose labels may come from another folder (pseudo-labels): PNGs of class indices.
LABEL_DIR_DATASETS = ("voc", "coco", "folder")
