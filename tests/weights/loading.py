"""Read a weights file into ResNet-101 keys the way the builders do, for tests."""

from __future__ import annotations

from deeplabv2.models._builder import load_state
from deeplabv2.models.deeplab_resnet import RESNET101


def load(path, backbone_only: bool = False, mapping=RESNET101):
    """``(state dict, loaded)``; ``loaded.num_classes`` is None for a backbone."""
    loaded = load_state(mapping, path, backbone_only=backbone_only)
    return loaded.state, loaded
