"""load_image: every supported kind of input becomes (H, W, 3) uint8 RGB."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from deeplabv2.data.images import load_image, read_label


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut()[:40, :60])


def test_paths_and_pil(tmp_path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgb)
    np.testing.assert_array_equal(load_image(str(tmp_path / "a.png")), rgb)
    np.testing.assert_array_equal(load_image(Image.fromarray(rgb)), rgb)


def test_exif_orientation_is_respected(tmp_path, rgb: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    loaded = load_image(tmp_path / "rot.jpg")
    assert loaded.shape == (60, 40, 3)  # displayed upright: width and height swapped


def test_grayscale_palette_rgba(rgb: np.ndarray) -> None:
    gray = load_image(Image.fromarray(rgb[:, :, 0]))
    assert gray.shape == (40, 60, 3) and (gray[..., 0] == gray[..., 2]).all()
    palette = load_image(Image.fromarray(rgb).convert("P"))
    assert palette.shape == (40, 60, 3)
    rgba = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])  # fully transparent
    assert (load_image(Image.fromarray(rgba)) == 255).all()  # composited on white
    assert (load_image(rgba) == 255).all()


def test_arrays_and_tensors(rgb: np.ndarray) -> None:
    np.testing.assert_array_equal(load_image(rgb.astype(np.float32) / 255), rgb)
    np.testing.assert_array_equal(load_image(torch.from_numpy(rgb).permute(2, 0, 1)), rgb)
    np.testing.assert_array_equal(load_image(rgb[:, :, 0]), np.repeat(rgb[:, :, :1], 3, 2))


def test_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no such image file"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        load_image(tmp_path / "bad.jpg")
    with pytest.raises(ValueError, match="0..1"):
        load_image(np.full((4, 4, 3), 2.0))
    with pytest.raises(ValueError, match="uint8"):
        load_image(np.zeros((4, 4, 3), np.int32))
    with pytest.raises(TypeError, match="expected a path"):
        load_image(42)


def test_read_label_keeps_indices(tmp_path) -> None:
    labels = np.array([[0, 1, 255], [20, 3, 0]], np.uint8)
    image = Image.fromarray(labels, mode="P")
    image.putpalette([0] * 768)
    image.save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_label(tmp_path / "l.png"), labels)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="class indices"):
        read_label(tmp_path / "rgb.png")
