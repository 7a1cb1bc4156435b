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

Loops over points and vertices run on ``torch.get_num_threads()`` threads. numba installs as a
binary wheel on every platform (no compiler); without it ``backend="auto"`` falls back to
pydensecrf or the ``torch`` backend, which give the same results (``tests/crf/test_numba.py``).

(This package is ``deeplabv2.crf.backends.numba``; ``import numba`` inside it is the absolute
import of numba itself.)
"""

from __future__ import annotations

from collections.abc import Iterator
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
from ..registry import Backend
from .lattice import INSTALL_HINT, CompiledLattice, load_kernels, simplices

__all__ = [
    "BACKEND",
    "INSTALL_HINT",
    "CompiledLattice",
    "load_kernels",
    "mean_field",
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
def _smoothness(height: int, width: int, std: float, weight: float) -> CompiledLattice:
    """The smoothness kernel of one image size, kept for the next calls (as the torch backend's
    ``smoothness_lattice``): building it takes about 5% of a 500x375 CRF on one thread."""
    feats = position_features(1, height, width, std, "cpu")[0]
    return CompiledLattice(feats.numpy(), weight)


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
    compiled = load_kernels()
    b, c, h, w = probs.shape
    # CRFParams holds the compatibility matrix already symmetrised; (0, 0) stands for Potts
    compat = compatibility_matrix(params, c)
    if compat is None:
        compat = np.zeros((0, 0), np.float32)
    padded = -(-c // _LANES) * _LANES
    # an absent kernel: no corners per point, so its (empty) lattice is never read
    no_weights = np.zeros((h * w, 0), np.float32)
    absent = (np.zeros((h * w, 0), np.int32), no_weights, no_weights)
    out = torch.empty(b, c, h, w)
    with threads():
        # the smoothness kernel depends on the image size only: one lattice for the batch
        shared = [_smoothness(h, w, params.pos_xy_std, params.pos_w)] if params.pos_w != 0 else []
        for i in range(b):
            lattices = list(shared)
            if params.bi_w != 0:
                feats = bilateral_features(image[i : i + 1], params.bi_xy_std, params.bi_rgb_std)
                lattices.append(CompiledLattice(feats[0].numpy(), params.bi_w))
            buffers = [lattice.buffers(padded) for lattice in lattices]
            unary = unary_from_probs(probs[i]).reshape(c, h * w).numpy()  # class-major
            q = np.zeros((h * w, padded), np.float32)
            # the last update writes the marginals class-major straight into the output
            final = [np.zeros((0, 0), np.float32)] * params.iterations
            final.append(out[i].view(c, h * w).numpy())
            compiled.update(unary, *absent, *absent, compat, q, final[0])  # softmax(-unary)
            for step in range(1, params.iterations + 1):
                blurred = [lat.splat_blur(q, buf) for lat, buf in zip(lattices, buffers)]
                slices: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
                    (lat.vertex, lat.slice_weight, v) for lat, v in zip(lattices, blurred)
                ]
                slices += [absent] * (2 - len(slices))
                compiled.update(unary, *slices[0], *slices[1], compat, q, final[step])
    return out


BACKEND = Backend(
    name="numba",
    mean_field=mean_field,
    require=load_kernels,
    devices=("cpu",),
    priority=30,
    summary="the native lattice compiled for the CPU (pip install 'deeplabv2[fast]')",
)
