"""The weights registry: schema, and metadata recomputed from the models themselves."""

from __future__ import annotations

import re

import pytest
import torch

from deeplabv2.models import get_model, list_models
from deeplabv2.models._registry import get_mapping, list_mappings
from deeplabv2.models._weights_file import weights_metadata
from deeplabv2.protocol import UDA_MEAN_BGR, UDA_PROTOCOL, EvalProtocol, PretrainedInfo
from deeplabv2.weights import get_weights, list_weights, save_safetensors
from deeplabv2.weights.registry import DEFAULT_WEIGHTS

NAMES = list_weights()


def test_required_names_and_defaults():
    assert {
        "deeplab_v2_resnet101.voc12",
        "deeplab_v2_resnet101.voc12-trainval",
        "deeplab_v2_resnet101.coco-init",
        "deeplab_v2_resnet101.cocostuff164k",
        "deeplab_v2_resnet101.cocostuff10k",
        "deeplab_v2_vgg16.voc12",
        "deeplab_v2_vgg16.imagenet",
        "deeplab_largefov_vgg16.voc12",
        "deeplab_largefov_vgg16.imagenet",
    } <= set(NAMES)
    assert (
        get_weights("DEFAULT") is get_weights("voc12") is get_weights("deeplab_v2_resnet101.voc12")
    )
    for model in list_models():
        assert get_weights("DEFAULT", model).name == f"{model}.{DEFAULT_WEIGHTS[model]}"
    assert get_weights("voc12", "deeplab_v2_vgg16").architecture == "deeplab_v2_vgg16"
    with pytest.raises(ValueError, match="are for deeplab_v2_vgg16, not deeplab_v2_resnet101"):
        get_weights("deeplab_v2_vgg16.voc12", "deeplab_v2_resnet101")


@pytest.mark.parametrize("name", NAMES)
def test_schema(name):
    weights = get_weights(name)
    assert weights.name == name and weights.architecture in {
        m.architecture for m in list_mappings()
    }
    assert weights.hf_revision is None or re.fullmatch(r"[0-9a-f]{40}", weights.hf_revision)
    assert weights.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", weights.sha256)
    assert weights.url.startswith(("http://", "https://"))
    # the release's mean, or the UDA works' (their evaluate_cityscapes.py, more digits)
    assert weights.transforms().mean_bgr == (
        UDA_MEAN_BGR if weights.protocol == UDA_PROTOCOL else (104.008, 116.669, 122.675)
    )
    assert set(weights.meta) >= {"categories", "num_params", "_metrics", "_ops", "_file_size"}
    assert weights.meta["categories"] is weights.categories  # described once
    if weights.backbone_only:
        assert weights.num_classes is None and weights.categories == ()
        assert weights.protocol is None and weights.meta["_ops"] is None
    else:
        assert len(weights.categories) == weights.num_classes
        assert EvalProtocol.from_dict(weights.protocol.as_dict()) == weights.protocol
    for metrics in weights.meta["_metrics"].values():
        assert metrics["source"], "every reported number names its source"
    assert weights.license


def _state(weights, device=None) -> dict:
    """The state dict the weights fill: everything but the head for a backbone."""
    with torch.device(device or "cpu"):
        model = get_model(
            weights.architecture, num_classes=weights.num_classes or 21, **weights.model_args
        )
    mapping = get_mapping(weights.architecture)
    return {
        k: v
        for k, v in model.state_dict().items()
        if not (weights.backbone_only and mapping.is_head(k))
    }


@pytest.mark.parametrize("name", NAMES)
def test_num_params_and_ops_are_recomputed(name):
    weights = get_weights(name)
    with torch.device("meta"):
        model = get_model(
            weights.architecture, num_classes=weights.num_classes or 21, **weights.model_args
        )
    parameters = {n for n, _ in model.named_parameters()}
    counted = sum(v.numel() for k, v in _state(weights, "meta").items() if k in parameters)
    assert counted == weights.meta["num_params"]
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
    info = PretrainedInfo(
        name=name,
        source=name,
        classes=weights.categories,
        protocol=weights.protocol,
        lineage=weights.lineage,
    )
    metadata = weights_metadata(weights.architecture, weights.num_classes, info)
    path = save_safetensors(_state(weights), tmp_path / "w.safetensors", metadata)
    assert round(path.stat().st_size / 1e6, 1) == weights.meta["_file_size"]
