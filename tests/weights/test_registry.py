"""The weights registry: schema, and metadata recomputed from the model itself."""

from __future__ import annotations

import re

import pytest
import torch

from deeplabv2.models import DeepLabV2
from deeplabv2.weights import DEFAULT_WEIGHTS, get_weights, list_weights, save_safetensors
from deeplabv2.weights.convert import _metadata

NAMES = list_weights()


def test_required_names_and_default():
    assert {"voc12", "coco-init", "cocostuff164k"} <= set(NAMES)
    assert get_weights("DEFAULT") is get_weights(DEFAULT_WEIGHTS) is get_weights("voc12")


@pytest.mark.parametrize("name", NAMES)
def test_schema(name):
    weights = get_weights(name)
    assert weights.name == name
    assert weights.hf_revision is None or re.fullmatch(r"[0-9a-f]{40}", weights.hf_revision)
    assert weights.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", weights.sha256)
    assert weights.url.startswith(("http://", "https://"))
    assert weights.transforms["mean_bgr"] == (104.008, 116.669, 122.675)
    assert set(weights.meta) >= {"categories", "num_params", "_metrics", "_ops", "_file_size"}
    assert weights.meta["categories"] == weights.categories
    if weights.backbone_only:
        assert weights.num_classes is None and weights.categories == ()
    else:
        assert len(weights.categories) == weights.num_classes
    for metrics in weights.meta["_metrics"].values():
        assert metrics["source"], "every reported number names its source"
    assert weights.license


def _model(weights) -> torch.nn.Module:
    with torch.device("meta"):
        model = DeepLabV2(num_classes=weights.num_classes or 21)
    return model.backbone if weights.backbone_only else model


@pytest.mark.parametrize("name", NAMES)
def test_num_params_and_ops_are_recomputed(name):
    weights = get_weights(name)
    model = _model(weights)
    assert sum(p.numel() for p in model.parameters()) == weights.meta["num_params"]
    if weights.meta["_ops"] is None:
        return
    macs = 0

    def count(module, inputs, output):
        nonlocal macs
        kh, kw = module.kernel_size
        macs += output.numel() * module.in_channels // module.groups * kh * kw

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(count)
    with torch.no_grad():
        model(torch.empty(1, 3, 513, 513, device="meta"))
    assert round(macs / 1e9, 3) == weights.meta["_ops"]


@pytest.mark.parametrize("name", NAMES)
def test_file_size_is_recomputed(tmp_path, name):
    weights = get_weights(name)
    model = DeepLabV2(num_classes=weights.num_classes or 21)
    state = model.state_dict()
    if weights.backbone_only:
        state = {k: v for k, v in state.items() if not k.startswith("aspp.")}
    path = save_safetensors(state, tmp_path / "w.safetensors", _metadata(weights.num_classes, name))
    assert round(path.stat().st_size / 1e6, 1) == weights.meta["_file_size"]
