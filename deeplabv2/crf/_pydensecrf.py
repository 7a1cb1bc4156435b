"""The reference backend: pydensecrf (package ``pydensecrf2``), one image at a time on the CPU."""

from __future__ import annotations

import numpy as np

from .params import CRFParams

__all__ = ["available", "infer"]

_INSTALL_HINT = (
    "the 'pydensecrf' CRF backend needs the pydensecrf2 package: "
    "pip install 'deeplabv2[crf]' (or use backend='torch')"
)


def _module():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return dcrf


def available() -> bool:
    """Whether pydensecrf can be imported."""
    try:
        _module()
    except ImportError:
        return False
    return True


def _enum(dcrf, group: str, name: str):
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
    dcrf = _module()
    diag = _enum(dcrf, "KernelType", "DIAG_KERNEL")
    symmetric = _enum(dcrf, "NormalizationType", "NORMALIZE_SYMMETRIC")
    c, h, w = probs.shape
    matrix = None
    if params.compatibility is not None:
        matrix = np.asarray(params.compatibility, dtype=np.float32)
        if matrix.shape != (c, c):
            raise ValueError(f"a {matrix.shape} compatibility matrix for {c} classes")
    # pydensecrf.utils.unary_from_softmax: -log(clip(p, 1e-5, 1)) as float32.
    unary = -np.log(np.clip(probs, 1e-5, 1.0)).reshape(c, -1).astype(np.float32)
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
