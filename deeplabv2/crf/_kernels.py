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
_CHUNK = 256  # points per parallel work item of the loops over points

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
    ``bary (P, d+1) float32`` out. All arithmetic is float32, in the same order. Each work item
    takes ``_CHUNK`` points and holds them coordinate-major, so that the loops run along the
    points (vectorised) rather than along the few coordinates of one point.
    """
    p_count, d = features.shape
    d1 = d + 1
    inv_dp1 = np.float32(1.0 / d1)
    dp1 = np.float32(d1)
    for chunk in prange((p_count + _CHUNK - 1) // _CHUNK):
        first = chunk * _CHUNK
        count = min(p_count, first + _CHUNK) - first
        scaled = np.empty((d, _CHUNK), np.float32)
        elevated = np.empty((d1, _CHUNK), np.float32)
        v = np.empty((d1, _CHUNK), np.float32)
        r = np.zeros((d1, _CHUNK), np.int32)
        by_rank = np.empty((d1, _CHUNK), np.float32)
        sm = np.zeros(_CHUNK, np.float32)
        total = np.zeros(_CHUNK, np.float32)
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


@_jit
def coordinate_range(rem0, d):
    """The smallest and largest value of each of the first ``d`` columns of ``rem0 (P, d+1)``."""
    low = rem0[0, :d].copy()
    high = rem0[0, :d].copy()
    for p in range(1, rem0.shape[0]):
        for k in range(d):
            low[k] = min(low[k], rem0[p, k])
            high[k] = max(high[k], rem0[p, k])
    return low, high


@_pjit
def pack_keys(rem0, rank, offsets, strides, keys):
    """``PermutohedralLattice._pack_vertices`` for one image: the packed key of each point's
    ``d+1`` vertices into ``keys (P, d+1) int64``, from ``rem0, rank (P, d+1) int64`` and the
    layout of ``PermutohedralLattice._key_layout`` (``offsets, strides (d,) int64``)."""
    p_count, d1 = rem0.shape
    d = d1 - 1
    step = np.int64(0)
    for k in range(d):
        step += strides[k]
    for chunk in prange((p_count + _CHUNK - 1) // _CHUNK):
        by_rank = np.empty(d1, np.int64)
        for p in range(chunk * _CHUNK, min(p_count, (chunk + 1) * _CHUNK)):
            base = np.int64(0)
            by_rank[:] = 0
            for k in range(d):
                base += (rem0[p, k] - offsets[k]) * strides[k]
                by_rank[rank[p, k]] = strides[k]
            above = np.int64(0)  # strides of the coordinates whose rank exceeds d - r
            for r in range(d1):
                keys[p, r] = base + r * step - d1 * above
                above += by_rank[d - r]


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


@_jit
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


@_pjit
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


@_jit
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


@_pjit
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


@_jit
def splat_scatter(vertex, weight, values, lattice):
    """``lattice[vertex[p, k]] += weight[p, k] values[p]`` for the points ``p`` in order, on
    one thread: the same sums, in the same order, as :func:`splat`. ``vertex, weight (N, K)``,
    ``values (N, C)``, ``lattice (M+1, C)`` (the last row is left zero)."""
    lattice[:] = 0.0
    c = values.shape[1]
    for p in range(vertex.shape[0]):
        src = values[p]
        for k in range(vertex.shape[1]):
            w = weight[p, k]
            row = lattice[vertex[p, k]]
            for j in range(c):
                row[j] += w * src[j]


@_pjit
def splat(start, point, weight, values, lattice):
    """``lattice[v] = sum weight[i] values[point[i]]`` for ``i`` in ``start[v] .. start[v+1]``;
    ``lattice (M+1, C)``: the last row is set to zero.

    The first entry is stored rather than added to zero (the same number; only a ``-0.0`` would
    keep its sign), which saves a pass over the row.
    """
    m = start.size - 1
    c = values.shape[1]
    for v in prange(m):
        row = lattice[v]
        first, end = start[v], start[v + 1]
        if first == end:  # a vertex of densecrf's padding points only
            row[:] = 0.0
            continue
        w = weight[first]
        src = values[point[first]]
        for j in range(c):
            row[j] = w * src[j]
        for i in range(first + 1, end):
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


@_jit
def _accumulate(message, first, count, vertex, weight, lattice):
    """``message[s] += sum_k weight[p, k] lattice[vertex[p, k]]`` for ``p = first + s``."""
    lanes = message.shape[1]
    for s in range(count):
        p = first + s
        row = message[s]
        for k in range(vertex.shape[1]):
            w = weight[p, k]
            src = lattice[vertex[p, k]]
            for j in range(lanes):
                row[j] += w * src[j]


@_pjit
def slice_into(vertex, weight, lattice, out):
    """``out[p] = sum_k weight[p, k] lattice[vertex[p, k]]``."""
    n = vertex.shape[0]
    for chunk in prange((n + _CHUNK - 1) // _CHUNK):
        first = chunk * _CHUNK
        rows = out[first : first + _CHUNK]
        rows[:] = 0.0
        _accumulate(rows, first, rows.shape[0], vertex, weight, lattice)


@_jit
def _energies(message, unary_t, compat, first, count, transposed, energy):
    """``energy (C, S)``: the negative energy of the points ``first .. first+count`` (columns),
    from their messages ``(S, C')`` (rows); ``transposed (C, S)`` is scratch space."""
    c = energy.shape[0]
    if compat.shape[0] == 0:  # Potts: message - unary
        for j in range(c):
            for s in range(count):
                energy[j, s] = message[s, j] - unary_t[j, first + s]
        return
    for j in range(c):
        for s in range(count):
            transposed[j, s] = message[s, j]
    for j in range(c):
        row = energy[j]
        row[:count] = 0.0
        for i in range(c):
            weight = compat[j, i]
            src = transposed[i]
            for s in range(count):
                row[s] += weight * src[s]
        for s in range(count):
            row[s] = -unary_t[j, first + s] - row[s]


@_jit
def _running_max(top, row, count):
    for s in range(count):
        top[s] = max(top[s], row[s])


@_jit
def _exp_parts(row, top, bits, count):
    """``exp(row - top) = row' * 2^t``: ``row' = p(r)`` in place, ``bits`` those of ``2^t``."""
    for s in range(count):
        x = max(row[s] - top[s], _EXP_FLOOR)
        t = np.floor(x * _LOG2E + np.float32(0.5))
        r = (x - t * _LN2_HI) - t * _LN2_LO
        poly = np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)
        poly = poly * r + np.float32(8.3334519073e-3)
        poly = poly * r + np.float32(4.1665795894e-2)
        poly = poly * r + np.float32(1.6666665459e-1)
        poly = poly * r + np.float32(5.0000001201e-1)
        row[s] = poly * r * r + r + np.float32(1.0)
        # 0 below the floor: exactly zero rather than tiny
        bits[s] = (np.int32(t) + np.int32(127)) << np.int32(23) if x > _EXP_FLOOR else 0


