"""ImageNet initialisations: MSRA's caffemodel (downloaded by hand) and torchvision's weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deeplabv2.errors import WeightsUnavailableError
from deeplabv2.models import DeepLabV2, deeplab_v2_resnet101

from ..conftest import randomize_batchnorm
from .caffe_files import write_caffemodel

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def torchvision_state() -> dict:
    """A state dict laid out like torchvision's resnet101 (random values)."""
    torch.manual_seed(0)
    model = randomize_batchnorm(DeepLabV2(num_classes=3))
    state = {k[len("backbone.") :]: v for k, v in model.state_dict().items() if "backbone" in k}
    for key in [k for k in state if k.endswith("running_var")]:
        state[key.replace("running_var", "num_batches_tracked")] = torch.tensor(5)
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    return state


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(home))
    (home / "checkpoints").mkdir(parents=True)
    return home / "checkpoints"


def test_torchvision_weights_map_onto_the_caffe_input(tmp_path, torchvision_state, torch_home):
    torch.save(torchvision_state, torch_home / "models-resnet101-63fe2227.pth")
    model = deeplab_v2_resnet101(pretrained="torchvision-imagenet", num_classes=5)
    assert model.pretrained_info.name == "deeplab_v2_resnet101.torchvision-imagenet"
    key = "layer3.7.conv2.weight"
    assert torch.equal(model.backbone.layer3[7].conv2.weight, torchvision_state[key])
    # the stem on the Caffe input equals torchvision's stem on its own input (away from the
    # border, where zero padding differs between the two conventions)
    rgb = torch.randint(0, 256, (1, 3, 64, 64)).float()
    caffe_input = rgb.flip(1) - torch.tensor([104.008, 116.669, 122.675]).view(1, 3, 1, 1)
    tv_input = (rgb / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(
        1, 3, 1, 1
    )

    def stem(x, weight, bn):
        h = F.conv2d(x, weight, stride=2, padding=3)
        return F.batch_norm(
            h, bn["running_mean"], bn["running_var"], bn["weight"], bn["bias"], False, 0, 1e-5
        )

    ours = {k.removeprefix("backbone.bn1."): v for k, v in model.state_dict().items()
            if k.startswith("backbone.bn1.")}  # fmt: skip
    theirs = {
        k.removeprefix("bn1."): v for k, v in torchvision_state.items() if k.startswith("bn1.")
    }
    with torch.no_grad():
        a = stem(caffe_input, model.backbone.conv1.weight, ours)
        b = stem(tv_input, torchvision_state["conv1.weight"], theirs)
    torch.testing.assert_close(a[..., 2:-2, 2:-2], b[..., 2:-2, 2:-2], atol=2e-3, rtol=1e-4)
    assert (a[..., 0, :] - b[..., 0, :]).abs().max() > 1e-3  # the border is where they differ
    with pytest.raises(Exception, match="no head"):  # a backbone: num_classes is needed
        deeplab_v2_resnet101(pretrained=torch_home / "models-resnet101-63fe2227.pth")


def test_msra_caffemodel_is_fetched_by_hand(torch_home, release_layers):
    with pytest.raises(WeightsUnavailableError) as error:
        deeplab_v2_resnet101(pretrained="imagenet", num_classes=21)
    message = str(error.value)
    assert "ResNet-101-model.caffemodel" in message and "deep-residual-networks" in message
    assert "deeplab_v2_resnet101.imagenet.caffemodel" in message  # where to put it
    layers = {k: v for k, v in release_layers.items() if not k.startswith("fc1_voc12")}
    fc = np.zeros((1000, 2048), np.float32)
    layers["fc1000"] = ("InnerProduct", [fc, np.zeros(1000, np.float32)])
    write_caffemodel(torch_home / "deeplab_v2_resnet101.imagenet.caffemodel", layers)
    model = deeplab_v2_resnet101(pretrained="imagenet", num_classes=21)
    expected = torch.from_numpy(release_layers["res5c_branch2c"][1][0])
    assert torch.equal(model.backbone.layer4[2].conv3.weight, expected)
