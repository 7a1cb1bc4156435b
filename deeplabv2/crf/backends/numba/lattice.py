"""The numba backend's lattice: the normalised Gaussian kernel of one image as flat arrays for
the compiled kernels (:mod:`.kernels`), built by compiled twins of the torch lattice's steps."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from types import ModuleType
from typing import Optional

import numpy as np
import torch

from ...lattice.geometry import key_layout, neighbour_shifts, scale_factors
from ...lattice.ragged import check_sizes, padded_layout

__all__ = ["INSTALL_HINT", "CompiledLattice", "load_kernels", "simplices"]

INSTALL_HINT = (
    "the 'numba' CRF backend needs numba: pip install 'deeplabv2[fast]' (or use backend='torch')"
)


@cache
def load_kernels() -> ModuleType:
    """The kernel package :mod:`.kernels` (compiled on first use, then loaded from numba's
    cache); ImportError with the install hint when numba is missing or cannot be imported."""
    try:
        from . import kernels as module
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    return module


def simplices(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``PermutohedralLattice._simplices`` compiled: ``(P, d) float32`` features -> the
    remainder-0 points and ranks ``(P, d+1) int64`` and the barycentric weights
    ``(P, d+1) float32``."""
    p, d = features.shape
    rem0 = np.empty((p, d + 1), np.int64)
    rank = np.empty((p, d + 1), np.int64)
    bary = np.empty((p, d + 1), np.float32)
    scale = scale_factors(d, torch.device("cpu")).numpy()
    load_kernels().simplices(np.ascontiguousarray(features), scale, rem0, rank, bary)
    return rem0, rank, bary


class CompiledLattice:
    """The normalised Gaussian kernel ``x -> weight * D K (D x)`` of one image, or of several
    images of different sizes that share no vertex, as flat arrays.

    The operator of ``PermutohedralLattice(features, sizes).symmetric_normalized(weight)``, with
    the vertices numbered in the order the points first touch them.

    Args:
        features: ``(N, d) float32`` feature vectors (divided by their standard deviations).
        weight: the kernel's weight, folded into the slice weights.
        sizes: the number of points of each image, the images one after the other in
            ``features`` (``sum(sizes) == N``); None for one image.
    """

    def __init__(
        self, features: np.ndarray, weight: float, sizes: Optional[Sequence[int]] = None
    ) -> None:
        compiled = load_kernels()
        n, d = features.shape
        sizes = check_sizes((n,) if sizes is None else sizes, n)
        # densecrf's padding points (see PermutohedralLattice): their vertices exist, unsplatted
        layout = padded_layout(sizes, "cpu")
        real = layout.real.numpy()
        padded = np.zeros((layout.total, d), np.float32)
        padded[real] = features
        rem0, rank, bary = simplices(padded)
        low, high = compiled.coordinate_range(rem0, d)
        offsets, strides, image_stride = key_layout(low.tolist(), high.tolist(), len(sizes))
        keys = np.empty_like(rem0)
        compiled.pack_keys(rem0, rank, np.asarray(offsets), np.asarray(strides), keys)
        if len(sizes) > 1:  # the image as the most significant digit: images share no vertex
            keys += (layout.image.numpy() * image_stride)[:, None]
        index, distinct = compiled.unique_vertices(keys.reshape(-1))
        self.num_vertices = distinct.size
        #: (N, d+1) int32 vertex of each point's simplex corners
        self.vertex = np.ascontiguousarray(index.reshape(-1, d + 1)[real])
        shifts = np.abs(np.asarray(neighbour_shifts(strides, d), np.int64))
        #: (d+1, M, 2) int32 blur neighbours; M is an all-zero row
        self.table = compiled.neighbours(distinct, shifts)
        bary = bary[real]
        slice_bary = bary * np.float32(1.0 / (1.0 + 2.0**-d))
        #: the splat lists of the gather splat (start, point, weight), built when first needed
        self._lists: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None
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
        shape = (self.num_vertices + 1, channels)
        return np.empty(shape, np.float32), np.empty(shape, np.float32)

    def splat_blur(self, values: np.ndarray, buffers: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Splat ``(N, C) float32`` values and blur them; returns the ``(M+1, C)`` lattice.

        On one thread the points are scattered in order (sequential reads of the values; the
        rows of neighbouring points' vertices stay in cache); on several, each vertex gathers
        its points through lists built on first use. Both add each vertex's points in point
        order, so the results are the same bit for bit."""
        import numba

        compiled = load_kernels()
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
        load_kernels().slice_into(self.vertex, self.slice_weight, lattice, out)
        return out
