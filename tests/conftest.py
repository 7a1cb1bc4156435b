"""Shared fixtures: small DeepLab v2 models with non-trivial BatchNorm statistics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deeplabv2.models import DeepLabV2, FrozenBatchNorm2d


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every frozen BatchNorm random statistics and affine parameters, like trained ones."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, FrozenBatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


@pytest.fixture(scope="session")
def deeplab() -> DeepLabV2:
    """A ResNet-101 DeepLab v2 (21 classes) with random weights and BatchNorm, in eval mode."""
    torch.manual_seed(0)
    return randomize_batchnorm(DeepLabV2(num_classes=21)).eval()


@pytest.fixture(scope="session")
def tiny_deeplab() -> DeepLabV2:
    """A one-block-per-stage DeepLab v2 (5 classes): same layers, a fraction of the cost."""
    torch.manual_seed(1)
    return randomize_batchnorm(DeepLabV2(num_classes=5, blocks=(1, 1, 1, 1)), seed=1).eval()


# Synthetic release-style Caffe weights, written by the test suite (see tests/weights).


@pytest.fixture(scope="session")
def release_layers() -> dict:
    """Every Caffe layer of DeepLab v2 ResNet-101 (release names), random values."""
    from .weights.caffe_reference import synthetic_blobs

    return synthetic_blobs()


@pytest.fixture(scope="session")
def release_caffemodel(tmp_path_factory, release_layers) -> Path:
    """The layers as a release-style .caffemodel: mixed blob encodings, blob-less layers and
    multi-scale copies of shared layers."""
    copies = {
        "conv1_res075": "conv1",
        "bn_conv1_res05": "bn_conv1",
        "res4b22_branch2c_res075": "res4b22_branch2c",
        "fc1_voc12_c3_res05": "fc1_voc12_c3",
    }
    from .weights.caffe_files import write_caffemodel

    path = tmp_path_factory.mktemp("release") / "train_iter_20000.caffemodel"
    return write_caffemodel(path, release_layers, copies=copies)


@pytest.fixture(scope="session")
def voc_safetensors(tmp_path_factory, release_caffemodel) -> Path:
    """The synthetic release model converted to safetensors (21 classes)."""
    from deeplabv2 import convert

    path, _ = convert(release_caffemodel, tmp_path_factory.mktemp("converted") / "voc.safetensors")
    return path


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """This test's temporary files go to a folder of their own, to see that none is left."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder
