"""torch.hub entry points: ``torch.hub.load("<owner>/deeplabv2", "deeplab_v2_resnet101")``."""

dependencies = ["torch", "numpy", "safetensors", "huggingface_hub"]

from deeplabv2.models import deeplab_v2_resnet101  # noqa: E402, F401
