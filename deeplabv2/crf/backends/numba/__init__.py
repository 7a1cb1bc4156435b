"""The ``numba`` CRF backend: the native lattice compiled for the CPU (``deeplabv2[fast]``).

The same permutohedral lattice and mean field as the ``torch`` backend -- the simplices and
vertex keys are computed by compiled twins of ``PermutohedralLattice._simplices`` and
``_pack_vertices`` (the same float32 operations, the same key layout of
:mod:`deeplabv2.crf.lattice.geometry`; tested bit for bit) -- but stored as flat arrays
(:class:`.lattice.CompiledLattice`) for a few small kernels (:mod:`.kernels`) instead of sparse
matrices:

* vertices are numbered in the order the points first touch them (a hash table, as densecrf
  does) and rows of lattice values are padded to a multiple of 8 channels (aligned rows make the
  random row reads about twice as fast);
* splat adds each point's weighted values to its vertices, in point order: on one thread by
  scattering the points (sequential reads), on several by gathering each vertex's points
  through lists built on first use (the same sums in the same order, bit for bit);
* each blur pass reads ``V[v] + 0.5 (V[n1] + V[n2])`` through a neighbour table whose absent
  neighbours point at a zero row (built by sorting the keys once and sweeping them per axis);
* one fused pass per iteration slices every kernel, adds the unary and takes the softmax: each
  block of 256 points is sliced row by row, then turned class-major so that the softmax (with a
  polynomial ``exp`` that never produces slow denormal numbers) is vectorised along the points;
  the last iteration writes the class-major output directly.

Images of different sizes can share one compiled lattice per kernel (:func:`mean_field_ragged`:
each point's image is the most significant digit of its keys, so images share no vertex).

Loops over points and vertices run on ``torch.get_num_threads()`` threads. numba installs as a
binary wheel on every platform (no compiler); without it ``backend="auto"`` falls back to
pydensecrf or the ``torch`` backend, which give the same results (``tests/crf/test_numba.py``).

(This package is ``deeplabv2.crf.backends.numba``; ``import numba`` inside it is the absolute
import of numba itself.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from ...params import CRFParams
from ...potentials import (
    bilateral_features,
    compatibility_matrix,
    position_features,
    unary_from_probs,
)
from ..builtin import NUMBA as BACKEND  # its record (registered by backends/)
from .lattice import INSTALL_HINT, CompiledLattice, load_kernels, simplices

__all__ = [
    "BACKEND",
    "INSTALL_HINT",
    "CompiledLattice",
    "load_kernels",
    "mean_field",
    "mean_field_ragged",
    "simplices",
    "threads",
]

#: lattice rows are padded to a multiple of this many float32 channels (21 classes -> 24)
_LANES = 8


@contextmanager
def threads() -> Iterator[None]:
    """Run numba's parallel loops on as many threads as torch uses, and leave torch's count as
    it was (starting numba's OpenMP pool resets the OpenMP thread count that torch reads)."""
    import numba

    wanted = torch.get_num_threads()
    previous = numba.get_num_threads()  # starts numba's pool on first use
    # numba.config sets its attributes at run time, from the environment
    most = cast(Any, numba.config).NUMBA_NUM_THREADS
    numba.set_num_threads(max(1, min(wanted, most)))
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
        torch.set_num_threads(wanted)


@lru_cache(maxsize=4)
def _smoothness(shapes: tuple[tuple[int, int], ...], std: float, weight: float) -> CompiledLattice:
    """The smoothness kernel of images of these ``(H, W)`` sizes, kept for the next calls (as
    the torch backend's ``smoothness_lattice``): building it takes about 5% of a 500x375 CRF on
    one thread."""
    feats = [position_features(1, h, w, std, "cpu")[0] for h, w in shapes]
    return CompiledLattice(torch.cat(feats).numpy(), weight, [h * w for h, w in shapes])


def mean_field(image: Tensor, probs: Tensor, params: CRFParams) -> Tensor:
    """Mean-field inference with the compiled kernels, one image at a time.

    Args:
        image: ``(B, 3, H, W) uint8`` CPU RGB images.
        probs: ``(B, C, H, W) float32`` CPU class probabilities (no gradients).
        params: the CRF parameters.

    Returns:
        ``(B, C, H, W) float32`` marginals, equal to the torch backend's to float32 rounding
        (the softmax's ``exp`` is a polynomial with a relative error of about 1e-7).
    """
    b, c, h, w = probs.shape
    out = torch.empty(b, c, h, w)
    with threads():
        for i in range(b):
            _solve([image[i]], [probs[i]], params, out[i].view(c, h * w).numpy())
    return out


def mean_field_ragged(
    images: Sequence[Tensor], probs: Sequence[Tensor], params: CRFParams
) -> list[Tensor]:
    """Mean-field inference for images of different sizes at once: one compiled lattice per
    kernel over the points of all the images (which share no vertex), one update per iteration.

    Args:
        images: ``(3, H_i, W_i) uint8`` CPU RGB images.
        probs: ``(C, H_i, W_i) float32`` CPU class probabilities (no gradients), the same ``C``.
        params: the CRF parameters.

    Returns:
        ``(C, H_i, W_i) float32`` marginals, equal to :func:`mean_field`'s of each image alone.
    """
    if not probs:
        return []
    c = probs[0].shape[0]
    sizes = [p.shape[1] * p.shape[2] for p in probs]
    out = np.empty((c, sum(sizes)), np.float32)
    with threads():
        _solve(images, probs, params, out)
    parts = np.split(out, np.cumsum(sizes)[:-1], axis=1)
    return [torch.from_numpy(part.reshape(p.shape)) for part, p in zip(parts, probs)]


def _solve(
    images: Sequence[Tensor], probs: Sequence[Tensor], params: CRFParams, out: np.ndarray
) -> None:
    """The mean field of ``(3, H_i, W_i) uint8`` images and their ``(C, H_i, W_i) float32``
    probabilities as one set of points (their kernels' lattices span them all), written
    class-major into ``out (C, P) float32`` (``P = sum(H_i W_i)``); runs on numba's threads."""
    compiled = load_kernels()
    c = probs[0].shape[0]
    shapes = tuple((p.shape[1], p.shape[2]) for p in probs)
    n = sum(h * w for h, w in shapes)
    # CRFParams holds the compatibility matrix already symmetrised; (0, 0) stands for Potts
    compat = compatibility_matrix(params, c)
    if compat is None:
        compat = np.zeros((0, 0), np.float32)
    padded = -(-c // _LANES) * _LANES
    # an absent kernel: no corners per point, so its (empty) lattice is never read
    no_weights = np.zeros((n, 0), np.float32)
    absent = (np.zeros((n, 0), np.int32), no_weights, no_weights)
    lattices = []
    if params.pos_w != 0:  # it depends on the image sizes only: cached
        lattices.append(_smoothness(shapes, params.pos_xy_std, params.pos_w))
    if params.bi_w != 0:
        feats = [
            bilateral_features(im[None], params.bi_xy_std, params.bi_rgb_std)[0] for im in images
        ]
        lattices.append(
            CompiledLattice(torch.cat(feats).numpy(), params.bi_w, [len(f) for f in feats])
        )
    buffers = [lattice.buffers(padded) for lattice in lattices]
    unary = torch.cat([unary_from_probs(p).reshape(c, -1) for p in probs], dim=1).numpy()
    q = np.zeros((n, padded), np.float32)
    # the last update writes the marginals class-major straight into the output
    final = [np.zeros((0, 0), np.float32)] * params.iterations + [out]
    compiled.update(unary, *absent, *absent, compat, q, final[0])  # softmax(-unary)
    for step in range(1, params.iterations + 1):
        blurred = [lat.splat_blur(q, buf) for lat, buf in zip(lattices, buffers)]
        slices: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
            (lat.vertex, lat.slice_weight, v) for lat, v in zip(lattices, blurred)
        ]
        slices += [absent] * (2 - len(slices))
        compiled.update(unary, *slices[0], *slices[1], compat, q, final[step])
