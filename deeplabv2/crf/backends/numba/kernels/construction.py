"""numba kernels that build the compiled lattice: the simplices and vertex keys of the points
(compiled twins of ``PermutohedralLattice._simplices`` and ``_pack_vertices``), the vertices, the
blur neighbour table, the splat lists and the folded normalisation."""

from __future__ import annotations

import math

import numpy as np

from .jit import CHUNK, chunks, jit, pjit, prange, span

__all__ = [
    "coordinate_range",
    "fold_normalisation",
    "gather_lists",
    "neighbours",
    "pack_keys",
    "simplices",
    "unique_vertices",
]

_HASH = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15, Fibonacci hashing


@jit
def _slot(key, mask):
    return ((key * _HASH) >> np.int64(20)) & mask


@jit
def _table_size(n):
    return 1 << max(4, int(math.ceil(math.log2(2 * n + 1))))


@pjit
def simplices(features, scale, rem0, rank, bary):
    """The enclosing simplex of each point, exactly as ``PermutohedralLattice._simplices``.

    ``features (P, d) float32`` and ``scale (d,) float32`` in; ``rem0, rank (P, d+1) int64`` and
    ``bary (P, d+1) float32`` out. All arithmetic is float32, in the same order. Each work item
    takes ``CHUNK`` points and holds them coordinate-major, so that the loops run along the
    points (vectorised) rather than along the few coordinates of one point.
    """
    p_count, d = features.shape
    d1 = d + 1
    inv_dp1 = np.float32(1.0 / d1)
    dp1 = np.float32(d1)
    for chunk in prange(chunks(p_count)):
        first, count = span(chunk, p_count)
        scaled = np.empty((d, CHUNK), np.float32)
        elevated = np.empty((d1, CHUNK), np.float32)
        v = np.empty((d1, CHUNK), np.float32)
        r = np.zeros((d1, CHUNK), np.int32)
        by_rank = np.empty((d1, CHUNK), np.float32)
        sm = np.zeros(CHUNK, np.float32)
        total = np.zeros(CHUNK, np.float32)
        for s in range(count):
            for k in range(d):
                scaled[k, s] = features[first + s, k] * scale[k]
        for j in range(d, 0, -1):
            for s in range(count):
                elevated[j, s] = sm[s] - np.float32(j) * scaled[j - 1, s]
                sm[s] += scaled[j - 1, s]
        elevated[0, :count] = sm[:count]
        for i in range(d1):
            for s in range(count):
                nearest = np.float32(np.round(elevated[i, s] * inv_dp1))
                v[i, s] = nearest * dp1
                total[s] += nearest
        for i in range(d1):  # branch-free: the comparisons are data-dependent coin flips
            for j in range(i + 1, d1):
                for s in range(count):
                    lower = np.int32(elevated[i, s] - v[i, s] < elevated[j, s] - v[j, s])
                    r[i, s] += lower
                    r[j, s] += 1 - lower
        for i in range(d1):
            for s in range(count):
                ri = np.float32(r[i, s]) + total[s]
                shift = np.float32(ri < 0) * dp1 - np.float32(ri >= dp1) * dp1
                ri += shift
                v[i, s] += shift
                r[i, s] = np.int32(ri)
        for s in range(count):
            p = first + s
            for i in range(d1):
                rank[p, i] = r[i, s]
                rem0[p, i] = np.int64(v[i, s])
                by_rank[r[i, s], s] = (elevated[i, s] - v[i, s]) * inv_dp1
            for q in range(1, d1):
                bary[p, q] = by_rank[d - q, s] - by_rank[d - q + 1, s]
            bary[p, 0] = by_rank[d, s] + (np.float32(1.0) - by_rank[0, s])


@jit
def coordinate_range(rem0, d):
    """The smallest and largest value of each of the first ``d`` columns of ``rem0 (P, d+1)``."""
    low = rem0[0, :d].copy()
    high = rem0[0, :d].copy()
    for p in range(1, rem0.shape[0]):
        for k in range(d):
            low[k] = min(low[k], rem0[p, k])
            high[k] = max(high[k], rem0[p, k])
    return low, high


@pjit
def pack_keys(rem0, rank, offsets, strides, keys):
    """``PermutohedralLattice._pack_vertices`` for one image: the packed key of each point's
    ``d+1`` vertices into ``keys (P, d+1) int64``, from ``rem0, rank (P, d+1) int64`` and the
    layout of ``lattice.geometry.key_layout`` (``offsets, strides (d,) int64``)."""
    p_count, d1 = rem0.shape
    d = d1 - 1
    step = np.int64(0)
    for k in range(d):
        step += strides[k]
    for chunk in prange(chunks(p_count)):
        first, count = span(chunk, p_count)
        by_rank = np.empty(d1, np.int64)
        for p in range(first, first + count):
            base = np.int64(0)
            by_rank[:] = 0
            for k in range(d):
                base += (rem0[p, k] - offsets[k]) * strides[k]
                by_rank[rank[p, k]] = strides[k]
            above = np.int64(0)  # strides of the coordinates whose rank exceeds d - r
            for r in range(d1):
                keys[p, r] = base + r * step - d1 * above
                above += by_rank[d - r]


