"""The ``numba`` CRF backend: the native lattice compiled for the CPU (``deeplabv2[fast]``).

The same permutohedral lattice and mean field as :mod:`._torch` -- the simplices and vertex keys
are computed by compiled twins of ``PermutohedralLattice._simplices`` and ``_pack_vertices``
(the same float32 operations, the same key layout; tested bit for bit) -- but stored as flat
arrays for a few small kernels (:mod:`._kernels`) instead of sparse matrices:

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
pydensecrf or the pure PyTorch path, which give the same results (``tests/crf/test_numba.py``).
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import cache, lru_cache

import numpy as np
import torch
from torch import Tensor

from ._torch import bilateral_features, position_features, unary_from_probs
from .lattice import PermutohedralLattice, _scale_factors
from .params import CRFParams

__all__ = ["CompiledLattice", "available", "kernels", "mean_field", "simplices", "threads"]

INSTALL_HINT = (
    "the 'numba' CRF backend needs numba: pip install 'deeplabv2[fast]' (or use backend='torch')"
)


#: lattice rows are padded to a multiple of this many float32 channels (21 classes -> 24)
_LANES = 8


def available() -> bool:
    """Whether the kernels can be loaded (numba installed and importable)."""
    try:
        kernels()
    except ImportError:
        return False
    return True


@cache
def kernels():
    """The kernel module (compiled on first use, then loaded from numba's cache); ImportError
    with the install hint when numba is missing or cannot be imported."""
    try:
        from . import _kernels as module
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    return module


@contextmanager
def threads():
    """Run numba's parallel loops on as many threads as torch uses, and leave torch's count as
    it was (starting numba's OpenMP pool resets the OpenMP thread count that torch reads)."""
    import numba

    wanted = torch.get_num_threads()
    previous = numba.get_num_threads()  # starts numba's pool on first use
    numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
        torch.set_num_threads(wanted)


def simplices(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``PermutohedralLattice._simplices`` compiled: ``(P, d) float32`` -> rem0, rank, bary."""
    p, d = features.shape
    rem0 = np.empty((p, d + 1), np.int64)
    rank = np.empty((p, d + 1), np.int64)
    bary = np.empty((p, d + 1), np.float32)
    scale = _scale_factors(d, torch.device("cpu")).numpy()
    kernels().simplices(np.ascontiguousarray(features), scale, rem0, rank, bary)
    return rem0, rank, bary


class CompiledLattice:
    """One image's normalised Gaussian kernel ``x -> weight * D K (D x)`` as flat arrays.

    The operator of ``PermutohedralLattice(features).symmetric_normalized(weight)``, with the
    vertices numbered in the order the points first touch them.

    Args:
        features: ``(N, d) float32`` feature vectors (divided by their standard deviations).
        weight: the kernel's weight, folded into the slice weights.
    """

    def __init__(self, features: np.ndarray, weight: float) -> None:
        compiled = kernels()
        n, d = features.shape
        # densecrf's padding points (see PermutohedralLattice): their vertices exist, unsplatted
        padded = np.zeros((n + (-n) % 4, d), np.float32)
        padded[:n] = features
        rem0, rank, bary = simplices(padded)
        low, high = compiled.coordinate_range(rem0, d)
        offsets, strides, _ = PermutohedralLattice._key_layout(low.tolist(), high.tolist(), 1)
        keys = np.empty_like(rem0)
        compiled.pack_keys(rem0, rank, np.asarray(offsets), np.asarray(strides), keys)
        index, distinct = compiled.unique_vertices(keys.reshape(-1))
        self.num_vertices = distinct.size
        #: (N, d+1) int32 vertex of each point's simplex corners
        self.vertex = np.ascontiguousarray(index.reshape(-1, d + 1)[:n])
        shifts = np.abs(np.asarray(PermutohedralLattice._neighbour_shifts(strides, d), np.int64))
        #: (d+1, M, 2) int32 blur neighbours; M is an all-zero row
        self.table = compiled.neighbours(distinct, shifts)
        bary = bary[:n]
        slice_bary = bary * np.float32(1.0 / (1.0 + 2.0**-d))
        self._lists = None  # the splat lists of the gather splat, built when first needed
        self.splat_weight, self.slice_weight = bary, slice_bary  # K itself, for K 1
        total = self.filter(np.ones((n, 1), np.float32))[:, 0].copy()
        #: (N, d+1) splat and slice weights, normalisation (and the weight) folded in
        self.splat_weight = np.empty_like(bary)
        self.slice_weight = np.empty_like(slice_bary)
        compiled.fold_normalisation(
            total, bary, slice_bary, np.float32(weight), self.splat_weight, self.slice_weight
        )
        self._lists = None  # any lists built for K 1 carry the unnormalised weights

    def buffers(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """Two ``(M+1, C) float32`` lattice buffers."""
        return tuple(np.empty((self.num_vertices + 1, channels), np.float32) for _ in range(2))

    def splat_blur(self, values: np.ndarray, buffers) -> np.ndarray:
        """Splat ``(N, C) float32`` values and blur them; returns the ``(M+1, C)`` lattice.

        On one thread the points are scattered in order (sequential reads of the values; the
        rows of neighbouring points' vertices stay in cache); on several, each vertex gathers
        its points through lists built on first use. Both add each vertex's points in point
        order, so the results are the same bit for bit."""
        import numba

        compiled = kernels()
        if numba.get_num_threads() == 1:
            compiled.splat_scatter(self.vertex, self.splat_weight, values, buffers[0])
        else:
            if self._lists is None:
                self._lists = compiled.gather_lists(
                    self.vertex, self.splat_weight, self.num_vertices
                )
            compiled.splat(*self._lists, values, buffers[0])
        return compiled.blur(self.table, *buffers)

    def filter(self, values: np.ndarray) -> np.ndarray:
        """``K values``: ``(N, C) float32`` -> ``(N, C) float32``."""
        out = np.empty_like(values)
        lattice = self.splat_blur(values, self.buffers(values.shape[1]))
        kernels().slice_into(self.vertex, self.slice_weight, lattice, out)
        return out


@lru_cache(maxsize=4)
def _smoothness(height: int, width: int, std: float, weight: float) -> CompiledLattice:
    """The smoothness kernel of one image size, kept for the next calls (as the torch backend's
    ``_smoothness_lattice``): building it takes about 5% of a 500x375 CRF on one thread."""
    feats = position_features(1, height, width, std, "cpu")[0]
    return CompiledLattice(feats.numpy(), weight)


def mean_field(image: Tensor, probs: Tensor, params: CRFParams) -> Tensor:
    """Mean-field inference with the compiled kernels, one image at a time.

    Args:
        image: ``(B, 3, H, W) uint8`` CPU RGB images.
        probs: ``(B, C, H, W) float32`` CPU class probabilities (no gradients).
        params: the CRF parameters.

    Returns:
        ``(B, C, H, W) float32`` marginals, equal to ``_torch.mean_field``'s to float32 rounding
        (the softmax's ``exp`` is a polynomial with a relative error of about 1e-7).
    """
    compiled = kernels()
    b, c, h, w = probs.shape
    # CRFParams holds the compatibility matrix already symmetrised
    compat = np.zeros((0, 0), np.float32)
    if params.compatibility is not None:
        compat = np.asarray(params.compatibility, np.float32)
    padded = -(-c // _LANES) * _LANES
    # an absent kernel: no corners per point, so its (empty) lattice is never read
    absent = (np.zeros((h * w, 0), np.int32), np.zeros((h * w, 0), np.float32))
    absent += (absent[1],)
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
                slices = [(lat.vertex, lat.slice_weight, v) for lat, v in zip(lattices, blurred)]
                slices += [absent] * (2 - len(slices))
                compiled.update(unary, *slices[0], *slices[1], compat, q, final[step])
    return out
