"""Conversion of Caffe and PyTorch-port weights, checked against forward passes from the blobs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from safetensors import safe_open

from deeplabv2 import convert
from deeplabv2.cli import main
from deeplabv2.errors import CaffeFormatError, WeightsFormatError, WeightsMismatchError
from deeplabv2.models import deeplab_v2_resnet101, load_model, save_weights
from deeplabv2.models._weights_file import CONVERSION_VERSION
from deeplabv2.weights.caffe import read_caffemodel

from .caffe_files import write_caffemodel
from .caffe_reference import block_names, caffe_forward
from .loading import load


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(5).uniform(-120, 130, (1, 3, 49, 57))).float()


@pytest.fixture(scope="module")
def expected_logits(release_layers, image) -> torch.Tensor:
    with torch.no_grad():
        return caffe_forward(release_layers, image)


def test_reader_sees_every_layer_and_blob_encoding(release_caffemodel, release_layers):
    name, layers = read_caffemodel(release_caffemodel)
    assert name == "DeepLab-v2 ResNet-101 synthetic"
    by_name = {layer.name: layer for layer in layers}
    assert by_name["data"].blobs == [] and by_name["loss"].type == "SoftmaxWithLoss"
    for layer_name, (layer_type, blobs) in release_layers.items():
        assert by_name[layer_name].type == layer_type
        for read, written in zip(by_name[layer_name].blobs, blobs):
            np.testing.assert_array_equal(read.reshape(written.shape), written)
    assert by_name["res2a_branch2a"].blobs[0].shape == (64, 64, 1, 1)


def test_caffemodel_converts_and_matches_the_caffe_forward(
    tmp_path, release_caffemodel, image, expected_logits
):
    path, metadata = convert(release_caffemodel, tmp_path / "voc12.safetensors")
    with safe_open(path, framework="pt") as handle:
        header = handle.metadata()
    assert header["architecture"] == "deeplab_v2_resnet101"
    assert header["num_classes"] == "21"
    assert header["source"] == "train_iter_20000.caffemodel"
    assert header["conversion_version"] == CONVERSION_VERSION
    assert metadata["num_classes"] == "21"
    model = deeplab_v2_resnet101(pretrained=path)
    assert not model.training and model.num_classes == 21
    with torch.no_grad():
        logits = model(image)
    assert logits.shape == expected_logits.shape == (1, 21, 7, 8)
    assert relative_error(logits, expected_logits) < 1e-5


def test_v1_layers_file_loads_directly(tmp_path, release_layers, image, expected_logits):
    path = write_caffemodel(tmp_path / "v1.caffemodel", release_layers, v1=True)
    model = deeplab_v2_resnet101(pretrained=path)
    with torch.no_grad():
        assert relative_error(model(image), expected_logits) < 1e-5


def peer_checkpoint(layers: dict) -> dict[str, torch.Tensor]:
    """The layers under the key names of kazuto1011/deeplab-pytorch's MSC DeepLab v2."""
    state: dict[str, torch.Tensor] = {}

    def t(name: str, i: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(layers[name][1][i], dtype=np.float32))

    def conv_bn(prefix: str, conv: str, suffix: str) -> None:
        s = float(layers[f"bn{suffix}"][1][2].ravel()[0])
        state[f"{prefix}.conv.weight"] = t(conv, 0)
        state[f"{prefix}.bn.running_mean"] = t(f"bn{suffix}", 0).flatten() / s
        state[f"{prefix}.bn.running_var"] = t(f"bn{suffix}", 1).flatten() / s
        state[f"{prefix}.bn.weight"] = t(f"scale{suffix}", 0).flatten()
        state[f"{prefix}.bn.bias"] = t(f"scale{suffix}", 1).flatten()
        state[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)

    conv_bn("base.layer1.conv1", "conv1", "_conv1")
    parts = {"2a": "reduce", "2b": "conv3x3", "2c": "increase", "1": "shortcut"}
    for stage in range(4):
        for index, name in enumerate(block_names(stage)):
            for branch, part in parts.items():
                if branch == "1" and index:
                    continue
                prefix = f"base.layer{stage + 2}.block{index + 1}.{part}"
                conv_bn(prefix, f"res{name}_branch{branch}", f"{name}_branch{branch}")
    for i in range(4):
        state[f"base.aspp.c{i}.weight"] = t(f"fc1_voc12_c{i}", 0)
        state[f"base.aspp.c{i}.bias"] = t(f"fc1_voc12_c{i}", 1).flatten()
    return state