@jit
def _find(table, distinct, key, mask):
    """The slot of ``key`` in the open-addressing ``table`` (vertex indices into ``distinct``,
    -1 for empty), or the empty slot where it would go."""
    slot = _slot(key, mask)
    while table[slot] >= 0 and distinct[table[slot]] != key:
        slot = (slot + 1) & mask
    return slot


@jit
def unique_vertices(keys):
    """Vertex index of every key (numbered in first-occurrence order) and the distinct keys."""
    mask = _table_size(keys.size) - 1
    table = np.full(mask + 1, -1, np.int32)
    distinct = np.empty(keys.size, np.int64)
    index = np.empty(keys.size, np.int32)
    count = 0
    for i in range(keys.size):
        slot = _find(table, distinct, keys[i], mask)
        if table[slot] < 0:
            table[slot] = count
            distinct[count] = keys[i]
            count += 1
        index[i] = table[slot]
    return index, distinct[:count].copy()


@jit
def _radix_order(keys):
    """The permutation that sorts non-negative int64 ``keys`` (LSD radix sort, 11-bit digits)."""
    n = keys.size
    largest = np.int64(0)
    for i in range(n):
        largest = max(largest, keys[i])
    order = np.arange(n).astype(np.int32)
    spare = np.empty(n, np.int32)
    count = np.empty(2049, np.int64)
    shift = 0
    while shift < 63 and (largest >> shift) > 0:
        count[:] = 0
        for i in range(n):
            count[((keys[order[i]] >> shift) & 2047) + 1] += 1
        for b in range(2048):
            count[b + 1] += count[b]
        for i in range(n):
            digit = (keys[order[i]] >> shift) & 2047
            spare[count[digit]] = order[i]
            count[digit] += 1
        order, spare = spare, order
        shift += 11
    return order


@pjit
def neighbours(distinct, shifts):
    """``(axes, M, 2) int32``: the vertices at ``key - shift`` and ``key + shift`` for each axis,
    ``M`` (the index of an all-zero row) where there is none.

    The keys are sorted once; since ``key + shift`` grows with ``key``, each axis is then one
    merge-like sweep through the sorted keys (sequential reads, unlike hash-table lookups)."""
    m = distinct.size
    order = _radix_order(distinct)
    ordered = np.empty(m, np.int64)
    for i in range(m):
        ordered[i] = distinct[order[i]]
    out = np.full((shifts.size, m, 2), m, np.int32)
    for a in prange(shifts.size):
        shift = shifts[a]
        j = 0
        for i in range(m):
            target = ordered[i] + shift
            while j < m and ordered[j] < target:
                j += 1
            if j == m:
                break
            if ordered[j] == target:
                out[a, order[i], 1] = order[j]
                out[a, order[j], 0] = order[i]
    return out


@jit
def gather_lists(vertex, weight, m):
    """The splat lists in CSR form, for each of the ``m`` vertices its entries ``(point, corner)``
    in point order: ``start (m+1,) int64``, and per entry the point (int32) and the weight
    ``weight[point, corner]``."""
    n, d1 = vertex.shape
    start = np.zeros(m + 1, np.int64)
    for p in range(n):
        for k in range(d1):
            start[vertex[p, k] + 1] += 1
    for v in range(m):
        start[v + 1] += start[v]
    fill = start[:-1].copy()
    point = np.empty(n * d1, np.int32)
    entry_weight = np.empty(n * d1, np.float32)
    for p in range(n):
        for k in range(d1):
            v = vertex[p, k]
            point[fill[v]] = p
            entry_weight[fill[v]] = weight[p, k]
            fill[v] += 1
    return start, point, entry_weight


@pjit
def fold_normalisation(total, splat_bary, slice_bary, weight, splat_weight, slice_weight):
    """Fold ``D = 1 / sqrt(K 1 + 1e-20)`` (the root in float64, as
    ``PermutohedralLattice.symmetric_normalized`` takes it) and the kernel ``weight`` into the
    splat weights (``splat_bary * D``) and the slice weights (``slice_bary * (weight * D)``),
    all ``(N, d+1)``; ``total (N,) float32`` is ``K 1``."""
    for p in prange(total.size):
        norm = np.float32(1.0 / math.sqrt(np.float64(total[p]) + 1e-20))
        scale = weight * norm
        for k in range(slice_bary.shape[1]):
            splat_weight[p, k] = splat_bary[p, k] * norm
            slice_weight[p, k] = slice_bary[p, k] * scale
