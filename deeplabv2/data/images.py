"""Reading images of any common kind into ``(H, W, 3) uint8`` RGB arrays.

Nothing is converted silently wrong: 16-bit images are scaled from 0..65535 to 0..255, 32-bit
float images must hold 0..1, and modes whose meaning cannot be known (32-bit integers outside
PNG, CIELAB) are refused with an :class:`~deeplabv2.errors.ImageError` that says how to convert
them.

One pixel grid: files are read in their stored pixel grid unless ``exif=True``. Labels, CAMs and
score files are made on that grid (PIL's ``Image.open(...).convert("RGB")`` never applies the
EXIF orientation tag, nor do the weakly supervised methods' readers), so every dataset, ``crf``,
``score``, ``eval`` and training read it; only segmenting a person's own photos
(:class:`~deeplabv2.Segmenter`, ``deeplabv2 predict``) turns them as a viewer shows them by
default. :func:`orientation_hint` explains a size mismatch that the tag causes.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import BinaryIO, Optional, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError, ImageSizeError
from .constants import DEFAULT_MAX_PIXELS

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageInput",
    "check_pixels",
    "load_image",
    "orientation_hint",
    "read_label",
    "read_png16_channel",
]

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")

#: The EXIF tag of the orientation, and its values that turn the image by 90 degrees (a viewer
#: swaps its width and height): 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 270.
_ORIENTATION = 0x0112
_TURNED = (5, 6, 7, 8)


def check_pixels(height: int, width: int, max_pixels: Optional[int], what: str = "image") -> None:
    """Raise :class:`ImageSizeError` if ``height * width`` exceeds ``max_pixels`` (None: none)."""
    if max_pixels is not None and height * width > max_pixels:
        raise ImageSizeError(
            f"{what} of {width}x{height} pixels ({height * width / 1e6:.1f} megapixels) is over "
            f"the limit of {max_pixels / 1e6:.1f} megapixels; raise it with --max-pixels "
            "(max_pixels=) if you mean it (tiled inference of large images is slow on a CPU)"
        )


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _from_pil(image: Image.Image, exif: bool) -> np.ndarray:
    fmt = image.format
    if exif:  # turn it as the camera's orientation tag says (as a viewer shows it)
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    # Pillow opens 16-bit grayscale PNGs as I;16 (some versions: I): scale 0..65535 to 0..255
    if mode.startswith("I;16") or (mode == "I" and fmt == "PNG"):
        samples = np.asarray(image).astype(np.float64)
        return _gray_to_rgb(np.round(samples / 257.0).clip(0, 255).astype(np.uint8))
    if mode == "I":
        raise ImageError(
            "32-bit integer images (mode I) have no known bit depth; convert it to 8-bit RGB "
            "(or 16-bit PNG) first"
        )
    if mode == "F":
        samples = np.asarray(image, dtype=np.float32)
        if not np.isfinite(samples).all() or samples.min() < 0 or samples.max() > 1:
            low, high = np.nanmin(samples), np.nanmax(samples)
            raise ImageError(
                f"32-bit float images must hold values in 0..1, this one holds {low:.4g}.."
                f"{high:.4g}; convert it to 8-bit RGB first"
            )
        return _gray_to_rgb(np.round(samples * 255).astype(np.uint8))
    if mode == "LAB":
        raise ImageError(
            "CIELAB images cannot be converted to RGB without a colour profile; convert it to "
            "RGB first (e.g. with PIL.ImageCms)"
        )
    try:
        if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
            # composite transparent pixels onto white rather than exposing undefined colours
            rgba = (image.convert("LA") if mode == "La" else image).convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except ValueError as error:  # Pillow: "conversion from X to Y not supported"
        raise ImageError(f"images of mode {mode} are not supported ({error})") from None


def _identify(handle: BinaryIO, path: str) -> Image.Image:
    """``Image.open`` without Pillow's decompression-bomb check, which reads a process-wide
    setting (``Image.MAX_IMAGE_PIXELS``): the caller checks its own ``max_pixels`` instead, so
    no global is read or changed and concurrent loads with different limits cannot race.
    Tries each registered format whose ``accept`` matches the file's first bytes, as Pillow
    does."""
    prefix = handle.read(16)
    Image.init()
    for format_id in Image.ID:
        factory, accept = Image.OPEN[format_id]
        if accept is not None:
            accepted = accept(prefix)
            if not accepted or isinstance(accepted, str):
                continue
        handle.seek(0)
        try:
            return factory(handle, path)
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue
    raise UnidentifiedImageError(f"cannot identify image file {path!r}")


def _load_file(path: str, max_pixels: Optional[int], exif: bool) -> np.ndarray:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such image file: {path}")
    try:
        with open(path, "rb") as handle, _identify(handle, path) as opened:
            check_pixels(opened.height, opened.width, max_pixels, f"{path}: the image")
            opened.load()
            return _from_pil(opened, exif)
    except ImageSizeError:
        raise
    except ImageError as error:
        raise type(error)(f"{path}: {error}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"cannot read image {path}: {error}") from None


def load_image(
    image: ImageInput, *, exif: bool = False, max_pixels: Optional[int] = None
) -> np.ndarray:
    """Any supported image -> ``(H, W, 3) uint8`` RGB numpy array.

    Accepts a file path (any format Pillow reads), a PIL image of any mode (grayscale, palette,
    RGBA composited on white, 16-bit scaled to 8, float 0..1...), a numpy ``(H, W)`` grayscale
    or ``(H, W, 3|4)`` RGB(A) array (uint8 0..255 or float 0..1), or a torch ``(3, H, W)``
    tensor (uint8 0..255 or float 0..1).

    Args:
        image: the image.
        exif: turn a file or PIL image as its EXIF orientation tag says (as a viewer shows a
            photo). Default False: the stored pixel grid, the one labels, CAMs and score files
            paired with the image are made on (a turned image would not match them: 90 degrees
            swaps the sides, 180 degrees silently misplaces every label).
        max_pixels: refuse larger images (files are refused before they are decoded); None
            for no limit.

    Raises:
        FileNotFoundError: a path that does not exist.
        ImageSizeError: more than ``max_pixels`` pixels.
        ImageError: an unreadable file, an unsupported mode, or an array of the wrong shape,
            dtype or range.
    """
    if isinstance(image, (str, os.PathLike)):
        return _load_file(os.fspath(image), max_pixels, exif)
    if isinstance(image, Image.Image):
        check_pixels(image.height, image.width, max_pixels)
        return _from_pil(image, exif)
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ImageError(
                f"torch images must be (3, H, W) or (1, H, W), got {tuple(image.shape)}"
            )
        image = image.detach().cpu().permute(1, 2, 0).numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(
            "expected a path, a PIL image, a numpy (H, W[, 3]) array or a torch (3, H, W) tensor,"
            f" got {type(image).__name__}"
        )
    rgb = _from_array(image)
    check_pixels(rgb.shape[0], rgb.shape[1], max_pixels)
    return rgb


def orientation_hint(path: Union[str, os.PathLike], size: tuple[int, int], what: str) -> str:
    """A sentence for an error about ``what`` (e.g. ``"the label"``) of size ``size`` ``(H, W)``
    that does not fit the image file ``path``, when the image's EXIF orientation explains it:
    the tag turns the image by 90 degrees (orientations 5 to 8) and ``size`` is the turned
    image's. Else (or an unreadable file, or a ``path`` that is no file) ``""``."""
    try:
        with open(path, "rb") as handle, _identify(handle, os.fspath(path)) as opened:
            orientation = opened.getexif().get(_ORIENTATION)
            width, height = opened.size
    except Exception:  # noqa: BLE001 - only a hint: it never hides the error it is added to
        return ""
    if orientation not in _TURNED or tuple(size) != (width, height) or width == height:
        return ""
    return (
        f" The image {os.fspath(path)} carries EXIF orientation {orientation}: its stored pixel "
        f"grid, which deeplabv2 reads (as labels and CAMs are made), is {width}x{height} (WxH), "
        f"but viewers show it turned by 90 degrees ({height}x{width}); {what} was likely made "
        "on the turned image (by a reader that applies the tag, e.g. "
        "PIL.ImageOps.exif_transpose). Make it from the stored grid "
        "(Image.open(path).convert('RGB')), or save the image turned "
        "(ImageOps.exif_transpose(Image.open(path)).save(...)) so that its stored grid is the "
        "one it was made on."
    )


