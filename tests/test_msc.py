"""MultiScale: Caffe sizes, max fusion, training outputs, flip, the PyTorch-port variant."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deeplabv2.msc import MultiScale, MultiScaleOutput


class StrideEightStandIn(nn.Module):
    """A cheap model with 4 output classes at output stride 8; records its input sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[-2:]))
        return self.conv(x[..., ::8, ::8])


@pytest.mark.parametrize(
    ("side", "expected"), [(513, [513, 385, 257]), (321, [321, 241, 161]), (65, [65, 49, 33])]
)
def test_caffe_mode_input_sizes(side, expected):
    stand_in = StrideEightStandIn()
    MultiScale(stand_in).eval()(torch.randn(1, 3, side, side))
    assert stand_in.sizes == [(s, s) for s in expected]


def test_pytorch_mode_input_sizes():
    stand_in = StrideEightStandIn()
    MultiScale(stand_in, mode="pytorch").eval()(torch.randn(1, 3, 321, 300))
    assert stand_in.sizes == [(321, 300), (240, 225), (160, 150)]


def test_eval_output_is_the_max_of_the_resized_branches(tiny_deeplab):
    x = torch.randn(2, 3, 41, 41) * 50
    with torch.no_grad():
        fused = MultiScale(tiny_deeplab).eval()(x)
        branches = [
            tiny_deeplab(x),
            tiny_deeplab(F.interpolate(x, size=(31, 31), mode="bilinear", align_corners=True)),
            tiny_deeplab(F.interpolate(x, size=(21, 21), mode="bilinear", align_corners=True)),
        ]
    size = branches[0].shape[-2:]
    resized = [branches[0]] + [
        F.interpolate(b, size=size, mode="bilinear", align_corners=True) for b in branches[1:]
    ]
    expected = torch.stack(resized).max(dim=0).values
    assert fused.shape == (2, 5, 6, 6)
    torch.testing.assert_close(fused, expected)


def test_training_returns_four_tensors(tiny_deeplab):
    msc = MultiScale(tiny_deeplab).train()
    out = msc(torch.randn(1, 3, 65, 65) * 50)
    assert isinstance(out, MultiScaleOutput)
    assert msc.scales == (1.0, 0.75, 0.5)
    assert [tuple(t.shape[-2:]) for t in out.per_scale] == [(9, 9), (7, 7), (5, 5)]
    assert out.fused.shape == (1, 5, 9, 9)
    assert len([*out.per_scale, out.fused]) == 4
    assert out.fused.requires_grad
    assert torch.all(out.fused >= out.per_scale[0])


def test_flip_averages_the_flipped_prediction():
    stand_in = StrideEightStandIn()
    # 64 wide: the stand-in's ::8 sampling is not mirror-symmetric, so flipping changes results
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = MultiScale(stand_in).eval()
        flipped = MultiScale(stand_in, flip=True).eval()
        expected = (plain(x) + plain(x.flip(-1)).flip(-1)) / 2
        torch.testing.assert_close(flipped(x), expected)
        assert not torch.allclose(flipped(x), plain(x))


def test_pytorch_mode_resizes_logits_without_aligned_corners():
    stand_in = StrideEightStandIn()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fused = MultiScale(stand_in, scales=(0.5,), mode="pytorch").eval()(x)
        small = stand_in(F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False))
        big = stand_in(x)
    expected = torch.maximum(
        big, F.interpolate(small, size=big.shape[-2:], mode="bilinear", align_corners=False)
    )
    torch.testing.assert_close(fused, expected)


@pytest.mark.parametrize("scales", [(1.0,), (0.5, 0.5), (-0.5,), (0.0,), (20.0,)])
def test_bad_scales_raise(scales):
    with pytest.raises(ValueError, match="scale"):
        MultiScale(StrideEightStandIn(), scales=scales)


def test_bad_mode_raises():
    with pytest.raises(ValueError, match="mode"):
        MultiScale(StrideEightStandIn(), mode="tf")


def test_custom_scales_use_nearest_factor_pair():
    stand_in = StrideEightStandIn()
    msc = MultiScale(stand_in, scales=(1.5, 0.6)).eval()
    msc(torch.randn(1, 3, 41, 41))
    # 1.5 = zoom 3 / shrink 2: 41 -> 21 -> 61; 0.6 = zoom 3 / shrink 5: 41 -> 9 -> 25.
    assert msc.scales == (1.0, 1.5, 0.6)
    assert stand_in.sizes == [(41, 41), (61, 61), (25, 25)]
