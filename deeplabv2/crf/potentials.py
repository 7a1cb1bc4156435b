"""The CRF's potentials as every backend builds them: the unary, the kernels' features and the
label compatibility.

Each backend imports these rather than writing its own, so that all of them compute the same
mean field from the same numbers (``tests/crf/test_parity.py`` holds them to pydensecrf).
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from .params import CRFParams

__all__ = [
    "PROB_FLOOR",
    "bilateral_features",
    "check_compatibility",
    "compatibility_matrix",
    "position_features",
    "unary_from_probs",
    "unary_from_probs_numpy",
]

#: probabilities are clipped to ``[PROB_FLOOR, 1]`` before the log (pydensecrf's
#: ``unary_from_softmax``), which bounds the unary by ``-log(1e-5) = 11.5``
PROB_FLOOR = 1e-5


def position_features(
    batch: int, height: int, width: int, std: float, device: Union[str, torch.device]
) -> Tensor:
    """The smoothness kernel's features: ``(B, H*W, 2) float32`` ``(x / std, y / std)`` in
    row-major pixel order, on ``device``."""
    s = torch.tensor(std, dtype=torch.float32, device=device)
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=device),
        torch.arange(width, dtype=torch.float32, device=device),
        indexing="ij",
    )
    xy = torch.stack((x / s, y / s), dim=-1).reshape(1, height * width, 2)
    return xy.expand(batch, -1, -1).contiguous()


def bilateral_features(image: Tensor, xy_std: float, rgb_std: float) -> Tensor:
    """The appearance kernel's features: ``(B, 3, H, W) uint8`` RGB -> ``(B, H*W, 5) float32``
    ``(x / xy_std, y / xy_std, r / rgb_std, g / rgb_std, b / rgb_std)`` on the image's device."""
    b, _, h, w = image.shape
    xy = position_features(b, h, w, xy_std, image.device)
    s = torch.tensor(rgb_std, dtype=torch.float32, device=image.device)
    rgb = image.to(torch.float32).permute(0, 2, 3, 1).reshape(b, h * w, 3) / s
    return torch.cat((xy, rgb), dim=-1)


def unary_from_probs(probs: Tensor) -> Tensor:
    """``-log(clip(p, 1e-5, 1))`` as pydensecrf's ``unary_from_softmax``: ``float32`` tensor in,
    the same shape out."""
    return -torch.log(probs.clamp(PROB_FLOOR, 1.0))


def unary_from_probs_numpy(probs: np.ndarray) -> np.ndarray:
    """:func:`unary_from_probs` with numpy's ``log``, exactly pydensecrf's ``unary_from_softmax``:
    ``float32`` array in, the same shape out. numpy's and torch's ``log`` round differently in
    the last bit for some inputs, so the reference backend keeps numpy's."""
    return -np.log(np.clip(probs, PROB_FLOOR, 1.0)).astype(np.float32)


def check_compatibility(shape: tuple[int, ...], classes: int) -> None:
    """ValueError unless a compatibility matrix of this shape fits ``classes`` (``C x C``)."""
    if tuple(shape) != (classes, classes):
        raise ValueError(f"a {tuple(shape)} compatibility matrix for {classes} classes")


def compatibility_matrix(params: CRFParams, classes: int) -> Optional[np.ndarray]:
    """``params.compatibility`` as a ``(C, C) float32`` array (symmetrised, as :class:`CRFParams`
    stores it), or None for Potts; ValueError if it is not ``C x C``."""
    if params.compatibility is None:
        return None
    matrix = np.asarray(params.compatibility, dtype=np.float32)
    check_compatibility(matrix.shape, classes)
    return matrix
