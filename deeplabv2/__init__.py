"""deeplabv2: DeepLab v2 in PyTorch, faithful to the Caffe release."""

from . import crf, data, demo, errors, export, interp, metrics, models, msc, weights
from .convert import convert
from .crf import DenseCRF
from .metrics import ConfusionMatrix
from .models import (
    deeplab_largefov_vgg16,
    deeplab_v2_resnet101,
    deeplab_v2_vgg16,
    get_model,
    list_models,
    load_model,
)
from .msc import MultiScale
from .segmenter import Prediction, Segmenter
from .version import __version__

__all__ = [
    "ConfusionMatrix",
    "DenseCRF",
    "MultiScale",
    "Prediction",
    "Segmenter",
    "__version__",
    "convert",
    "crf",
    "data",
    "demo",
    "deeplab_largefov_vgg16",
    "deeplab_v2_resnet101",
    "deeplab_v2_vgg16",
    "errors",
    "export",
    "get_model",
    "interp",
    "list_models",
    "load_model",
    "metrics",
    "models",
    "msc",
    "weights",
]
