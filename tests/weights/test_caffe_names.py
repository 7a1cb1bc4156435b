"""The Caffe layer name table covers the model's state dict one-to-one."""

from __future__ import annotations

import pytest

from deeplabv2.models import DeepLabV2
from deeplabv2.models.deeplab_resnet import caffe_block_name, caffe_layer_table

_ENTRIES = {"conv": ("weight",), "bn": ("running_mean", "running_var"), "scale": ("weight", "bias")}


@pytest.mark.parametrize(
    ("stage", "block", "count", "name"),
    [
        (0, 0, 3, "res2a"),
        (0, 2, 3, "res2c"),
        (1, 3, 4, "res3b3"),
        (2, 22, 23, "res4b22"),
        (2, 1, 23, "res4b1"),
        (3, 1, 3, "res5b"),
    ],
)
def test_block_names(stage, block, count, name):
    assert caffe_block_name(stage, block, count) == name


def test_table_maps_every_state_dict_entry_exactly_once():
    table = caffe_layer_table()
    keys = []
    for module, kind in table.values():
        keys += [f"{module}.{entry}" for entry in _ENTRIES[kind]]
        if module.startswith("aspp."):
            keys.append(f"{module}.bias")
    state = DeepLabV2(num_classes=21).state_dict()
    assert len(keys) == len(set(keys))
    assert set(keys) == set(state)
    assert len(table) == 1 + 2 + 4 * 3 * 4 + (3 + 4 + 23 + 3 - 4) * 3 * 3 + 4  # 316 layers


def test_known_names():
    table = caffe_layer_table(head="fc1_c")
    assert table["res4b22_branch2c"] == ("backbone.layer3.22.conv3", "conv")
    assert table["bn4b22_branch2c"] == ("backbone.layer3.22.bn3", "bn")
    assert table["scale3a_branch1"] == ("backbone.layer2.0.downsample.1", "scale")
    assert table["res5a_branch1"] == ("backbone.layer4.0.downsample.0", "conv")
    assert table["bn_conv1"] == ("backbone.bn1", "bn")
    assert table["fc1_c_c3"] == ("aspp.convs.3", "conv")
    assert "res4b1_branch1" not in table
