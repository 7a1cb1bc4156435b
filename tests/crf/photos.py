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
