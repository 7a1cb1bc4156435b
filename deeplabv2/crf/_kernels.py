"""numba kernels of the compiled CRF backend (imported only when numba is installed).

Every kernel is a plain loop over points or lattice vertices; those that run in parallel split
their outer loop over numba's threads (``_numba.threads`` sets how many). Arrays are C-contiguous
``float32`` values and ``int32``/``int64`` indices produced by :mod:`._numba`; bounds are not
checked at run time, so callers must pass arrays of the documented shapes.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, boundscheck=False)
_pjit = numba.njit(cache=True, nogil=True, boundscheck=False, parallel=True)
prange = numba.prange

_HASH = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15, Fibonacci hashing
_CHUNK = 256  # points per parallel work item in the fused update

# exp(x) for x <= 0 as p(r) * 2^t with x = t ln2 + r, |r| <= ln2 / 2 (Cephes' expf polynomial,
# relative error below 1e-6). Below x = -70 (exp = 4e-31) the result is exactly 0: marginals that
# small, once weighted by splat, blur and slice, would become denormal numbers, whose arithmetic
# is many times slower, and they can never change a result at float32 precision.
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_FLOOR = np.float32(-70.0)


@_jit
def _slot(key, mask):
    return ((key * _HASH) >> np.int64(20)) & mask


@_jit
def _table_size(n):
    return 1 << max(4, int(math.ceil(math.log2(2 * n + 1))))


@_pjit
def simplices(features, scale, rem0, rank, bary):
    """The enclosing simplex of each point, exactly as ``PermutohedralLattice._simplices``.

    ``features (P, d) float32`` and ``scale (d,) float32`` in; ``rem0, rank (P, d+1) int64`` and
    ``bary (P, d+1) float32`` out. All arithmetic is float32, in the same order.
    """
    p_count, d = features.shape
    inv_dp1 = np.float32(1.0 / (d + 1))
    dp1 = np.float32(d + 1)
    for chunk in prange((p_count + _CHUNK - 1) // _CHUNK):
        elevated = np.empty(d + 1, np.float32)
        v = np.empty(d + 1, np.float32)
        r = np.empty(d + 1, np.int64)
        by_rank = np.empty(d + 1, np.float32)
        for p in range(chunk * _CHUNK, min(p_count, (chunk + 1) * _CHUNK)):
            sm = np.float32(0.0)
            for j in range(d, 0, -1):
                cf = features[p, j - 1] * scale[j - 1]
                elevated[j] = sm - np.float32(j) * cf
                sm += cf
            elevated[0] = sm
            total = np.float32(0.0)
            for i in range(d + 1):
                nearest = np.float32(np.round(elevated[i] * inv_dp1))
                v[i] = nearest * dp1
                total += nearest
                r[i] = 0
            for i in range(d + 1):
                for j in range(i + 1, d + 1):
                    if elevated[i] - v[i] < elevated[j] - v[j]:
                        r[i] += 1
                    else:
                        r[j] += 1
            for i in range(d + 1):
                ri = np.float32(r[i]) + total
                if ri < 0:
                    ri += dp1
                    v[i] += dp1
                elif ri >= dp1:
                    ri -= dp1
                    v[i] -= dp1
                rank[p, i] = np.int64(ri)
                rem0[p, i] = np.int64(v[i])
                by_rank[rank[p, i]] = (elevated[i] - v[i]) * inv_dp1
            for q in range(1, d + 1):
                bary[p, q] = by_rank[d - q] - by_rank[d - q + 1]
            bary[p, 0] = by_rank[d] + (np.float32(1.0) - by_rank[0])


@_jit
def _find(table, distinct, key, mask):
    """The slot of ``key`` in the open-addressing ``table`` (vertex indices into ``distinct``,
    -1 for empty), or the empty slot where it would go."""
    slot = _slot(key, mask)
    while table[slot] >= 0 and distinct[table[slot]] != key:
        slot = (slot + 1) & mask
    return slot


@_jit
def unique_vertices(keys):
    """Vertex index of every key (numbered in first-occurrence order), the distinct keys, and
    the hash table that maps them to their indices (for :func:`neighbours`)."""
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
    return index, distinct[:count].copy(), table


@_pjit
def neighbours(distinct, table, shifts):
    """``(axes, M, 2) int32``: the vertices at ``key - shift`` and ``key + shift`` for each axis,
    looked up in ``table`` (from :func:`unique_vertices`); ``M`` (the index of an all-zero row)
    where there is none."""
    m = distinct.size
    mask = table.size - 1
    out = np.full((shifts.size, m, 2), m, np.int32)
    for v in prange(m):
        for a in range(shifts.size):
            for side in range(2):
                key = distinct[v] + (shifts[a] if side else -shifts[a])
                found = table[_find(table, distinct, key, mask)]
                if found >= 0:
                    out[a, v, side] = found
    return out


@_jit
def gather_lists(vertex, m):
    """CSR lists of the entries ``p * (d+1) + k`` of each of the ``m`` vertices, in point order."""
    flat = vertex.ravel()
    start = np.zeros(m + 1, np.int64)
    for e in range(flat.size):
        start[flat[e] + 1] += 1
    for v in range(m):
        start[v + 1] += start[v]
    fill = start[:-1].copy()
    entries = np.empty(flat.size, np.int32)
    for e in range(flat.size):
        v = flat[e]
        entries[fill[v]] = e
        fill[v] += 1
    return start, entries


@_pjit
def splat(start, point, weight, values, lattice):
    """``lattice[v] = sum weight[i] values[point[i]]`` for ``i`` in ``start[v] .. start[v+1]``;
    ``lattice (M+1, C)``: the last row is set to zero."""
    m = start.size - 1
    c = values.shape[1]
    for v in prange(m):
        row = lattice[v]
        row[:] = 0.0
        for i in range(start[v], start[v + 1]):
            w = weight[i]
            src = values[point[i]]
            for j in range(c):
                row[j] += w * src[j]
    lattice[m, :] = 0.0


@_pjit
def blur(table, a, b):
    """``V[v] + 0.5 (V[n1] + V[n2])`` along each axis in turn, ping-ponging between ``a`` and
    ``b`` (``(M+1, C)``, last row zero); returns the buffer that holds the result."""
    m = table.shape[1]
    c = a.shape[1]
    for axis in range(table.shape[0]):
        for v in prange(m):
            n1 = table[axis, v, 0]
            n2 = table[axis, v, 1]
            for j in range(c):
                b[v, j] = a[v, j] + np.float32(0.5) * (a[n1, j] + a[n2, j])
        b[m, :] = 0.0
        a, b = b, a
    return a


@_pjit
def slice_into(vertex, weight, lattice, out):
    """``out[p] = sum_k weight[p, k] lattice[vertex[p, k]]``."""
    n, k1 = vertex.shape
    for p in prange(n):
        row = out[p]
        row[:] = 0.0
        for k in range(k1):
            w = weight[p, k]
            src = lattice[vertex[p, k]]
            for j in range(row.size):
                row[j] += w * src[j]


@_pjit
def update(unary, vertex1, weight1, lattice1, vertex2, weight2, lattice2, compat, q):
    """One mean-field update, fused: slice both kernels, add the unary, softmax into ``q``.

    ``unary (N, C)``; per kernel ``vertex (N, K) int32``, ``weight (N, K)`` and the blurred
    ``lattice (M+1, C')`` (``K = 0`` for an absent kernel); ``compat (C, C)`` the symmetrised
    compatibility, or ``(0, 0)`` for Potts (energy ``-unary + message``); ``q (N, C')``, whose
    padding channels ``C..C'`` are left as they are (zero).
    """
    n, c = unary.shape
    padded = q.shape[1]
    potts = compat.shape[0] == 0
    for chunk in prange((n + _CHUNK - 1) // _CHUNK):
        message = np.empty(padded, np.float32)
        energy = np.empty(c, np.float32)
        exponent = np.empty(c, np.int32)
        power = exponent.view(np.float32)  # 2^t, built from its bits so that the loop vectorises
        for p in range(chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)):
            message[:] = 0.0
            for k in range(vertex1.shape[1]):
                w = weight1[p, k]
                src = lattice1[vertex1[p, k]]
                for j in range(padded):
                    message[j] += w * src[j]
            for k in range(vertex2.shape[1]):
                w = weight2[p, k]
                src = lattice2[vertex2[p, k]]
                for j in range(padded):
                    message[j] += w * src[j]
            if potts:
                for j in range(c):
                    energy[j] = message[j] - unary[p, j]
            else:
                for j in range(c):
                    total = np.float32(0.0)
                    for i in range(c):
                        total += compat[j, i] * message[i]
                    energy[j] = -unary[p, j] - total
            top = energy[0]
            for j in range(1, c):
                top = max(top, energy[j])
            for j in range(c):
                x = max(energy[j] - top, _EXP_FLOOR)
                t = np.floor(x * _LOG2E + np.float32(0.5))
                r = (x - t * _LN2_HI) - t * _LN2_LO
                poly = np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)
                poly = poly * r + np.float32(8.3334519073e-3)
                poly = poly * r + np.float32(4.1665795894e-2)
                poly = poly * r + np.float32(1.6666665459e-1)
                poly = poly * r + np.float32(5.0000001201e-1)
                energy[j] = poly * r * r + r + np.float32(1.0)
                # 2^t from its bits; 0 below the floor (exactly zero rather than tiny)
                exponent[j] = (np.int32(t) + np.int32(127)) << np.int32(23) if x > _EXP_FLOOR else 0
            total = np.float32(0.0)
            for j in range(c):
                energy[j] *= power[j]
                total += energy[j]
            inv = np.float32(1.0) / total
            for j in range(c):
                q[p, j] = energy[j] * inv
