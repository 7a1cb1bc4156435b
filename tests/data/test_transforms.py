"""to_caffe_input: RGB images of every supported kind -> BGR, 0..255, minus the Caffe mean."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deeplabv2.data import CAFFE_MEAN_BGR, CaffePreprocess, to_caffe_input


def expected_from_rgb_uint8(rgb: np.ndarray) -> np.ndarray:
    bgr = rgb[..., ::-1].astype(np.float64) - np.array(CAFFE_MEAN_BGR)
    return bgr.transpose(2, 0, 1)


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)


def test_numpy_uint8(rgb):
    out = to_caffe_input(rgb)
    assert out.shape == (3, 7, 9) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), expected_from_rgb_uint8(rgb), atol=1e-4)


def test_pil_image_of_any_mode(rgb):
    np.testing.assert_allclose(
        to_caffe_input(Image.fromarray(rgb)).numpy(), expected_from_rgb_uint8(rgb), atol=1e-4
    )
    gray = Image.fromarray(rgb[..., 0])
    out = to_caffe_input(gray)
    gray3 = np.repeat(rgb[..., :1], 3, axis=-1)
    np.testing.assert_allclose(out.numpy(), expected_from_rgb_uint8(gray3), atol=1e-4)


def test_torch_uint8_and_float_batches(rgb):
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    batch = torch.stack([chw, chw.flip(-1)])
    out = to_caffe_input(batch)
    assert out.shape == (2, 3, 7, 9)
    np.testing.assert_allclose(out[0].numpy(), expected_from_rgb_uint8(rgb), atol=1e-4)
    as_float = to_caffe_input(chw.double() / 255)
    assert as_float.dtype == torch.float32
    np.testing.assert_allclose(as_float.numpy(), expected_from_rgb_uint8(rgb), atol=1e-3)


def test_numpy_float_in_unit_range(rgb):
    out = to_caffe_input(rgb.astype(np.float32) / 255)
    np.testing.assert_allclose(out.numpy(), expected_from_rgb_uint8(rgb), atol=1e-3)


def test_transform_object(rgb):
    transform = CaffePreprocess()
    torch.testing.assert_close(transform(rgb), to_caffe_input(rgb))
    assert "104.008" in repr(transform)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (np.zeros((7, 9), dtype=np.uint8), ValueError, r"\(H, W, 3\)"),
        (np.zeros((7, 9, 4), dtype=np.uint8), ValueError, r"\(H, W, 3\)"),
        (torch.zeros(1, 7, 9), ValueError, r"\(3, H, W\)"),
        (np.full((7, 9, 3), 200.0), ValueError, "0..1"),
        (torch.full((3, 7, 9), -0.5), ValueError, "0..1"),
        (np.zeros((7, 9, 3), dtype=np.int32), ValueError, "uint8"),
        ("image.jpg", TypeError, "PIL image"),
    ],
)
def test_bad_images_raise(bad, error, message):
    with pytest.raises(error, match=message):
        to_caffe_input(bad)


def test_read_only_arrays_convert_without_a_warning() -> None:
    """``np.asarray(PIL image)`` is read-only; the README's own snippet passes one."""
    import warnings

    image = np.asarray(Image.new("RGB", (9, 7), (10, 20, 30)))
    assert not image.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = to_caffe_input(image)
    assert x.shape == (3, 7, 9) and float(x[0, 0, 0]) == pytest.approx(30 - 104.008)
