"""Hand-written Caffe semantics (numpy pooling loops, F.* convolutions) vs the modules."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from deeplabv2.models.resnet import Bottleneck

from ..conftest import randomize_batchnorm


def caffe_max_pool(x: np.ndarray, kernel: int = 3, stride: int = 2, pad: int = 1) -> np.ndarray:
    """caffe/src/caffe/layers/pooling_layer.cpp, MAX, written out with loops."""
    channels, height, width = x.shape
    pooled_h = int(np.ceil((height + 2 * pad - kernel) / stride)) + 1
    pooled_w = int(np.ceil((width + 2 * pad - kernel) / stride)) + 1
    if (pooled_h - 1) * stride >= height + pad:
        pooled_h -= 1
    if (pooled_w - 1) * stride >= width + pad:
        pooled_w -= 1
    out = np.empty((channels, pooled_h, pooled_w), dtype=x.dtype)
    for ph in range(pooled_h):
        for pw in range(pooled_w):
            hstart, wstart = ph * stride - pad, pw * stride - pad
            hend, wend = min(hstart + kernel, height), min(wstart + kernel, width)
            hstart, wstart = max(hstart, 0), max(wstart, 0)
            out[:, ph, pw] = x[:, hstart:hend, wstart:wend].max(axis=(1, 2))
    return out


def caffe_bn_scale(x: torch.Tensor, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    """Caffe BatchNorm (use_global_stats) followed by Scale (bias_term: true)."""
    shape = (1, -1, 1, 1)
    normalized = (x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + 1e-5)
    return normalized * bn.weight.view(shape) + bn.bias.view(shape)


def test_stem_matches_caffe(tiny_deeplab):
    backbone = tiny_deeplab.backbone
    for height, width in [(23, 23), (26, 31), (65, 65)]:
        x = torch.randn(1, 3, height, width) * 40
        conv = F.conv2d(x, backbone.conv1.weight, stride=2, padding=3)
        relu = torch.relu(caffe_bn_scale(conv, backbone.bn1))
        expected = caffe_max_pool(relu[0].detach().numpy())
        with torch.no_grad():
            actual = backbone.maxpool(torch.relu(backbone.bn1(backbone.conv1(x))))[0].numpy()
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-4)


def test_downsampling_bottleneck_matches_caffe():
    torch.manual_seed(3)
    block = randomize_batchnorm(Bottleneck(64, 32, stride=2, dilation=1, downsample=True)).eval()
    x = torch.randn(2, 64, 17, 18)
    # res3a: the stride is on branch2a (1x1) and branch1 (1x1); branch2b is a plain 3x3.
    a = torch.relu(caffe_bn_scale(F.conv2d(x, block.conv1.weight, stride=2), block.bn1))
    b = torch.relu(caffe_bn_scale(F.conv2d(a, block.conv2.weight, padding=1), block.bn2))
    c = caffe_bn_scale(F.conv2d(b, block.conv3.weight), block.bn3)
    shortcut = caffe_bn_scale(
        F.conv2d(x, block.downsample[0].weight, stride=2), block.downsample[1]
    )
    expected = torch.relu(c + shortcut)
    with torch.no_grad():
        actual = block(x)
    assert actual.shape == (2, 128, 9, 9)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_dilated_identity_bottleneck_matches_caffe():
    torch.manual_seed(4)
    block = randomize_batchnorm(Bottleneck(128, 32, dilation=4)).eval()
    x = torch.randn(1, 128, 13, 11)
    a = torch.relu(caffe_bn_scale(F.conv2d(x, block.conv1.weight), block.bn1))
    b = F.conv2d(a, block.conv2.weight, padding=4, dilation=4)
    b = torch.relu(caffe_bn_scale(b, block.bn2))
    expected = torch.relu(caffe_bn_scale(F.conv2d(b, block.conv3.weight), block.bn3) + x)
    with torch.no_grad():
        actual = block(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_aspp_is_the_sum_of_four_dilated_convolutions(tiny_deeplab):
    features = torch.randn(1, 2048, 9, 10)
    expected = sum(
        F.conv2d(features, conv.weight, conv.bias, padding=rate, dilation=rate)
        for conv, rate in zip(tiny_deeplab.aspp.convs, (6, 12, 18, 24))
    )
    with torch.no_grad():
        actual = tiny_deeplab.aspp(features)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
