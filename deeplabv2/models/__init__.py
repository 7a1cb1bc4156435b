"""DeepLab v2 networks: builders, the module classes, and inference helpers."""

from ._registry import get_model, list_models
from .aspp import ASPP
from .deeplab import MIN_INPUT_SIZE, DeepLabV2, deeplab_v2_resnet101, output_size
from .fold import fold_batchnorm
from .resnet import Bottleneck, FrozenBatchNorm2d, ResNet

__all__ = [
    "ASPP",
    "MIN_INPUT_SIZE",
    "Bottleneck",
    "DeepLabV2",
    "FrozenBatchNorm2d",
    "ResNet",
    "deeplab_v2_resnet101",
    "fold_batchnorm",
    "get_model",
    "list_models",
    "output_size",
]
