"""DeepLab networks: one file per model family (its network, builders and checkpoint mappings,
registered on import; its weights entries are data in :mod:`deeplabv2.weights.zoo`), the generic
builder and registries, and the building blocks they share."""

from . import deeplab_resnet, deeplab_vgg  # noqa: F401 - importing a family registers it
from ._base import MIN_INPUT_SIZE, DeepLabBase
from ._builder import load_model
from ._convert import convert_checkpoint
from ._registry import get_model, list_models
from ._weights_file import save_weights
from .aspp import ASPP, VGGASPP
from .deeplab_resnet import DeepLabV2, deeplab_v2_resnet101, output_size
from .deeplab_vgg import DeepLabVGG16, deeplab_largefov_vgg16, deeplab_v2_vgg16
from .fold import fold_batchnorm
from .resnet import Bottleneck, FrozenBatchNorm2d, ResNet
from .vgg import VGG16

__all__ = [
    "ASPP",
    "MIN_INPUT_SIZE",
    "VGG16",
    "VGGASPP",
    "Bottleneck",
    "DeepLabBase",
    "DeepLabV2",
    "DeepLabVGG16",
    "FrozenBatchNorm2d",
    "ResNet",
    "convert_checkpoint",
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
