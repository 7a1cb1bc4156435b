"""The ``torch`` CRF backend: mean-field inference on the native permutohedral lattice, following
densecrf's ``DenseCRF::inference``; any device, batched (images of one size, or of different
sizes with :func:`mean_field_ragged`), differentiable.

(This module is ``deeplabv2.crf.backends.torch``; ``import torch`` inside the package is the
absolute import of PyTorch.)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Optional, Union

import torch
from torch import Tensor

from ..lattice import PermutohedralLattice
from ..params import CRFParams
from ..potentials import (
    bilateral_features,
    check_compatibility,
    compatibility_matrix,
    position_features,
    unary_from_probs,
)
from .builtin import TORCH as BACKEND  # its record (registered by backends/)

__all__ = [
    "BACKEND",
    "mean_field",
    "mean_field_batch",
    "mean_field_ragged",
    "side_by_side",
    "smoothness_lattice",
]

#: (lattice, weight, shared): a float weight is folded into the lattice, a tensor one multiplies
#: its output; a shared lattice filters the images' values side by side (:func:`side_by_side`)
Kernel = tuple[PermutohedralLattice, Optional[Tensor], bool]


def mean_field(
    image: Tensor,
    probs: Tensor,
    params: CRFParams,
    weights: Optional[Tensor] = None,
    compatibility: Optional[Tensor] = None,
    *,
    batched: Optional[bool] = None,
) -> Tensor:
    """Mean-field inference for a batch of equal-size images.

    Args:
        image: ``(B, 3, H, W) uint8`` RGB images.
        probs: ``(B, C, H, W) float32`` class probabilities on the same device.
        params: kernel weights, standard deviations, the number of iterations and the
            compatibility matrix (None: Potts).
        weights: optional ``(2,)`` tensor ``(pos_w, bi_w)`` used instead of the parameters'
            weights, e.g. to learn them (both kernels then run, whatever their weight).
        compatibility: optional ``(C, C)`` tensor used instead of ``params.compatibility``
            (densecrf's convention, symmetrised; Potts is ``-I``), e.g. to learn it.
        batched: all images at once (True) or one by one (False); None: all at once on a GPU,
            one by one on the CPU, where one image's working set (lattices and marginals) stays
            in cache, which makes batches several times slower per image than a loop
            (benchmarks/crf.py).

    Returns:
        ``(B, C, H, W) float32`` marginals after ``params.iterations`` updates (all kernels
        applied to the same ``Q``, no damping), differentiable with respect to ``probs``,
        ``weights`` and ``compatibility``.
    """
    if batched is None:
        batched = probs.device.type != "cpu"
    if not batched and probs.shape[0] > 1:
        return torch.cat(
            [
                mean_field(image[i : i + 1], probs[i : i + 1], params, weights, compatibility)
                for i in range(len(probs))
            ]
        )
    b, c, h, w = probs.shape
    if compatibility is None:
        matrix = compatibility_matrix(params, c)
        compatibility = None if matrix is None else torch.from_numpy(matrix).to(probs.device)
    if compatibility is not None:
        check_compatibility(tuple(compatibility.shape), c)
        compatibility = 0.5 * (compatibility + compatibility.T)
    kernels = _kernels(image, params, weights, probs.device)
    unary = unary_from_probs(probs).permute(0, 2, 3, 1).reshape(b, h * w, c)
    q = _iterate(unary, kernels, compatibility, params.iterations)
    return q.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()


def mean_field_ragged(
    images: Sequence[Tensor], probs: Sequence[Tensor], params: CRFParams
) -> list[Tensor]:
    """Mean-field inference for images of different sizes at once: each kernel is one
    :class:`PermutohedralLattice` over the points of all the images (which share no vertex) and
    is applied once per iteration. Learned ``weights``/``compatibility`` tensors are not taken
    here (use :func:`mean_field` image by image); ``params.compatibility`` is.

    Args:
        images: ``(3, H_i, W_i) uint8`` RGB images.
        probs: ``(C, H_i, W_i) float32`` class probabilities, the same ``C``, on the device of
            the images.
        params: the CRF parameters.

    Returns:
        ``(C, H_i, W_i) float32`` marginals, equal to :func:`mean_field`'s of each image alone
        to float32 rounding; differentiable with respect to ``probs``.
    """
    if not probs:
        return []
    c, device = probs[0].shape[0], probs[0].device
    shapes = tuple((p.shape[1], p.shape[2]) for p in probs)
    sizes = [h * w for h, w in shapes]
    matrix = compatibility_matrix(params, c)
    compatibility = None if matrix is None else torch.from_numpy(matrix).to(device)
    kernels: list[Kernel] = []
    if params.pos_w != 0:
        kernels.append(
            (smoothness_lattice(shapes, params.pos_xy_std, params.pos_w, device), None, False)
        )
    if params.bi_w != 0:
        feats = [
            bilateral_features(im[None], params.bi_xy_std, params.bi_rgb_std)[0] for im in images
        ]
        lattice = PermutohedralLattice(torch.cat(feats), sizes)
        kernels.append((lattice.symmetric_normalized(params.bi_w), None, False))
    unary = torch.cat([unary_from_probs(p).reshape(c, -1).T for p in probs])  # (P, C)
    q = _iterate(unary, kernels, compatibility, params.iterations)
    return [part.T.reshape(c, h, w) for part, (h, w) in zip(q.split(sizes), shapes)]


def _iterate(
    unary: Tensor, kernels: list[Kernel], compatibility: Optional[Tensor], iterations: int
) -> Tensor:
    """``iterations`` parallel mean-field updates from ``softmax(-unary)``: the unary ``(..., P,
    C) float32`` (one row per point) -> the marginals, the same shape; ``compatibility`` is the
    symmetrised ``(C, C)`` matrix, None for Potts."""
    q = torch.softmax(-unary, dim=-1)
    for _ in range(iterations):
        message = None
        for kernel, weight, shared in kernels:
            filtered = side_by_side(kernel, q) if shared else kernel.filter(q)
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
    return q


def mean_field_batch(*args: Any, **kwargs: Any) -> Tensor:
    """:func:`mean_field` with ``batched=True``: all the images at once, on every device (the
    same arguments)."""
    return mean_field(*args, batched=True, **kwargs)


def _kernels(
    image: Tensor, params: CRFParams, weights: Optional[Tensor], device: torch.device
) -> list[Kernel]:
    """The normalised kernels of a batch of ``(B, 3, H, W) uint8`` images: smoothness (on
    ``device``), then appearance; a kernel of weight 0 is left out unless the ``(2,)``
    ``weights`` are learned. The smoothness kernel depends on the image size only, so one
    lattice serves the batch."""
    _, _, h, w = image.shape
    learned = weights is not None
    kernels: list[Kernel] = []
    if learned or params.pos_w != 0:
        folded = 1.0 if learned else params.pos_w
        lattice = smoothness_lattice(((h, w),), params.pos_xy_std, folded, device)
        kernels.append((lattice, weights[0] if weights is not None else None, True))
    if learned or params.bi_w != 0:
        feats = bilateral_features(image, params.bi_xy_std, params.bi_rgb_std)
        lattice = PermutohedralLattice(feats)
        if weights is not None:
            kernels.append((lattice.symmetric_normalized(1.0), weights[1], False))
        else:
            kernels.append((lattice.symmetric_normalized(params.bi_w), None, False))
    return kernels


@lru_cache(maxsize=4)
def smoothness_lattice(
    shapes: tuple[tuple[int, int], ...],
    std: float,
    weight: float,
    device: Union[str, torch.device],
) -> PermutohedralLattice:
    """The normalised smoothness kernel of images of these ``(H, W)`` sizes (``H*W`` points
    each, image after image). It depends on nothing else, so the last few are kept: building
    one for one image took 4-7 ms on an H200, several mean-field iterations of a single image
    (benchmarks/crf_phases.py)."""
    feats = torch.cat([position_features(1, h, w, std, device)[0] for h, w in shapes])
    sizes = [h * w for h, w in shapes]
    return PermutohedralLattice(feats, sizes).symmetric_normalized(weight)


def side_by_side(lattice: PermutohedralLattice, q: Tensor) -> Tensor:
    """Filter ``(B, N, C) float32`` values with a one-image lattice: the images' values side by
    side as ``(N, B*C)``, which is the same as filtering each image on its own."""
    b, n, c = q.shape
    wide = q.transpose(0, 1).reshape(n, b * c)
    return lattice.filter(wide).reshape(n, b, c).transpose(0, 1)
