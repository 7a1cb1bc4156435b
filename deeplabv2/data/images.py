"""Reading images of any common kind into ``(H, W, 3) uint8`` RGB arrays."""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageInput", "load_image", "read_label"]

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]


def _from_pil(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)  # respect the camera's orientation tag
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # composite transparent pixels onto white rather than exposing undefined colours
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def load_image(image: ImageInput) -> np.ndarray:
    """Any supported image -> ``(H, W, 3) uint8`` RGB numpy array.

    Accepts a file path (any format Pillow reads; EXIF orientation applied), a PIL image of any
    mode (grayscale, palette, RGBA composited on white...), a numpy ``(H, W)`` grayscale or
    ``(H, W, 3|4)`` RGB(A) array (uint8 0..255 or float 0..1), or a torch ``(3, H, W)`` tensor
    (uint8 0..255 or float 0..1).

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: an unreadable file, or an array of the wrong shape, dtype or range.
    """
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such image file: {path}")
        try:
            with Image.open(path) as opened:
                opened.load()
                return _from_pil(opened)
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise ValueError(f"cannot read image {path}: {error}") from error
    if isinstance(image, Image.Image):
        return _from_pil(image)
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(
                f"torch images must be (3, H, W) or (1, H, W), got {tuple(image.shape)}"
            )
        image = image.detach().cpu().permute(1, 2, 0).numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(
            "expected a path, a PIL image, a numpy (H, W[, 3]) array or a torch (3, H, W) tensor,"
            f" got {type(image).__name__}"
        )
    return _from_array(image)


def _from_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"numpy images must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.dtype == np.uint8:
        rgb = array
    elif np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1 or np.isnan(array).any()):
            raise ValueError("floating-point images must be in 0..1 (pass 0..255 images as uint8)")
        rgb = np.round(array * 255).astype(np.uint8)
    else:
        raise ValueError(f"images must be uint8 (0..255) or floating (0..1), got {array.dtype}")
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    elif rgb.shape[2] == 4:
        alpha = rgb[:, :, 3:4].astype(np.float32) / 255
        rgb = np.round(rgb[:, :, :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(rgb)


def read_label(path: Union[str, os.PathLike]) -> np.ndarray:
    """A label PNG (palette or grayscale indices, 255 = ignore) -> ``(H, W) int64``."""
    with Image.open(path) as label:
        if label.mode not in ("P", "L", "I", "I;16"):
            raise ValueError(
                f"{os.fspath(path)}: label images must hold class indices (palette or "
                f"grayscale PNG), got mode {label.mode}"
            )
        return np.asarray(label, dtype=np.int64).copy()
