"""Synthetic DeepLab v2 Caffe weights and a forward pass computed straight from their blobs."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

BLOCKS = (3, 4, 23, 3)


def block_names(stage: int) -> list[str]:
    count = BLOCKS[stage]
    letters = ["a"] + (
        [chr(ord("a") + i) for i in range(1, count)]
        if count <= 3
        else [f"b{i}" for i in range(1, count)]
    )
    return [f"{stage + 2}{letter}" for letter in letters]


def synthetic_blobs(num_classes: int = 21, head: str = "fc1_voc12", seed: int = 0) -> dict:
    """Caffe layer name -> (type, [blobs]) for the whole DeepLab v2 ResNet-101, random values."""
    rng = np.random.default_rng(seed)
    layers: dict[str, tuple[str, list[np.ndarray]]] = {}

    def conv(name: str, out_ch: int, in_ch: int, k: int, bias: bool = False) -> None:
        w = rng.standard_normal((out_ch, in_ch, k, k)).astype(np.float32)
        w *= np.sqrt(1.0 / (in_ch * k * k))
        blobs = [w] + ([rng.standard_normal(out_ch).astype(np.float32) * 0.1] if bias else [])
        layers[name] = ("Convolution", blobs)

    def bn(suffix: str, channels: int) -> None:
        s = np.array([rng.uniform(0.5, 2.0)], dtype=np.float32)  # moving-average factor
        mean = rng.standard_normal(channels).astype(np.float32) * 0.1
        var = rng.uniform(0.5, 1.5, channels).astype(np.float32)
        layers[f"bn{suffix}"] = ("BatchNorm", [mean * s, var * s, s])
        gamma = rng.uniform(0.5, 1.0, channels).astype(np.float32)
        beta = rng.standard_normal(channels).astype(np.float32) * 0.1
        layers[f"scale{suffix}"] = ("Scale", [gamma, beta])

    conv("conv1", 64, 3, 7)
    bn("_conv1", 64)
    in_ch = 64
    for stage in range(4):
        mid = 64 * 2**stage
        for index, name in enumerate(block_names(stage)):
            cin = in_ch if index == 0 else 4 * mid
            if index == 0:
                conv(f"res{name}_branch1", 4 * mid, cin, 1)
                bn(f"{name}_branch1", 4 * mid)
            conv(f"res{name}_branch2a", mid, cin, 1)
            bn(f"{name}_branch2a", mid)
            conv(f"res{name}_branch2b", mid, mid, 3)
            bn(f"{name}_branch2b", mid)
            conv(f"res{name}_branch2c", 4 * mid, mid, 1)
            bn(f"{name}_branch2c", 4 * mid)
        in_ch = 4 * mid
    for i in range(4):
        conv(f"{head}_c{i}", num_classes, 2048, 3, bias=True)
    return layers


def caffe_forward(layers: dict, x: torch.Tensor, head: str = "fc1_voc12") -> torch.Tensor:
    """DeepLab v2 ResNet-101 computed from Caffe blobs by name with torch.nn.functional."""

    def t(name: str, i: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(layers[name][1][i], dtype=np.float32))

    def bn_scale(h: torch.Tensor, suffix: str) -> torch.Tensor:
        s = float(layers[f"bn{suffix}"][1][2].ravel()[0])
        mean = t(f"bn{suffix}", 0).flatten() / s
        var = t(f"bn{suffix}", 1).flatten() / s
        shape = (1, -1, 1, 1)
        h = (h - mean.view(shape)) / torch.sqrt(var.view(shape) + 1e-5)
        return h * t(f"scale{suffix}", 0).view(shape) + t(f"scale{suffix}", 1).view(shape)

    h = F.conv2d(x, t("conv1", 0), stride=2, padding=3)
    h = F.max_pool2d(torch.relu(bn_scale(h, "_conv1")), 3, 2, 1, ceil_mode=True)
    for stage, (stride, dilation) in enumerate(((1, 1), (2, 1), (1, 2), (1, 4))):
        for index, name in enumerate(block_names(stage)):
            s = stride if index == 0 else 1
            a = torch.relu(
                bn_scale(F.conv2d(h, t(f"res{name}_branch2a", 0), stride=s), f"{name}_branch2a")
            )
            b = F.conv2d(a, t(f"res{name}_branch2b", 0), padding=dilation, dilation=dilation)
            b = torch.relu(bn_scale(b, f"{name}_branch2b"))
            c = bn_scale(F.conv2d(b, t(f"res{name}_branch2c", 0)), f"{name}_branch2c")
            if index == 0:
                shortcut = bn_scale(
                    F.conv2d(h, t(f"res{name}_branch1", 0), stride=s), f"{name}_branch1"
                )
            else:
                shortcut = h
            h = torch.relu(c + shortcut)
    return sum(
        F.conv2d(h, t(f"{head}_c{i}", 0), t(f"{head}_c{i}", 1).flatten(), padding=r, dilation=r)
        for i, r in enumerate((6, 12, 18, 24))
    )
