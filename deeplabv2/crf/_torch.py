"""Native PyTorch mean-field inference, following densecrf's ``DenseCRF::inference``."""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import torch
from torch import Tensor

from .lattice import PermutohedralLattice
from .params import CRFParams

__all__ = ["bilateral_features", "mean_field", "mean_field_batch", "position_features"]


def position_features(batch: int, height: int, width: int, std: float, device) -> Tensor:
    """``(B, H*W, 2) float32`` features ``(x / std, y / std)`` in row-major pixel order."""
    s = torch.tensor(std, dtype=torch.float32, device=device)
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=device),
        torch.arange(width, dtype=torch.float32, device=device),
        indexing="ij",
    )
    xy = torch.stack((x / s, y / s), dim=-1).reshape(1, height * width, 2)
    return xy.expand(batch, -1, -1).contiguous()


def bilateral_features(image: Tensor, xy_std: float, rgb_std: float) -> Tensor:
    """``(B, 3, H, W) uint8`` RGB -> ``(B, H*W, 5) float32`` ``(x, y, r, g, b) / std``."""
    b, _, h, w = image.shape
    xy = position_features(b, h, w, xy_std, image.device)
    s = torch.tensor(rgb_std, dtype=torch.float32, device=image.device)
    rgb = image.to(torch.float32).permute(0, 2, 3, 1).reshape(b, h * w, 3) / s
    return torch.cat((xy, rgb), dim=-1)


def unary_from_probs(probs: Tensor) -> Tensor:
    """``-log(clip(p, 1e-5, 1))`` exactly as pydensecrf's ``unary_from_softmax``."""
    return -torch.log(probs.clamp(1e-5, 1.0))


def mean_field(
    image: Tensor,
    probs: Tensor,
    params: CRFParams,
    weights: Optional[Tensor] = None,
    compatibility: Optional[Tensor] = None,
) -> Tensor:
    """Mean-field inference for a batch: all images at once on a GPU, one by one on the CPU.

    On the CPU one image's working set (lattices and marginals) stays in cache, which makes
    batches several times slower per image than a loop (benchmarks/crf.py); see
    :func:`mean_field_batch` for the arguments.
    """
    if probs.device.type == "cpu" and probs.shape[0] > 1:
        return torch.cat(
            [
                mean_field_batch(image[i : i + 1], probs[i : i + 1], params, weights, compatibility)
                for i in range(len(probs))
            ]
        )
    return mean_field_batch(image, probs, params, weights, compatibility)


def mean_field_batch(
    image: Tensor,
    probs: Tensor,
    params: CRFParams,
    weights: Optional[Tensor] = None,
    compatibility: Optional[Tensor] = None,
) -> Tensor:
    """Mean-field inference for a batch of equal-size images, all at once.

    Args:
        image: ``(B, 3, H, W) uint8`` RGB images.
        probs: ``(B, C, H, W) float32`` class probabilities on the same device.
        params: kernel weights, standard deviations, the number of iterations and the
            compatibility matrix (None: Potts).
        weights: optional ``(2,)`` tensor ``(pos_w, bi_w)`` used instead of the parameters'
            weights, e.g. to learn them (both kernels then run, whatever their weight).
        compatibility: optional ``(C, C)`` tensor used instead of ``params.compatibility``
            (densecrf's convention, symmetrised; Potts is ``-I``), e.g. to learn it.

    Returns:
        ``(B, C, H, W) float32`` marginals after ``params.iterations`` updates (all kernels
        applied to the same ``Q``, no damping), differentiable with respect to ``probs``,
        ``weights`` and ``compatibility``.
    """
    b, c, h, w = probs.shape
    if compatibility is None and params.compatibility is not None:
        compatibility = torch.tensor(params.compatibility, dtype=torch.float32, device=probs.device)
    if compatibility is not None:
        if compatibility.shape != (c, c):
            raise ValueError(f"a {tuple(compatibility.shape)} compatibility matrix for {c} classes")
        compatibility = 0.5 * (compatibility + compatibility.T)
    # (lattice, weight, shared): a float weight is folded into the lattice, a tensor one
    # multiplies; the smoothness kernel depends on the image size only, so one lattice serves
    # the whole batch (shared: it filters the images' values side by side)
    learned = weights is not None
    kernels = []
    pos_w, bi_w = (weights[0], weights[1]) if learned else (params.pos_w, params.bi_w)
    if learned or params.pos_w != 0:
        folded = 1.0 if learned else params.pos_w
        lattice = _smoothness_lattice(h, w, params.pos_xy_std, folded, probs.device)
        kernels.append((lattice, pos_w if learned else None, True))
    if learned or params.bi_w != 0:
        feats = bilateral_features(image, params.bi_xy_std, params.bi_rgb_std)
        lattice = PermutohedralLattice(feats)
        kernels.append((lattice.symmetric_normalized(1.0), bi_w, False) if learned else
                       (lattice.symmetric_normalized(bi_w), None, False))  # fmt: skip

    unary = unary_from_probs(probs).permute(0, 2, 3, 1).reshape(b, h * w, c)
    q = torch.softmax(-unary, dim=-1)
    for _ in range(params.iterations):
        message = None
        for kernel, weight, shared in kernels:
            filtered = _side_by_side(kernel, q) if shared else kernel.filter(q)
            if weight is not None:
                filtered = weight * filtered
            message = filtered if message is None else message + filtered
        if message is None:
            energy = -unary
        elif compatibility is None:  # Potts: M = -I
            energy = message - unary
        else:
            energy = -unary - message @ compatibility.T
        q = torch.softmax(energy, dim=-1)
    return q.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()


@lru_cache(maxsize=4)
def _smoothness_lattice(
    height: int, width: int, std: float, weight: float, device: torch.device
) -> PermutohedralLattice:
    """The normalised smoothness kernel of one image size. It depends on nothing else, so the
    last few are kept: building one took 4-7 ms on an H200, several mean-field iterations of a
    single image (benchmarks/crf_phases.py)."""
    feats = position_features(1, height, width, std, device)
    return PermutohedralLattice(feats).symmetric_normalized(weight)


def _side_by_side(lattice: PermutohedralLattice, q: Tensor) -> Tensor:
    """Filter ``(B, N, C) float32`` values with a one-image lattice: the images' values side by
    side as ``(1, N, B*C)``, which is the same as filtering each image on its own."""
    b, n, c = q.shape
    wide = q.transpose(0, 1).reshape(1, n, b * c)
    return lattice.filter(wide).reshape(n, b, c).transpose(0, 1)
