"""deeplabv2: DeepLab v2 in PyTorch, faithful to the Caffe release."""

from . import crf, data, errors, interp, metrics, models, msc, protocol, weights
from ._files import atomic_write
from .conversion import convert
from .crf import DenseCRF
from .export import export_onnx
from .label_eval import ScoreResult, score_folder
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
from .protocol import EvalProtocol, PretrainedInfo
from .segmenter import Prediction, Segmenter
from .version import __version__

__all__ = [
    "ConfusionMatrix",
    "DenseCRF",
    "EvalProtocol",
    "MultiScale",
    "Prediction",
    "PretrainedInfo",
    "ScoreResult",
    "Segmenter",
    "__version__",
    "atomic_write",
    "convert",
    "crf",
    "data",
    "deeplab_largefov_vgg16",
    "deeplab_v2_resnet101",
    "deeplab_v2_vgg16",
    "errors",
    "export_onnx",
    "get_model",
    "interp",
    "list_models",
    "load_model",
    "metrics",
    "models",
    "msc",
    "protocol",
    "score_folder",
    "weights",
]
