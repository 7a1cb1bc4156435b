"""torch.hub entry points.

    model = torch.hub.load("<owner>/deeplabv2", "deeplab_v2_resnet101", pretrained="voc12")
    model = torch.hub.load("<owner>/deeplabv2", "deeplab_v2_vgg16", pretrained="voc12")

``pretrained`` takes what the builders in :mod:`deeplabv2.models` take: None, True, a registry
name (``deeplabv2 weights`` lists them), a local file or ``hf-hub:...``.
"""

dependencies = ["torch", "numpy", "safetensors", "huggingface_hub"]

from deeplabv2.models import (  # noqa: E402, F401
    deeplab_largefov_vgg16,
    deeplab_v2_resnet101,
    deeplab_v2_vgg16,
)