@_jit
def _scale_and_sum(row, power, total, count):
    for s in range(count):
        row[s] *= power[s]
        total[s] += row[s]


@_jit
def _softmax_columns(energy, bits, top, total, count):
    """Softmax of each of the first ``count`` columns of ``energy (C, S)``, unnormalised in
    place; ``total`` receives the reciprocal of each column's sum. ``bits (C, S) int32``."""
    c = energy.shape[0]
    power = bits.view(np.float32)  # 2^t, built from its bits so that the loops vectorise
    top[:count] = energy[0, :count]
    for j in range(1, c):
        _running_max(top, energy[j], count)
    for j in range(c):
        _exp_parts(energy[j], top, bits[j], count)
    total[:count] = 0.0
    for j in range(c):
        _scale_and_sum(energy[j], power[j], total, count)
    for s in range(count):
        total[s] = np.float32(1.0) / total[s]


@_pjit
def update(unary_t, vertex1, weight1, lattice1, vertex2, weight2, lattice2, compat, q, final):
    """One mean-field update, fused: slice both kernels, add the unary, softmax into ``q``.

    ``unary_t (C, N)`` (class-major); per kernel ``vertex (N, K) int32``, ``weight (N, K)``
    and the blurred ``lattice (M+1, C')`` (``K = 0`` for an absent kernel); ``compat (C, C)``
    the symmetrised compatibility, or ``(0, 0)`` for Potts (energy ``-unary + message``);
    ``q (N, C')``, whose padding channels ``C..C'`` are left as they are (zero); the last
    update passes ``final (C, N)`` to receive the marginals class-major instead (else
    ``(0, 0)``).

    Each work item takes ``_CHUNK`` points: their messages are sliced as rows, then turned
    into class-major columns so that the softmax runs along the points (the 21 or so classes of
    a row are too few for the vectoriser).
    """
    c, n = unary_t.shape
    lanes = q.shape[1]
    for chunk in prange((n + _CHUNK - 1) // _CHUNK):
        first = chunk * _CHUNK
        count = min(n, first + _CHUNK) - first
        message = np.zeros((_CHUNK, lanes), np.float32)
        energy = np.empty((c, _CHUNK), np.float32)
        scratch = np.empty((c, _CHUNK), np.float32)
        bits = np.empty((c, _CHUNK), np.int32)
        top = np.empty(_CHUNK, np.float32)
        total = np.empty(_CHUNK, np.float32)
        _accumulate(message, first, count, vertex1, weight1, lattice1)
        _accumulate(message, first, count, vertex2, weight2, lattice2)
        _energies(message, unary_t, compat, first, count, scratch, energy)
        _softmax_columns(energy, bits, top, total, count)
        if final.shape[0] == 0:
            for s in range(count):
                p = first + s
                for j in range(c):
                    q[p, j] = energy[j, s] * total[s]
        else:
            for j in range(c):
                row = final[j]
                for s in range(count):
                    row[first + s] = energy[j, s] * total[s]
