"""Shared fixtures: small DeepLab v2 models with non-trivial BatchNorm statistics."""

from __future__ import annotations

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
