"""The recipe of docs/architecture.md for a variant within an existing model family: a builder
that fixes the arguments defining it (here DeepLab-ASPP-S, the TPAMI paper's ResNet-101 with
rates 2, 4, 8, 12) and calls the family's ``build``, registered from this test module alone."""

from __future__ import annotations

from typing import Any, Optional

import pytest
import torch

from deeplabv2.models import _registry, get_model, load_model, save_weights
from deeplabv2.models._builder import build
from deeplabv2.models.deeplab_resnet import _RESNET101_BLOCKS, RESNET101, DeepLabV2

ASPP_S = (2, 4, 8, 12)


def deeplab_v2_resnet101_aspp_s(
    pretrained: Any = None, num_classes: Optional[int] = None, **kwargs: Any
) -> DeepLabV2:
    """DeepLab v2 ResNet-101 with ASPP-S (rates 2, 4, 8, 12): what the family's file would add."""
    fixed = {"blocks": _RESNET101_BLOCKS, "rates": ASPP_S}
    return build(RESNET101, DeepLabV2, pretrained, num_classes, fixed=fixed, **kwargs)


@pytest.fixture
def variant(monkeypatch):
    """The builder, registered as the family's file registers it (into a copy of the table)."""
    monkeypatch.setattr(_registry, "_MODELS", dict(_registry._MODELS))
    return _registry.register_model(deeplab_v2_resnet101_aspp_s)


def rates_of(model: DeepLabV2) -> list[int]:
    return [conv.dilation[0] for conv in model.aspp.convs]


def test_the_variant_is_built_by_name(variant) -> None:
    assert "deeplab_v2_resnet101_aspp_s" in _registry.list_models()
    model = get_model("deeplab_v2_resnet101_aspp_s", num_classes=5)
    assert rates_of(model) == list(ASPP_S) and model.model_args["rates"] == list(ASPP_S)
    assert model.aspp.convs[0].out_channels == 5
    with pytest.raises(ValueError, match="fixes rates"):
        variant(rates=(6, 12, 18, 24))


def test_the_variant_loads_the_familys_files_and_saves_its_own(
    variant, voc_safetensors, tmp_path
) -> None:
    model = variant(pretrained=voc_safetensors)
    release = get_model("deeplab_v2_resnet101", pretrained=voc_safetensors)
    assert rates_of(model) == list(ASPP_S) and rates_of(release) == [6, 12, 18, 24]
    for key, value in release.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    x = torch.randn(1, 3, 65, 65, generator=torch.Generator().manual_seed(0)) * 50
    with torch.no_grad():
        logits = model(x)
        assert not torch.allclose(logits, release(x)), "the rates change the network"
    path = save_weights(model, tmp_path / "aspp-s.safetensors")
    again = load_model(path)  # the file records the rates: the same network comes back
    assert rates_of(again) == list(ASPP_S)
    with torch.no_grad():
        torch.testing.assert_close(again(x), logits)