def test_peer_pth_converts(tmp_path, release_layers, image, expected_logits):
    src = tmp_path / "deeplabv2_resnet101_msc-vocaug-20000.pth"
    torch.save(peer_checkpoint(release_layers), src)
    path, metadata = convert(src, tmp_path / "peer.safetensors")
    assert metadata["source"] == src.name
    model = deeplab_v2_resnet101(pretrained=str(path))
    with torch.no_grad():
        assert relative_error(model(image), expected_logits) < 1e-5


def test_own_pth_state_dict_loads(tmp_path, image):
    torch.manual_seed(0)
    model = deeplab_v2_resnet101(num_classes=3)
    torch.save(model.state_dict(), tmp_path / "own.pth")
    loaded = deeplab_v2_resnet101(pretrained=tmp_path / "own.pth")
    assert loaded.num_classes == 3
    with torch.no_grad():
        torch.testing.assert_close(loaded(image), model(image))


def test_head_prefix_and_class_count_are_read_from_the_file(tmp_path, release_layers):
    rng = np.random.default_rng(1)
    layers = {k: v for k, v in release_layers.items() if not k.startswith("fc1_voc12")}
    for i in range(4):
        w = rng.standard_normal((182, 2048, 3, 3)).astype(np.float32) * 0.01
        layers[f"fc1_c{i}"] = ("Convolution", [w, np.zeros(182, np.float32)])
    path = write_caffemodel(tmp_path / "stuff.caffemodel", layers, blobless=False)
    state, info = load(path)
    assert info.num_classes == 182
    assert state["aspp.convs.2.weight"].shape == (182, 2048, 3, 3)
    expected = torch.from_numpy(layers["fc1_c1"][1][0])
    torch.testing.assert_close(state["aspp.convs.1.weight"], expected)


def test_backbone_only_file(tmp_path, release_layers):
    layers = {k: v for k, v in release_layers.items() if not k.startswith("fc1_voc12")}
    w = np.zeros((91, 2048, 1, 1), np.float32)
    layers["fc1_coco"] = ("Convolution", [w, np.zeros(91, np.float32)])
    path = write_caffemodel(tmp_path / "init.caffemodel", layers, blobless=False)
    with pytest.raises(WeightsMismatchError, match="cannot find the head.*--backbone-only"):
        load(path)
    state, info = load(path, backbone_only=True)
    assert info.num_classes is None
    assert not any(k.startswith("aspp.") for k in state)
    bn = release_layers["bn4b3_branch2b"][1]
    torch.testing.assert_close(
        state["backbone.layer3.3.bn2.running_var"], torch.from_numpy(bn[1] / bn[2][0])
    )
    out, _ = convert(path, tmp_path / "init.safetensors", backbone_only=True)
    model = deeplab_v2_resnet101(pretrained=out, num_classes=5)
    assert model.num_classes == 5 and model.class_names == ()


def test_truncated_and_garbage_files_give_clear_errors(tmp_path, release_caffemodel):
    data = release_caffemodel.read_bytes()
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(CaffeFormatError, match="truncated"):
        convert(truncated, tmp_path / "out.safetensors")
    garbage = tmp_path / "garbage.caffemodel"
    garbage.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    with pytest.raises(CaffeFormatError, match=r"garbage\.caffemodel: not a valid"):
        convert(garbage, tmp_path / "out.safetensors")
    with pytest.raises(FileNotFoundError, match="no Caffe model"):
        read_caffemodel(tmp_path / "missing.caffemodel")


def test_missing_and_misshaped_layers_are_named(tmp_path, release_layers):
    layers = dict(release_layers)
    del layers["res4b7_branch2b"]
    layers["res5a_branch2a"] = ("Convolution", [np.zeros((512, 1024, 3, 3), np.float32)])
    path = write_caffemodel(tmp_path / "broken.caffemodel", layers, blobless=False)
    with pytest.raises(WeightsMismatchError) as error:
        convert(path, tmp_path / "out.safetensors")
    message = str(error.value)
    assert "missing: backbone.layer3.7.conv2.weight" in message
    assert "wrong shape: backbone.layer4.0.conv1.weight (512, 1024, 3, 3)" in message
    assert "(expected (512, 1024, 1, 1))" in message


def test_unexpected_layers_and_differing_msc_copies_are_refused(tmp_path, release_layers):
    layers = dict(release_layers)
    layers["fc8_extra"] = ("InnerProduct", [np.zeros((10, 5), np.float32)])
    path = write_caffemodel(tmp_path / "extra.caffemodel", layers, blobless=False)
    with pytest.raises(WeightsMismatchError, match=r"fc8_extra \(InnerProduct\)"):
        load(path)
    layers = dict(release_layers)
    layers["res2a_branch2a_res075"] = ("Convolution", [np.ones((64, 64, 1, 1), np.float32)])
    path = write_caffemodel(tmp_path / "copies.caffemodel", layers, blobless=False)
    with pytest.raises(WeightsMismatchError, match="res2a_branch2a_res075 should be a shared copy"):
        load(path)