def _from_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"numpy images must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.dtype == np.uint8:
        rgb = array
    elif np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1 or np.isnan(array).any()):
            raise ImageError("floating-point images must be in 0..1 (pass 0..255 images as uint8)")
        rgb = np.round(array * 255).astype(np.uint8)
    else:
        raise ImageError(
            f"images must be uint8 (0..255) or floating (0..1), got {array.dtype}; scale other "
            "integer images to uint8 first (e.g. 16-bit: (a / 257).round().astype(np.uint8))"
        )
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    elif rgb.shape[2] == 4:
        alpha = rgb[:, :, 3:4].astype(np.float32) / 255
        rgb = np.round(rgb[:, :, :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(rgb)


def read_label(path: Union[str, os.PathLike]) -> np.ndarray:
    """A label PNG (palette or grayscale indices, 255 = ignore) -> ``(H, W) int64``."""
    try:
        with Image.open(path) as label:
            if label.mode not in ("P", "L", "I", "I;16"):
                raise ImageError(
                    f"{os.fspath(path)}: label images must hold class indices (palette or "
                    f"grayscale PNG), got mode {label.mode}"
                )
            return np.asarray(label, dtype=np.int64).copy()
    except (UnidentifiedImageError, SyntaxError) as error:
        raise ImageError(f"cannot read label image {os.fspath(path)}: {error}") from None
    except Image.DecompressionBombError as error:  # Pillow's text names no file
        raise ImageError(f"cannot read label image {os.fspath(path)}: {error}") from None
    except OSError as error:  # a truncated or corrupt file (a missing one says so itself)
        if isinstance(error, FileNotFoundError):
            raise
        raise ImageError(f"cannot read label image {os.fspath(path)}: {error}") from None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type -> Pillow's mode and its 16-bit rawmodes (big-endian, little-endian)
_PNG16_MODES = {2: ("RGB", "RGB;16B", "RGB;16L"), 6: ("RGBA", "RGBA;16B", "RGBA;16L")}


def _png_header_and_data(path: str) -> tuple[tuple[int, ...], bytes]:
    """``(width, height, bit depth, colour type, interlace)`` of a PNG file and its
    concatenated (compressed, filtered) ``IDAT`` data; chunks with a bad CRC are refused."""
    with open(path, "rb") as handle:
        data = handle.read()
    if not data.startswith(_PNG_SIGNATURE):
        raise ImageError(f"{path}: not a PNG file")
    header: Optional[tuple[int, ...]] = None
    idat = []
    position = len(_PNG_SIGNATURE)
    while position + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 12 + length
        body = data[position + 8 : end - 4]
        if end > len(data) or zlib.crc32(kind + body) != int.from_bytes(data[end - 4 : end], "big"):
            chunk = kind.decode("latin-1")
            raise ImageError(f"{path}: the PNG chunk {chunk!r} is truncated or corrupt (CRC)")
        if kind == b"IHDR" and length == 13:
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        position = end
    if header is None or not idat:
        raise ImageError(f"{path}: a PNG file without a header or image data (truncated?)")
    width, height, depth, colour, _, _, interlace = header
    return (width, height, depth, colour, interlace), b"".join(idat)


def read_png16_channel(path: Union[str, os.PathLike], channel: int = 0) -> np.ndarray:
    """One channel of a 16-bit RGB or RGBA PNG with all its 16 bits: ``(H, W) int64``.

    Pillow opens these files as 8-bit RGB, keeping the high byte of each sample (a class id
    below 256 reads as 0), and imageio needs the FreeImage library for them. So the chunks are
    read here and the image data decoded by Pillow's PNG decoder (``zip``, which undoes the
    row filters) twice: rawmode ``RGB;16B`` keeps each sample's high byte (PNG stores samples
    big-endian), ``RGB;16L`` reads the same bytes as little-endian and so keeps the low byte.
    SYNTHIA's ``GT/LABELS`` are such files (the class id in the first channel).

    Raises:
        FileNotFoundError: no file at ``path``.
        ImageError: not a PNG, another bit depth or colour type, an interlaced or corrupt file.
    """
    name = os.fspath(path)
    (width, height, depth, colour, interlace), idat = _png_header_and_data(name)
    if depth != 16 or colour not in _PNG16_MODES:
        raise ImageError(
            f"{name}: expected a 16-bit RGB or RGBA PNG, got bit depth {depth}, PNG colour type "
            f"{colour} (2: RGB, 6: RGBA)"
        )
    if interlace:
        raise ImageError(f"{name}: interlaced (Adam7) 16-bit PNGs are not supported; save it "
                         "without interlacing")  # fmt: skip
    mode, high, low = _PNG16_MODES[colour]
    if not 0 <= channel < len(mode):
        raise ValueError(f"channel must be in 0..{len(mode) - 1} for {mode}, got {channel}")
    try:
        planes = [
            np.asarray(Image.frombytes(mode, (width, height), idat, "zip", rawmode))[..., channel]
            for rawmode in (high, low)
        ]
    except (ValueError, OSError) as error:  # Pillow: "not enough image data", zlib errors
        raise ImageError(f"cannot decode the PNG {name}: {error}") from None
    return planes[0].astype(np.int64) * 256 + planes[1]
