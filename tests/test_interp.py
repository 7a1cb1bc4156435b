"""Caffe Interp semantics: size rules and corner-aligned bilinear resizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeplabv2.interp import caffe_interp_size, resize_bilinear, scale_to_factors, upsample_logits


def caffe_interp2(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """caffe_cpu_interp2 of the DeepLab release (src/caffe/util/interp.cpp), float32 loops."""
    channels, in_h, in_w = x.shape
    rheight = np.float32((in_h - 1) / (out_h - 1)) if out_h > 1 else np.float32(0)
    rwidth = np.float32((in_w - 1) / (out_w - 1)) if out_w > 1 else np.float32(0)
    out = np.empty((channels, out_h, out_w), dtype=np.float32)
    for h2 in range(out_h):
        h1r = rheight * np.float32(h2)
        h1 = int(h1r)
        h1p = 1 if h1 < in_h - 1 else 0
        h1l = np.float32(h1r - h1)
        h0l = np.float32(1) - h1l
        for w2 in range(out_w):
            w1r = rwidth * np.float32(w2)
            w1 = int(w1r)
            w1p = 1 if w1 < in_w - 1 else 0
            w1l = np.float32(w1r - w1)
            w0l = np.float32(1) - w1l
            out[:, h2, w2] = h0l * (w0l * x[:, h1, w1] + w1l * x[:, h1, w1 + w1p]) + h1l * (
                w0l * x[:, h1 + h1p, w1] + w1l * x[:, h1 + h1p, w1 + w1p]
            )
    return out


@pytest.mark.parametrize(
    ("size", "zoom", "shrink", "expected"),
    [
        (513, 3, 4, 385),
        (321, 3, 4, 241),
        (513, 1, 2, 257),
        (321, 1, 2, 161),
        (65, 8, 1, 513),
        (41, 8, 1, 321),
        (33, 2, 1, 65),
        (500, 3, 4, 373),
    ],
)
def test_caffe_interp_size(size, zoom, shrink, expected):
    assert caffe_interp_size(size, zoom=zoom, shrink=shrink) == expected


@pytest.mark.parametrize(
    ("scale", "factors"),
    [(0.75, (3, 4)), (0.5, (1, 2)), (1.5, (3, 2)), (0.6, (3, 5)), (0.33, (1, 3)), (1.25, (5, 4))],
)
def test_scale_to_factors(scale, factors):
    assert scale_to_factors(scale) == factors


@pytest.mark.parametrize("bad", [0.0, -0.5, 9.0])
def test_scale_to_factors_rejects_bad_scales(bad):
    with pytest.raises(ValueError, match="scale"):
        scale_to_factors(bad)


@pytest.mark.parametrize(
    ("in_size", "out_size"),
    [((9, 9), (65, 65)), ((7, 5), (13, 17)), ((21, 18), (16, 14)), ((1, 4), (3, 9))],
)
def test_resize_bilinear_matches_caffe_interp(in_size, out_size):
    x = np.random.default_rng(0).standard_normal((3, *in_size)).astype(np.float32)
    expected = caffe_interp2(x, *out_size)
    actual = resize_bilinear(torch.from_numpy(x)[None], out_size)[0].numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_upsample_logits_zooms_by_eight_and_crops():
    logits = torch.randn(1, 4, 65, 65)
    full = upsample_logits(logits, (513, 513))
    assert full.shape == (1, 4, 513, 513)
    # Logit i lies on pixel 8 i exactly.
    torch.testing.assert_close(full[..., ::8, ::8], logits)
    expected = caffe_interp2(logits[0].numpy(), 513, 513)[:, :375, :500]
    cropped = upsample_logits(logits, (375, 500))
    np.testing.assert_allclose(cropped[0].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_upsample_logits_extends_the_edge_for_unpadded_inputs():
    logits = torch.randn(2, 3, 48, 63)  # a 375x500 input without padding
    full = upsample_logits(logits, (375, 500))
    assert full.shape == (2, 3, 375, 500)
    # Height: 48 -> 377 is cropped to 375 (logit 47 sits on pixel 376, outside the image).
    torch.testing.assert_close(full[..., ::8, :497:8], logits[..., :47, :])
    # Width: 63 -> 497 is short of 500; the last 3 columns repeat column 496.
    torch.testing.assert_close(full[..., 497:], full[..., 496:497].expand(-1, -1, -1, 3))


def test_upsample_logits_rejects_non_4d():
    with pytest.raises(ValueError, match=r"\(B, C, h, w\)"):
        upsample_logits(torch.zeros(3, 9, 9), (65, 65))


def test_upsample_logits_rejects_logits_of_another_input():
    with pytest.raises(ValueError, match="not this input's logits"):
        upsample_logits(torch.randn(1, 3, 10, 10), (100, 60))  # 10 -> 73 + 8 < 100
