"""BatchNorm folding and channels_last: the inference fast path equals the plain model."""

from __future__ import annotations

import copy

import pytest
import torch

from deeplabv2.models import FrozenBatchNorm2d, fold_batchnorm
from deeplabv2.msc import MultiScale


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


def test_folded_equals_unfolded(deeplab):
    x = torch.randn(1, 3, 65, 65) * 50
    folded = fold_batchnorm(deeplab)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in deeplab.modules()), "original kept"
    with torch.no_grad():
        expected, actual = deeplab(x), folded(x)
    assert relative_error(actual, expected) < 1e-4
    assert (actual - expected).abs().max().item() <= 1e-4 * expected.abs().max().item()


def test_folded_channels_last_equals_unfolded(deeplab):
    x = torch.randn(1, 3, 49, 57) * 50
    fast = fold_batchnorm(deeplab).to(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = deeplab(x)
        actual = fast(x.contiguous(memory_format=torch.channels_last))
    assert relative_error(actual, expected) < 1e-4


def test_channels_last_unfolded_equals_contiguous(tiny_deeplab):
    x = torch.randn(2, 3, 41, 41) * 50
    model = copy.deepcopy(tiny_deeplab).to(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = tiny_deeplab(x)
        actual = model(x.contiguous(memory_format=torch.channels_last))
    assert relative_error(actual, expected) < 1e-5


def test_fold_inside_multiscale_and_inplace(tiny_deeplab):
    msc = MultiScale(copy.deepcopy(tiny_deeplab)).eval()
    x = torch.randn(1, 3, 41, 41) * 50
    with torch.no_grad():
        expected = msc(x)
    result = fold_batchnorm(msc, inplace=True)
    assert result is msc
    with torch.no_grad():
        assert relative_error(msc(x), expected) < 1e-4
    with pytest.raises(ValueError, match="already folded"):
        fold_batchnorm(msc)


def test_fold_rejects_models_without_batchnorm():
    with pytest.raises(ValueError, match="no frozen BatchNorm"):
        fold_batchnorm(torch.nn.Conv2d(3, 3, 1))
