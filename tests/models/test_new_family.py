"""The recipes of docs/architecture.md: a new model family and a new weights entry, each
registered from this test module alone (nothing else in the package changes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch
from torch import nn

import deeplabv2
from deeplabv2.models import _registry
from deeplabv2.models._base import DeepLabBase
from deeplabv2.models._builder import build
from deeplabv2.models._mapping import CheckpointMapping, find_head_prefix
from deeplabv2.protocol import EvalProtocol, protocol_of
from deeplabv2.weights import Weights, registry

from ..weights.caffe_files import write_caffemodel

# -- the family: what a new file deeplabv2/models/deeplab_tiny.py would hold --------------------

TINY_PROTOCOL = EvalProtocol(scales=(), pad_to=None, crf="vgg16-voc")


class TinyDeepLab(DeepLabBase):
    """A 'backbone' of one stride-8 convolution and a one-branch head."""

    default_protocol = TINY_PROTOCOL

    def __init__(self, num_classes: int = 21, width: int = 4) -> None:
        super().__init__(num_classes, width=width)
        self.backbone = nn.Sequential(nn.Conv2d(3, width, 8, stride=8))
        self.aspp = nn.Conv2d(width, num_classes, 1)

    def _architecture(self) -> Optional[str]:
        return "deeplab_tiny"

    @staticmethod
    def output_size(size: int) -> int:
        return size // 8


def _tiny_head(names) -> dict:
    prefix = find_head_prefix(names, r"(fc8(?:_\w+?)?)()", {""}, "fc8_voc12")
    return {prefix: ("aspp", "conv")}


TINY = CheckpointMapping(
    architecture="deeplab_tiny",
    backbone={"conv1": ("backbone.0", "conv")},
    find_head=_tiny_head,
    is_head=lambda key: key.startswith("aspp."),
    head_weight="aspp.weight",
    dialects=(),
    caffe_signature=("conv1", "fc8_toys"),
    release_protocol=TINY_PROTOCOL,
)


def deeplab_tiny(pretrained: Any = None, num_classes: Optional[int] = None, **kwargs: Any):
    """The family's builder: it only gathers arguments."""
    return build(TINY, TinyDeepLab, pretrained, num_classes, **kwargs)


def tiny_entry(url: str) -> Weights:
    return Weights(
        architecture="deeplab_tiny",
        tag="toy",
        num_classes=3,
        categories=("background", "cat", "dog"),
        description="a toy model",
        url=url,
        protocol=TINY_PROTOCOL,
        lineage=("ImageNet (image labels)", "Toys (pixel labels)"),
        license="MIT",
    )


@pytest.fixture
def registered(monkeypatch, tmp_path):
    """Register the family and its weights the way a family file does at import, and undo it
    afterwards (the registries are restored by monkeypatch)."""
    monkeypatch.setattr(_registry, "_MODELS", dict(_registry._MODELS))
    monkeypatch.setattr(_registry, "_MAPPINGS", dict(_registry._MAPPINGS))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "DEFAULT_WEIGHTS", dict(registry.DEFAULT_WEIGHTS))
    _registry.register_model(deeplab_tiny)
    _registry.register_mapping(TINY)
    caffemodel = write_tiny_caffemodel(tmp_path / "toy.caffemodel")
    registry.register_weights(tiny_entry(caffemodel.as_uri()), default=True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return caffemodel


_RNG = np.random.default_rng(0)
TINY_LAYERS = {
    "conv1": ("Convolution", [_RNG.standard_normal((4, 3, 8, 8)).astype(np.float32),
                              _RNG.standard_normal(4).astype(np.float32)]),
    "fc8_toys": ("Convolution", [_RNG.standard_normal((3, 4, 1, 1)).astype(np.float32),
                                 _RNG.standard_normal(3).astype(np.float32)]),
}  # fmt: skip


def write_tiny_caffemodel(path: Path) -> Path:
    return write_caffemodel(path, TINY_LAYERS, blobless=False)


def test_a_family_registered_from_one_file_works_everywhere(registered, tmp_path):
    assert "deeplab_tiny" in deeplabv2.list_models()
    assert "deeplab_tiny.toy" in deeplabv2.weights.list_weights("deeplab_tiny")
    random = deeplabv2.get_model("deeplab_tiny", num_classes=2)
    assert random.architecture == "deeplab_tiny" and protocol_of(random) == TINY_PROTOCOL
    with pytest.raises(ValueError, match=r"none fits.*\| deeplab_tiny"):  # the registry lists it
        deeplabv2.load_model(write_caffemodel(tmp_path / "x.caffemodel", {}, blobless=True))
    # weights by name: fetched from the entry's URL into the cache, mapped by the family
    model = deeplabv2.get_model("deeplab_tiny", pretrained=True)
    assert model.class_names == ("background", "cat", "dog")
    info = model.pretrained_info
    assert info.name == "deeplab_tiny.toy" and info.lineage[-1] == "Toys (pixel labels)"
    assert info.protocol == TINY_PROTOCOL
    # the Caffe blobs landed where the mapping says
    assert np.array_equal(model.backbone[0].weight.detach().numpy(), TINY_LAYERS["conv1"][1][0])
    assert np.array_equal(model.aspp.bias.detach().numpy(), TINY_LAYERS["fc8_toys"][1][1])
    # found from the file alone (its layer names), converted, saved and reloaded
    found = deeplabv2.load_model(registered)
    assert found.architecture == "deeplab_tiny"
    assert torch.equal(found.aspp.weight, model.aspp.weight)
    folder = model.save_pretrained(tmp_path / "folder")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "deeplab_tiny" and config["lineage"][0].startswith("ImageNet")
    again = TinyDeepLab.from_pretrained(folder)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    assert again.pretrained_info.lineage == info.lineage
    # the Segmenter follows the family's protocol (single scale, unpadded)
    segmenter = deeplabv2.Segmenter(model)
    assert segmenter.protocol == TINY_PROTOCOL
    labels = segmenter.predict(np.zeros((40, 48, 3), np.uint8)).labels
    assert labels.shape == (40, 48)


def test_builder_arguments_that_define_the_family_are_refused():
    with pytest.raises(ValueError, match=r"deeplab_v2_resnet101 fixes blocks=\(3, 4, 23, 3\)"):
        deeplabv2.deeplab_v2_resnet101(blocks=(3, 4, 6, 3))


def test_registering_a_name_twice_is_refused(registered):
    with pytest.raises(ValueError, match="registered already"):
        _registry.register_model(deeplab_tiny)
    with pytest.raises(ValueError, match="registered already"):
        _registry.register_mapping(TINY)
    with pytest.raises(ValueError, match="registered already"):
        registry.register_weights(tiny_entry("file:///nowhere"))
