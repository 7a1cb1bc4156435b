"""Realistic stand-in class probabilities for exercising the CRF without a trained network.

Used by the tests, ``benchmarks/crf.py`` and ``examples/crf_demo.py``: like a DeepLab output, the
probabilities are computed at output stride 8 and bilinearly upsampled, so they are blocky and
blurred at object edges -- exactly what the CRF is there to fix.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["coarse_probs"]


def coarse_probs(
    image: np.ndarray,
    num_classes: int = 21,
    *,
    stride: int = 8,
    temperature: float = 30.0,
    noise: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Colour-clustering class probabilities at ``1/stride`` resolution, upsampled.

    Args:
        image: ``(H, W, 3) uint8`` RGB image.
        num_classes: number of classes ``C``; each class gets a prototype colour drawn from the
            image's own pixels.
        stride: downsampling factor of the coarse prediction.
        temperature: colour distance scale of the logits (smaller = more confident).
        noise: standard deviation of Gaussian noise added to the coarse logits.
        seed: random seed for the prototypes and the noise.

    Returns:
        ``(C, H, W) float32`` probabilities summing to one over ``C``.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    gen = torch.Generator().manual_seed(seed)
    h, w, _ = image.shape
    rgb = torch.from_numpy(image).permute(2, 0, 1).to(torch.float32).unsqueeze(0)
    small_size = (max(1, (h - 1) // stride + 1), max(1, (w - 1) // stride + 1))
    small = F.adaptive_avg_pool2d(rgb, small_size)  # (1, 3, h', w')
    pixels = rgb.reshape(3, -1)
    picks = torch.randint(0, pixels.shape[1], (num_classes,), generator=gen)
    prototypes = pixels[:, picks].T  # (C, 3)
    distance = ((small[0].unsqueeze(0) - prototypes[:, :, None, None]) ** 2).sum(1).sqrt()
    logits = -distance / temperature
    logits = logits + noise * torch.randn(logits.shape, generator=gen)
    logits = F.interpolate(logits.unsqueeze(0), size=(h, w), mode="bilinear", align_corners=True)
    return torch.softmax(logits[0], dim=0).numpy()
