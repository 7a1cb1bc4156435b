"""deeplabv2: DeepLab v2 in PyTorch, faithful to the Caffe release."""

__version__ = "0.1.0.dev0"

from . import crf, data, errors, interp, metrics, models, msc, weights  # noqa: E402
from .crf import DenseCRF  # noqa: E402
from .metrics import ConfusionMatrix  # noqa: E402
from .models import deeplab_v2_resnet101, get_model, list_models  # noqa: E402
from .msc import MultiScale  # noqa: E402
from .segmenter import Prediction, Segmenter  # noqa: E402

__all__ = [
    "ConfusionMatrix",
    "DenseCRF",
    "MultiScale",
    "Prediction",
    "Segmenter",
    "crf",
    "__version__",
    "data",
    "deeplab_v2_resnet101",
    "errors",
    "get_model",
    "interp",
    "list_models",
    "metrics",
    "models",
    "msc",
    "weights",
]
