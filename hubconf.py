"""torch.hub entry points.

    model = torch.hub.load("<owner>/deeplabv2", "deeplab_v2_resnet101", pretrained="voc12")

``pretrained`` takes what :func:`deeplabv2.models.deeplab_v2_resnet101` takes: None, True, a
registry name (``voc12``, ``coco-init``, ``cocostuff164k``), a local file or ``hf-hub:...``.
"""

dependencies = ["torch", "numpy", "safetensors", "huggingface_hub"]

from deeplabv2.models import deeplab_v2_resnet101  # noqa: E402, F401
