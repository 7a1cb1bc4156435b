"""The ``pydensecrf`` CRF backend: the reference C++ code (package ``pydensecrf2``), one image at
a time on the CPU.

(This module is ``deeplabv2.crf.backends.pydensecrf``; ``import pydensecrf`` inside the package
is the absolute import of the third-party package.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..params import CRFParams
from ..potentials import compatibility_matrix, unary_from_probs_numpy
from .builtin import PYDENSECRF as BACKEND  # its record (registered by backends/)

__all__ = ["BACKEND", "INSTALL_HINT", "infer", "mean_field", "require"]

INSTALL_HINT = (
    "the 'pydensecrf' CRF backend needs the pydensecrf2 package: "
    "pip install 'deeplabv2[crf]' (or use backend='torch')"
)


def require() -> Any:
    """The ``pydensecrf.densecrf`` module; ImportError with the install hint without it."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return dcrf


def _enum(dcrf: Any, group: str, name: str) -> Any:
    """Enum members live at module level (Cython 0.29 builds) or in a class (Cython 3 builds)."""
    if hasattr(dcrf, name):
        return getattr(dcrf, name)
    return getattr(getattr(dcrf, group), name)


def infer(image: np.ndarray, probs: np.ndarray, params: CRFParams) -> np.ndarray:
    """Mean-field inference for one image with pydensecrf.

    Args:
        image: ``(H, W, 3) uint8`` RGB image.
        probs: ``(C, H, W) float32`` class probabilities.
        params: CRF parameters.

    Returns:
        ``(C, H, W) float32`` marginals.
    """
    dcrf = require()
    diag = _enum(dcrf, "KernelType", "DIAG_KERNEL")
    symmetric = _enum(dcrf, "NormalizationType", "NORMALIZE_SYMMETRIC")
    c, h, w = probs.shape
    matrix = compatibility_matrix(params, c)
    unary = unary_from_probs_numpy(probs).reshape(c, -1)
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    if params.pos_w != 0:
        crf.addPairwiseGaussian(
            sxy=params.pos_xy_std,
            compat=params.pos_w if matrix is None else params.pos_w * matrix,
            kernel=diag,
            normalization=symmetric,
        )
    if params.bi_w != 0:
        crf.addPairwiseBilateral(
            sxy=params.bi_xy_std,
            srgb=params.bi_rgb_std,
            rgbim=np.ascontiguousarray(image),
            compat=params.bi_w if matrix is None else params.bi_w * matrix,
            kernel=diag,
            normalization=symmetric,
        )
    q = np.asarray(crf.inference(params.iterations), dtype=np.float32)
    return q.reshape(c, h, w)


def mean_field(images: Tensor, probs: Tensor, params: CRFParams) -> Tensor:
    """:func:`infer` for each image of a CPU batch: ``(B, 3, H, W) uint8`` images and
    ``(B, C, H, W) float32`` probabilities -> ``(B, C, H, W) float32`` marginals."""
    images_np = images.permute(0, 2, 3, 1).numpy()
    out = [infer(image, p, params) for image, p in zip(images_np, probs.numpy())]
    return torch.from_numpy(np.stack(out))
