"""Files written by ``deeplabv2 predict``: indexed label PNGs, overlays, probabilities."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .data.classes import voc_palette

__all__ = ["IMAGE_SUFFIXES", "collect_images", "save_labels", "save_overlay", "save_probs"]

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


def atomic_write(path: Path, write: Callable[[str], None], force: bool) -> None:
    """Write through ``write(tmp_path)`` into a temporary file, then rename it to ``path``."""
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_labels(path: Path, labels: np.ndarray, force: bool) -> None:
    """``(H, W)`` labels -> indexed PNG with the VOC palette (like the dataset's own PNGs)."""
    if labels.max(initial=0) > 255:
        raise ValueError("more than 256 classes cannot be stored in an indexed PNG")
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(voc_palette().reshape(-1).tolist())
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"), force)


def save_overlay(path: Path, rgb: np.ndarray, labels: np.ndarray, force: bool) -> None:
    """The image blended half-and-half with the palette colours of its labels (JPEG)."""
    colours = voc_palette()[labels.astype(np.int64) % 256]
    blend = (rgb.astype(np.float32) * 0.5 + colours.astype(np.float32) * 0.5).round()
    image = Image.fromarray(blend.astype(np.uint8))
    atomic_write(path, lambda tmp: image.save(tmp, format="JPEG", quality=90), force)


def save_probs(path: Path, probs: np.ndarray, force: bool) -> None:
    """``(C, H, W)`` probabilities as a float16 ``.npy`` file."""
    atomic_write(path, lambda tmp: np.save(tmp, probs.astype(np.float16)), force)