def test_existing_output_is_never_overwritten_without_force(tmp_path, release_caffemodel):
    dst = tmp_path / "voc12.safetensors"
    dst.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="force"):
        convert(release_caffemodel, dst)
    assert dst.read_bytes() == b"keep me"
    convert(release_caffemodel, dst, force=True)
    assert dst.stat().st_size > 170e6
    assert sorted(os.listdir(tmp_path)) == ["voc12.safetensors"]


def test_corrupt_safetensors_and_unknown_formats(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(WeightsFormatError, match="not a readable safetensors file"):
        load(bad)
    pth = tmp_path / "bad.pth"
    pth.write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(WeightsFormatError, match="not a readable PyTorch checkpoint"):
        load(pth)
    other = tmp_path / "weights.h5"
    other.write_bytes(b"")
    with pytest.raises(WeightsFormatError, match="unknown weights format"):
        load(other)


def test_port_coco_init_converts_with_backbone_only(tmp_path, release_layers, capsys):
    """deeplabv1_resnet101-coco.pth: the port's v1 keys (no ``base.``) plus a COCO ``fc``."""
    state = {
        k.removeprefix("base."): v
        for k, v in peer_checkpoint(release_layers).items()
        if ".aspp." not in k
    }
    state["fc.weight"] = torch.zeros(91, 2048, 1, 1)
    state["fc.bias"] = torch.zeros(91)
    src = tmp_path / "deeplabv1_resnet101-coco.pth"
    torch.save(state, src)
    dst = tmp_path / "coco.safetensors"
    assert main(["convert", str(src), str(dst)]) == 1
    assert "fc.bias, fc.weight" in capsys.readouterr().err
    assert main(["convert", str(src), str(dst), "--backbone-only"]) == 0
    model = deeplab_v2_resnet101(pretrained=dst, num_classes=21)
    expected = torch.from_numpy(release_layers["res5c_branch2c"][1][0])
    assert torch.equal(model.backbone.layer4[2].conv3.weight, expected)


def test_class_names_and_protocol_travel_with_the_file(tmp_path, release_caffemodel, capsys):
    plain = tmp_path / "plain.safetensors"
    assert main(["convert", str(release_caffemodel), str(plain)]) == 0
    assert "--classes" in capsys.readouterr().err  # Caffe files do not name their classes
    assert deeplab_v2_resnet101(pretrained=plain).class_names == ()
    named = tmp_path / "named.safetensors"
    assert main(["convert", str(release_caffemodel), str(named), "--classes", "voc"]) == 0
    model = deeplab_v2_resnet101(pretrained=named)
    assert model.class_names[15] == "person" and len(model.class_names) == 21
    assert model.pretrained_info.protocol.as_dict() == {
        "msc_mode": "caffe", "scales": [0.5, 0.75], "pad_to": 513, "crf": "resnet101-voc",
        "mean_bgr": [104.008, 116.669, 122.675],
    }  # fmt: skip
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"thing {i}" for i in range(20)))
    assert main(["convert", str(release_caffemodel), str(tmp_path / "x.safetensors"),
                 "--classes", str(names)]) == 1  # fmt: skip
    assert "20 class names for a head of 21 classes" in capsys.readouterr().err
    # a model saved after use keeps both
    again = save_weights(model, tmp_path / "again.safetensors")
    reloaded = deeplab_v2_resnet101(pretrained=again)
    assert reloaded.class_names == model.class_names
    assert reloaded.pretrained_info.protocol.as_dict() == model.pretrained_info.protocol.as_dict()


def test_port_files_get_the_port_protocol(tmp_path, release_layers):
    src = tmp_path / "port.pth"
    torch.save(peer_checkpoint(release_layers), src)
    model = deeplab_v2_resnet101(pretrained=src)
    assert model.pretrained_info.protocol.msc_mode == "pytorch"
    assert model.pretrained_info.protocol.pad_to is None


def test_load_model_picks_the_network_from_the_weights(voc_safetensors, release_caffemodel):
    model = load_model(voc_safetensors)
    assert model.architecture == "deeplab_v2_resnet101" and model.num_classes == 21
    with pytest.raises(WeightsMismatchError, match="is a deeplab_v2_resnet101 file"):
        load_model(release_caffemodel, model="deeplab_v2_vgg16")
