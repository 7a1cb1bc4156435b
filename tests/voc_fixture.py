"""A tiny VOC-format dataset written by the tests (real photos, random labels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from deeplabv2.data.classes import voc_palette

NAMES = ("2007_000001", "2007_000002", "2008_000003")


def write_voc(root: Path, size: tuple[int, int] = (65, 81)) -> Path:
    """VOC 2012 layout under ``root`` with a ``val`` split of three images; returns root."""
    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea()]
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    h, w = size
    for name, photo in zip(NAMES, photos):
        Image.fromarray(np.ascontiguousarray(photo[:h, :w])).save(
            root / "JPEGImages" / f"{name}.jpg", quality=95
        )
        label = rng.integers(0, 21, (h, w)).astype(np.uint8)
        label[:, :3] = 255  # ignored boundary pixels
        image = Image.fromarray(label, mode="P")
        image.putpalette(voc_palette().reshape(-1).tolist())
        image.save(root / "SegmentationClass" / f"{name}.png")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(NAMES) + "\n")
    return root
