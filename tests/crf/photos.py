"""Real photographs (scikit-image) and coarse probabilities for the CRF parity tests."""

from __future__ import annotations

import numpy as np
import torch
from skimage import data as skdata

from deeplabv2.crf.synthetic import coarse_probs

PHOTOS = {
    "coffee-500x375": lambda: skdata.coffee()[:375, :500],
    "chelsea-451x300": lambda: skdata.chelsea(),  # non-square, odd width
    # 257 * 193 pixels is not a multiple of 4 and the image has black areas: this exercises
    # the reference's zero-feature padding points (see deeplabv2.crf.lattice)
    "astronaut-257x193": lambda: skdata.astronaut()[100:293, 50:307],
    "rocket-257x193": lambda: skdata.rocket()[150:343, 200:457],
}


def photo(name: str) -> np.ndarray:
    return np.ascontiguousarray(PHOTOS[name]())


def four_photos() -> tuple[torch.Tensor, torch.Tensor]:
    """Four different 257x193 photographs and 21-class probabilities: ``(4, 3, H, W) uint8`` and
    ``(4, 21, H, W) float32``."""
    images = [np.ascontiguousarray(photo(name)[:193, :257]) for name in sorted(PHOTOS)]
    probs = np.stack([coarse_probs(im, 21, seed=i) for i, im in enumerate(images)])
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), torch.from_numpy(probs)


#: crops of different sizes, none a multiple of 4 pixels, and a one-row edge case
RAGGED_CROPS = (
    ("coffee-500x375", slice(10, 51), slice(20, 83)),  # 41 x 63
    ("chelsea-451x300", slice(100, 167), slice(150, 199)),  # 67 x 49
    ("astronaut-257x193", slice(0, 1), slice(0, 7)),  # 1 x 7
    ("rocket-257x193", slice(60, 113), slice(30, 101)),  # 53 x 71
)


def ragged_photos(classes: int = 5) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Photographs of different sizes, ``(H_i, W_i, 3) uint8``, and coarse ``(C, H_i, W_i)
    float32`` probabilities."""
    images = [np.ascontiguousarray(photo(name)[rows, cols]) for name, rows, cols in RAGGED_CROPS]
    return images, [coarse_probs(im, classes, seed=i) for i, im in enumerate(images)]


def as_torch(images: list[np.ndarray], probs: list[np.ndarray]) -> tuple[list, list]:
    """The same as lists of ``(3, H, W) uint8`` and ``(C, H, W) float32`` tensors."""
    return [torch.from_numpy(im).permute(2, 0, 1) for im in images], [
        torch.from_numpy(p) for p in probs
    ]
