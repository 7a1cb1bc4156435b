"""deeplabv2: DeepLab v2 in PyTorch, faithful to the Caffe release.

The names below are imported when first read (``deeplabv2._lazy``): ``import deeplabv2`` loads
no torch, so the command line starts at once; ``deeplabv2.models``, ``deeplabv2.DenseCRF`` ...
load what they need on first use.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from .version import __version__

if TYPE_CHECKING:
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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **{module: f".{module}" for module in ("crf", "data", "errors", "interp", "metrics")},
        **{module: f".{module}" for module in ("models", "msc", "protocol", "weights")},
        "ConfusionMatrix": ".metrics",
        "DenseCRF": ".crf",
        "EvalProtocol": ".protocol",
        "MultiScale": ".msc",
        "Prediction": ".segmenter",
        "PretrainedInfo": ".protocol",
        "ScoreResult": ".label_eval",
        "Segmenter": ".segmenter",
        "atomic_write": "._files",
        "convert": ".conversion",
        "deeplab_largefov_vgg16": ".models",
        "deeplab_v2_resnet101": ".models",
        "deeplab_v2_vgg16": ".models",
        "export_onnx": ".export",
        "get_model": ".models",
        "list_models": ".models",
        "load_model": ".models",
        "score_folder": ".label_eval",
    },
)
