"""The VGG-16 models of the release: layer names, sizes, parameters, conversion and MSC."""

from __future__ import annotations

import math
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from deeplabv2 import MultiScale, convert
from deeplabv2.cli import main
from deeplabv2.models import DeepLabVGG16, deeplab_largefov_vgg16, deeplab_v2_vgg16, load_model
from deeplabv2.models._registry import get_mapping

from ..weights.caffe_files import write_caffemodel
from ..weights.vgg_reference import synthetic_vgg_blobs, vgg_forward

VARIANTS = {
    "deeplab_v2_vgg16": (deeplab_v2_vgg16, False),
    "deeplab_largefov_vgg16": (deeplab_largefov_vgg16, True),
}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


@pytest.fixture(scope="module", params=list(VARIANTS))
def release(request, tmp_path_factory):
    """(architecture, Caffe layers, the release-style .caffemodel written from them)."""
    name = request.param
    layers = synthetic_vgg_blobs(large_fov=VARIANTS[name][1])
    path = tmp_path_factory.mktemp(name) / "train_iter_6000.caffemodel"
    return name, layers, write_caffemodel(path, layers)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(3).uniform(-120, 130, (1, 3, 49, 57))).float()


class Reference(nn.Module):
    """The independent forward pass as a module, so MultiScale can wrap it too."""

    min_input_size = 8

    def __init__(self, layers: dict, large_fov: bool) -> None:
        super().__init__()
        self.layers, self.large_fov = layers, large_fov

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return vgg_forward(self.layers, x, self.large_fov)


def test_caffemodel_converts_and_matches_the_caffe_forward(tmp_path, release, image):
    name, layers, path = release
    builder, large_fov = VARIANTS[name]
    out, metadata = convert(
        path, tmp_path / "vgg.safetensors", classes=[f"c{i}" for i in range(21)]
    )
    assert metadata["architecture"] == name  # found from the layer names
    model = builder(pretrained=out)
    assert model.class_names[3] == "c3" and model.pretrained_info.protocol.crf == "vgg16-voc"
    reference = Reference(layers, large_fov)
    with torch.no_grad():
        logits, expected = model(image), reference(image)
        assert logits.shape == expected.shape == (1, 21, 7, 8)
        assert relative_error(logits, expected) < 1e-4
        msc = MultiScale(model).eval()(image)
        msc_expected = MultiScale(reference).eval()(image)
    assert relative_error(msc, msc_expected) < 1e-4
    # the .caffemodel itself loads directly, and into the network its layer names say
    direct = load_model(path)
    assert isinstance(direct, DeepLabVGG16) and direct.architecture == name
    with torch.no_grad():
        assert relative_error(direct(image), expected) < 1e-4


def test_dropout_only_in_training(release):
    name, _, _ = release
    model = VARIANTS[name][0](num_classes=3).train()
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))  # dropout draws differ
        model.eval()
        assert torch.equal(model(x), model(x))


def test_caffe_table_covers_the_state_dict_once(release):
    name, layers, _ = release
    mapping = get_mapping(name)
    table = {**mapping.backbone, **mapping.find_head(layers)}
    assert set(table) == set(layers)  # every release layer, one to one
    keys = [f"{module}.{entry}" for module, _ in table.values() for entry in ("weight", "bias")]
    state = VARIANTS[name][0](num_classes=21).state_dict()
    assert len(keys) == len(set(keys)) and set(keys) == set(state)


def caffe_side(n: int) -> int:
    """Three Caffe max pools (3x3, stride 2, pad 1; stride-1 pools keep the size)."""
    for _ in range(3):
        out = int(math.ceil((n + 2 - 3) / 2)) + 1
        n = out - 1 if (out - 1) * 2 >= n + 1 else out
    return n


@pytest.mark.parametrize(("size", "expected"), [(513, 65), (321, 41), (500, 64), (375, 48)])
def test_output_sizes_follow_caffe(size, expected):
    assert caffe_side(size) == DeepLabVGG16.output_size(size) == expected
    for builder in (deeplab_v2_vgg16, deeplab_largefov_vgg16):
        with torch.device("meta"):
            model = builder(num_classes=5)
        out = model(torch.empty(1, 3, size, 321, device="meta"))
        assert tuple(out.shape) == (1, 5, expected, 41)


def test_parameter_counts():
    convs = 0
    in_ch = 3
    for count, width in zip((2, 2, 3, 3, 3), (64, 128, 256, 512, 512)):
        for _ in range(count):
            convs += in_ch * width * 9 + width
            in_ch = width
    branch = (512 * 1024 * 9 + 1024) + (1024 * 1024 + 1024) + (1024 * 21 + 21)
    counts = {
        name: sum(p.numel() for p in VARIANTS[name][0](num_classes=21).parameters())
        for name in VARIANTS
    }
    assert counts == {
        "deeplab_v2_vgg16": convs + 4 * branch,
        "deeplab_largefov_vgg16": convs + branch,
    }
    assert (counts["deeplab_v2_vgg16"], counts["deeplab_largefov_vgg16"]) == (
        37_877_652,
        20_505_429,
    )


def test_imagenet_init_loads_as_a_backbone(tmp_path):
    layers = synthetic_vgg_blobs(large_fov=True, num_classes=1000)  # fc8 is ImageNet's
    path = write_caffemodel(tmp_path / "vgg16_20M.caffemodel", layers, blobless=False)
    out, metadata = convert(path, tmp_path / "init.safetensors", backbone_only=True)
    assert (
        metadata["num_classes"] == "none" and metadata["architecture"] == "deeplab_largefov_vgg16"
    )
    model = deeplab_largefov_vgg16(pretrained=out, num_classes=2)
    weight, bias = layers["fc7"][1]
    assert torch.equal(model.aspp.branches[0].fc7.bias, torch.from_numpy(bias))
    assert model.aspp.branches[0].fc8.weight.shape == (2, 1024, 1, 1)


def test_registry_entries_load_from_the_release_files(tmp_path, monkeypatch, release):
    name, _, path = release
    home = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(home))
    checkpoints = home / "checkpoints"
    checkpoints.mkdir(parents=True)
    if name == "deeplab_v2_vgg16":  # inside the release zip, found by the pattern
        archive = checkpoints / "deeplab_aspp_vgg16-prototxt_and_model.zip"
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.write(path, "prototxt_and_model/train_iter_6000.caffemodel")
            zipped.writestr("prototxt_and_model/test.prototxt", "name: 'vgg16'")
    else:  # a plain .caffemodel download
        (checkpoints / "DeepLab-LargeFOV-train_iter_6000.caffemodel").write_bytes(path.read_bytes())
    model = VARIANTS[name][0](pretrained=True, local_files_only=True)
    assert model.pretrained_info.name == f"{name}.voc12"
    assert model.class_names[15] == "person"
    assert model.pretrained_info.protocol.crf == "vgg16-voc"


def test_cli_predict_with_a_vgg_model(tmp_path, release, capsys):
    from PIL import Image
    from skimage import data as skdata

    name, _, path = release
    (tmp_path / "in").mkdir()
    Image.fromarray(np.ascontiguousarray(skdata.coffee()[:41, :49])).save(tmp_path / "in" / "a.png")
    argv = ["predict", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--quiet"]
    assert main([*argv, "--weights", str(path), "--model", name]) == 0
    with Image.open(tmp_path / "out" / "a.png") as png:
        assert png.size == (49, 41)
    other = "deeplab_v2_resnet101"
    assert main([*argv, "--weights", str(path), "--model", other, "--force"]) == 1
    assert f"is a {name} file, not deeplab_v2_resnet101" in capsys.readouterr().err
