"""DeepLab networks: builders, the module classes, checkpoint loading and inference helpers."""

from ._builder import load_model, save_weights
from ._registry import get_model, list_models
from .aspp import ASPP, VGGASPP
from .deeplab import (
    MIN_INPUT_SIZE,
    DeepLabV2,
    DeepLabVGG16,
    deeplab_largefov_vgg16,
    deeplab_v2_resnet101,
    deeplab_v2_vgg16,
    output_size,
)
from .fold import fold_batchnorm
from .resnet import Bottleneck, FrozenBatchNorm2d, ResNet
from .vgg import VGG16

__all__ = [
    "ASPP",
    "MIN_INPUT_SIZE",
    "VGG16",
    "VGGASPP",
    "Bottleneck",
    "DeepLabV2",
    "DeepLabVGG16",
    "FrozenBatchNorm2d",
    "ResNet",
    "deeplab_largefov_vgg16",
    "deeplab_v2_resnet101",
    "deeplab_v2_vgg16",
    "fold_batchnorm",
    "get_model",
    "list_models",
    "load_model",
    "output_size",
    "save_weights",
]
