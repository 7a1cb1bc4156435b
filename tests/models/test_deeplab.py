"""The DeepLab v2 ResNet-101 network: sizes, parameters, frozen BN, input validation."""

from __future__ import annotations

import math

import pytest
import torch

import deeplabv2
from deeplabv2.models import DeepLabV2, deeplab_v2_resnet101, get_model, list_models, output_size


def caffe_conv(n: int, kernel: int, stride: int, pad: int) -> int:
    return (n + 2 * pad - kernel) // stride + 1


def caffe_pool(n: int, kernel: int, stride: int, pad: int) -> int:
    # caffe/src/caffe/layers/pooling_layer.cpp: ceil, then drop a window starting in the padding.
    out = int(math.ceil((n + 2 * pad - kernel) / stride)) + 1
    if pad and (out - 1) * stride >= n + pad:
        out -= 1
    return out


def caffe_output_side(n: int) -> int:
    n = caffe_conv(n, 7, 2, 3)  # conv1
    n = caffe_pool(n, 3, 2, 1)  # pool1
    return caffe_conv(n, 1, 2, 0)  # res3a_branch2a / branch1


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [(513, 513, (65, 65)), (321, 321, (41, 41)), (375, 500, (48, 63)), (65, 65, (9, 9))],
)
def test_output_size_known_values(height, width, expected):
    assert (output_size(height), output_size(width)) == expected
    assert (caffe_output_side(height), caffe_output_side(width)) == expected


@pytest.mark.parametrize("side", list(range(8, 130)))
def test_output_size_matches_caffe_layer_arithmetic(side):
    assert output_size(side) == caffe_output_side(side)


@pytest.mark.parametrize("size", [(65, 65), (33, 47), (64, 81), (41, 8)])
def test_forward_shapes_match_caffe_rounding(deeplab, size):
    with torch.no_grad():
        out = deeplab(torch.randn(2, 3, *size))
    assert out.shape == (2, 21, caffe_output_side(size[0]), caffe_output_side(size[1]))
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_forward_shape_for_a_voc_sized_image(tiny_deeplab):
    # A 500x375 VOC image (W x H): the full-depth shape rules are the same for any block count.
    with torch.no_grad():
        out = tiny_deeplab(torch.randn(1, 3, 375, 500))
    assert out.shape == (1, 5, 48, 63)


def expected_parameter_count(num_classes: int) -> int:
    total = 3 * 64 * 49 + 2 * 64  # conv1 + bn_conv1/scale_conv1 affine
    in_ch = 64
    for stage, blocks in enumerate((3, 4, 23, 3)):
        mid = 64 * 2**stage
        out = 4 * mid
        for block in range(blocks):
            cin = in_ch if block == 0 else out
            total += cin * mid + 9 * mid * mid + mid * out + 2 * (mid + mid + out)
            if block == 0:
                total += cin * out + 2 * out
        in_ch = out
    return total + 4 * (2048 * 9 * num_classes + num_classes)


@pytest.mark.parametrize("num_classes", [21, 182])
def test_parameter_count(num_classes):
    model = deeplab_v2_resnet101(num_classes=num_classes)
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_parameter_count(num_classes)
    if num_classes == 21:
        assert round(count / 1e6, 1) == 44.0


def test_frozen_batchnorm_survives_a_training_step(tiny_deeplab):
    import copy

    model = copy.deepcopy(tiny_deeplab).train()
    bn_state = {
        k: v.clone() for k, v in model.state_dict().items() if ".bn" in k or "downsample.1" in k
    }
    assert bn_state, "the model has BatchNorm entries"
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.1, momentum=0.9)
    x = torch.randn(2, 3, 41, 41) * 50
    target = torch.randint(0, 5, (2, 6, 6))
    loss = torch.nn.functional.cross_entropy(model(x), target)
    loss.backward()
    assert model.aspp.convs[0].weight.grad is not None
    assert model.aspp.convs[0].weight.grad.abs().sum() > 0
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.backbone.layer4[0].conv2.weight.grad.abs().sum() > 0
    assert model.backbone.bn1.weight.grad is None
    optimizer.step()
    after = model.state_dict()
    for key, value in bn_state.items():
        assert torch.equal(after[key], value), key
    assert not torch.equal(
        after["aspp.convs.0.weight"], tiny_deeplab.state_dict()["aspp.convs.0.weight"]
    )


def test_train_and_eval_outputs_are_identical(tiny_deeplab):
    import copy

    model = copy.deepcopy(tiny_deeplab)
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        eval_out = model.eval()(x)
        train_out = model.train()(x)
    torch.testing.assert_close(train_out, eval_out, rtol=0, atol=0)


def test_batchnorm_eps_and_aspp_init():
    torch.manual_seed(0)
    model = DeepLabV2(num_classes=21)
    assert model.backbone.bn1.eps == 1e-5
    assert model.backbone.maxpool.ceil_mode
    assert [c.dilation[0] for c in model.aspp.convs] == [6, 12, 18, 24]
    assert [c.padding[0] for c in model.aspp.convs] == [6, 12, 18, 24]
    weights = torch.cat([c.weight.flatten() for c in model.aspp.convs])
    assert abs(weights.std().item() - 0.01) < 5e-4
    assert all(torch.count_nonzero(c.bias) == 0 for c in model.aspp.convs)
    # Caffe: the stride of the first block of res3 sits on its 1x1 convs, not on the 3x3.
    block = model.backbone.layer2[0]
    assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)
    assert block.downsample[0].stride == (2, 2)
    assert model.backbone.layer3[5].conv2.dilation == (2, 2)
    assert model.backbone.layer4[0].conv2.dilation == (4, 4)
    assert model.backbone.layer4[0].conv1.stride == (1, 1)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.zeros(3, 65, 65), "4-D input"),
        (torch.zeros(65, 65), "4-D input"),
        (torch.zeros(1, 4, 65, 65), "3 input channels"),
        (torch.zeros(1, 1, 65, 65), "3 input channels"),
        (torch.zeros(1, 3, 65, 65, dtype=torch.uint8), "floating-point"),
        (torch.zeros(1, 3, 65, 65, dtype=torch.int64), "floating-point"),
        (torch.zeros(1, 3, 7, 65), "too small"),
        (torch.zeros(1, 3, 65, 4), "too small"),
    ],
)
def test_bad_input_raises_clear_value_error(tiny_deeplab, bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_deeplab(bad)


def test_non_tensor_input_raises_type_error(tiny_deeplab):
    with pytest.raises(TypeError, match="torch.Tensor"):
        tiny_deeplab([[1.0]])


def test_registry_and_top_level_exports():
    assert "deeplab_v2_resnet101" in list_models()
    model = get_model("deeplab_v2_resnet101", num_classes=3)
    assert isinstance(model, DeepLabV2) and model.num_classes == 3
    assert deeplabv2.deeplab_v2_resnet101 is deeplab_v2_resnet101
    with pytest.raises(ValueError, match="unknown model"):
        get_model("deeplab_v3")
    with pytest.raises(ValueError, match="num_classes"):
        DeepLabV2(num_classes=0)
