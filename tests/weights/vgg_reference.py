"""Synthetic DeepLab VGG-16 Caffe weights, and a forward pass computed straight from the blobs.

The forward pass re-implements the release prototxts' layers with torch.nn.functional and
Caffe's own pooling arithmetic (written out here, not taken from the library): max pooling
rounds its output size up and drops a last window that would start in the padding; average
pooling divides by the window clipped to the padded input (Caffe's ``pool_size``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

STAGES = (2, 2, 3, 3, 3)
WIDTHS = (64, 128, 256, 512, 512)
ASPP_RATES = (6, 12, 18, 24)


def synthetic_vgg_blobs(large_fov: bool, num_classes: int = 21, seed: int = 0) -> dict:
    """Caffe layer name -> (type, [weight, bias]) for DeepLab-ASPP-L or LargeFOV VGG-16."""
    rng = np.random.default_rng(seed)
    layers: dict[str, tuple[str, list[np.ndarray]]] = {}

    def conv(name: str, out_ch: int, in_ch: int, k: int) -> None:
        w = rng.standard_normal((out_ch, in_ch, k, k)).astype(np.float32)
        w *= np.float32(np.sqrt(2.0 / (in_ch * k * k)))
        b = (rng.standard_normal(out_ch) * 0.05).astype(np.float32)
        layers[name] = ("Convolution", [w, b])

    in_ch = 3
    for stage, (count, width) in enumerate(zip(STAGES, WIDTHS), start=1):
        for index in range(1, count + 1):
            conv(f"conv{stage}_{index}", width, in_ch, 3)
            in_ch = width
    suffixes = [""] if large_fov else [f"_{i}" for i in range(1, 5)]
    for suffix in suffixes:
        conv(f"fc6{suffix}", 1024, 512, 3)
        conv(f"fc7{suffix}", 1024, 1024, 1)
        conv(f"fc8_voc12{suffix}", num_classes, 1024, 1)
    return layers


def caffe_pool(x: torch.Tensor, kernel: int, stride: int, pad: int, mode: str) -> torch.Tensor:
    """Caffe's PoolingLayer (MAX or AVE) on ``(B, C, H, W)``, window by window."""
    height, width = x.shape[-2:]

    def out_size(n: int) -> int:
        out = int(math.ceil((n + 2 * pad - kernel) / stride)) + 1
        if pad and (out - 1) * stride >= n + pad:
            out -= 1
        return out

    rows = []
    for oh in range(out_size(height)):
        h0 = oh * stride - pad
        h1 = min(h0 + kernel, height + pad)
        cols = []
        for ow in range(out_size(width)):
            w0 = ow * stride - pad
            w1 = min(w0 + kernel, width + pad)
            window = x[..., max(h0, 0) : min(h1, height), max(w0, 0) : min(w1, width)]
            if mode == "max":
                cols.append(window.amax(dim=(-2, -1)))
            else:
                cols.append(window.sum(dim=(-2, -1)) / ((h1 - h0) * (w1 - w0)))
        rows.append(torch.stack(cols, dim=-1))
    return torch.stack(rows, dim=-2)


def vgg_forward(layers: dict, x: torch.Tensor, large_fov: bool) -> torch.Tensor:
    """The release's test net (no dropout) computed from the blobs by name."""

    def conv(h: torch.Tensor, name: str, dilation: int = 1, pad: int = 0) -> torch.Tensor:
        weight, bias = (torch.from_numpy(b) for b in layers[name][1])
        return F.conv2d(h, weight, bias, padding=pad, dilation=dilation)

    h = x
    for stage, count in enumerate(STAGES, start=1):
        dilation = 2 if stage == 5 else 1
        for index in range(1, count + 1):
            h = torch.relu(conv(h, f"conv{stage}_{index}", dilation, dilation))
        h = caffe_pool(h, 3, 2 if stage <= 3 else 1, 1, "max")
    if large_fov:
        h = caffe_pool(h, 3, 1, 1, "ave")  # pool5a
    branches = [("", 12)] if large_fov else [(f"_{i + 1}", r) for i, r in enumerate(ASPP_RATES)]
    out = 0
    for suffix, rate in branches:
        b = torch.relu(conv(h, f"fc6{suffix}", rate, rate))
        b = torch.relu(conv(b, f"fc7{suffix}"))
        out = out + conv(b, f"fc8_voc12{suffix}")
    return out
