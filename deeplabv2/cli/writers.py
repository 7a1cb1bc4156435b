"""Files written by ``deeplabv2 predict`` and ``deeplabv2 crf``: indexed label PNGs, overlays,
probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._files import atomic_write

if TYPE_CHECKING:  # numpy and PIL are imported by the writers: --help loads neither
    import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "collect_images",
    "output_paths",
    "save_labels",
    "save_overlay",
    "save_probs",
    "save_refined",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


def collect_images(inputs: list[str]) -> list[Path]:
    """Files given directly, plus the image files (by suffix) directly inside given folders."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.exists():
            paths.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {item}")
    return paths


def output_paths(out: Path, stem: str, overlay: bool, probs: bool) -> list[Path]:
    """Every file ``deeplabv2 predict`` writes for the input ``<stem>.<ext>``."""
    paths = [out / f"{stem}.png"]
    if overlay:
        paths.append(out / f"{stem}_overlay.jpg")
    if probs:
        paths.append(out / f"{stem}_probs.npy")
    return paths


def save_labels(path: Path, labels: np.ndarray, force: bool, *, palette: bool = True) -> None:
    """``(H, W)`` labels -> a PNG of class indices: with the VOC palette (like the dataset's own
    PNGs), or 8-bit grayscale with ``palette=False`` (what the WSSS papers' scripts write and
    read: imageio decodes a palette PNG as RGB colours)."""
    import numpy as np
    from PIL import Image

    from ..data.classes import voc_palette

    if labels.max(initial=0) > 255:
        raise ValueError("more than 256 classes cannot be stored in an 8-bit PNG")
    image = Image.fromarray(labels.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        image.putpalette(voc_palette().reshape(-1).tolist())
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"), force=force)


def save_overlay(path: Path, rgb: np.ndarray, labels: np.ndarray, force: bool) -> None:
    """The image blended half-and-half with the palette colours of its labels (JPEG)."""
    from PIL import Image

    from ..data.classes import overlay

    image = Image.fromarray(overlay(rgb, labels))
    atomic_write(path, lambda tmp: image.save(tmp, format="JPEG", quality=90), force=force)


def save_probs(path: Path, probs: np.ndarray, force: bool) -> None:
    """``(C, H, W)`` probabilities as a float16 ``.npy`` file."""
    import numpy as np

    half = probs.astype(np.float16)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.save would append .npy to a name
            np.save(handle, half)

    atomic_write(path, write, force=force)


def save_refined(path: Path, probs: np.ndarray, classes: np.ndarray, force: bool) -> None:
    """A pseudo-label's refined probabilities as ``.npz``: ``probs`` ``(R, C, H, W)`` float16
    (one ``(C, H, W)`` per CRF run of the recipe) and ``classes`` ``(C,)`` int64, the dataset
    class of each channel."""
    import numpy as np

    half, classes = probs.astype(np.float16), classes.astype(np.int64)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append .npz to a name
            np.savez(handle, probs=half, classes=classes)

    atomic_write(path, write, force=force)
