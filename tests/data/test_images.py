"""load_image: every supported kind of input becomes (H, W, 3) uint8 RGB."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from deeplabv2.data.images import load_image, orientation_hint, read_label
from deeplabv2.errors import ImageError


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut()[:40, :60])


def test_paths_and_pil(tmp_path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgb)
    np.testing.assert_array_equal(load_image(str(tmp_path / "a.png")), rgb)
    np.testing.assert_array_equal(load_image(Image.fromarray(rgb)), rgb)


def test_exif_orientation_only_when_asked(tmp_path, rgb: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(rgb).save(tmp_path / "rot.png", exif=exif)
    loaded = load_image(tmp_path / "rot.png", exif=True)
    np.testing.assert_array_equal(loaded, np.rot90(rgb, k=-1))  # as displayed: turned clockwise
    np.testing.assert_array_equal(load_image(tmp_path / "rot.png"), rgb)  # the stored grid
    with Image.open(tmp_path / "rot.png") as opened:  # PIL images: the same choice
        np.testing.assert_array_equal(load_image(opened), rgb)
        np.testing.assert_array_equal(load_image(opened, exif=True), np.rot90(rgb, k=-1))
    exif[0x0112] = 3  # "rotate 180"
    Image.fromarray(rgb).save(tmp_path / "flip.jpg", exif=exif, quality=100)
    upside = load_image(tmp_path / "flip.jpg", exif=True).astype(int)
    assert np.abs(upside - rgb[::-1, ::-1]).mean() < 2  # JPEG: equal up to compression
    assert np.abs(load_image(tmp_path / "flip.jpg").astype(int) - rgb).mean() < 2


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_orientation_hint_explains_a_turned_size(tmp_path, rgb: np.ndarray, orientation) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(tmp_path / "a.jpg", exif=exif)
    hint = orientation_hint(tmp_path / "a.jpg", (60, 40), "the label")  # rgb is 40x60 (H, W)
    assert f"a.jpg carries EXIF orientation {orientation}" in hint
    assert "stored pixel grid" in hint and "is 60x40 (WxH)" in hint and "(40x60)" in hint
    assert "the label was likely made on the turned image" in hint
    assert orientation_hint(tmp_path / "a.jpg", (40, 60), "the label") == ""  # not turned
    assert orientation_hint(tmp_path / "a.jpg", (59, 40), "the label") == ""  # another size


def test_orientation_hint_is_empty_when_no_orientation_explains(tmp_path, rgb) -> None:
    exif = Image.Exif()
    exif[0x0112] = 3  # 180 degrees: the same size
    Image.fromarray(rgb).save(tmp_path / "up.jpg", exif=exif)
    Image.fromarray(rgb).save(tmp_path / "plain.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    for name in ("up.jpg", "plain.jpg", "bad.jpg", "missing.jpg"):
        assert orientation_hint(tmp_path / name, (60, 40), "the scores") == ""
    assert orientation_hint("image 0", (60, 40), "the scores") == ""  # a name, not a file


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


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path) -> None:
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as opened:
        assert opened.mode.startswith("I")  # Pillow reads it as 16-bit
    loaded = load_image(tmp_path / "deep.png")
    expected = np.round(ramp / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(loaded, np.repeat(expected[:, :, None], 3, axis=2))
    assert (loaded == 255).mean() < 0.01  # not saturated


def test_float_and_integer_tiffs(tmp_path) -> None:
    values = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    Image.fromarray(values).save(tmp_path / "unit.tif")
    np.testing.assert_array_equal(
        load_image(tmp_path / "unit.tif")[:, :, 1], np.round(values * 255).astype(np.uint8)
    )
    Image.fromarray(values * 1000).save(tmp_path / "hdr.tif")
    with pytest.raises(ImageError, match=r"hdr\.tif: 32-bit float images must hold values in 0..1"):
        load_image(tmp_path / "hdr.tif")
    Image.fromarray(np.arange(48, dtype=np.int32).reshape(6, 8) * 10**6).save(tmp_path / "i.tif")
    with pytest.raises(ImageError, match="32-bit integer images"):
        load_image(tmp_path / "i.tif")
    with pytest.raises(ImageError, match="CIELAB"):
        load_image(Image.new("LAB", (4, 4)))


def test_other_modes_convert_faithfully() -> None:
    red = np.array([[[255, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(load_image(Image.new("CMYK", (1, 1), (0, 255, 255, 0))), red)
    np.testing.assert_array_equal(load_image(Image.new("HSV", (1, 1), (0, 255, 255))), red)
    half = load_image(Image.new("RGBa", (1, 1), (100, 0, 0, 128)))  # premultiplied alpha
    np.testing.assert_allclose(half[0, 0], [227, 127, 127], atol=1)
    np.testing.assert_array_equal(load_image(Image.new("La", (1, 1), (0, 0))), [[[255] * 3]])
    with pytest.raises(ImageError, match="uint16"):
        load_image(np.zeros((4, 4, 3), np.uint16))


def test_the_pixel_limit_is_the_callers_not_pillows(tmp_path, monkeypatch) -> None:
    """max_pixels decides alone, without reading or changing Pillow's process-wide
    MAX_IMAGE_PIXELS (concurrent loads with different limits cannot race through it)."""
    from deeplabv2.errors import ImageSizeError

    big = tmp_path / "big.png"
    Image.new("1", (3000, 2000)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow alone would call this a bomb
    limit = r"\(6\.0 megapixels\) is over the limit.*--max-pixels"
    with pytest.raises(ImageSizeError, match=limit):
        load_image(big, max_pixels=1_000_000)
    assert load_image(big, max_pixels=25_000_000).shape == (2000, 3000, 3)
    assert load_image(big, max_pixels=None).shape == (2000, 3000, 3)  # the caller's choice
    assert Image.MAX_IMAGE_PIXELS == 1000  # never changed, not even for a moment we could see


def test_unidentifiable_files_are_image_errors(tmp_path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(ImageError, match="junk.png"):
        load_image(junk)
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    with pytest.raises(ImageError, match="cannot identify image file"):
        load_image(text)
