"""numba kernels of the mean-field iterations: splat, blur and slice on the compiled lattice,
and the fused update (slice every kernel, add the unary, softmax)."""

from __future__ import annotations

import numpy as np

from .jit import CHUNK, chunks, inline, jit, pjit, prange, span

__all__ = ["blur", "slice_into", "splat", "splat_scatter", "update"]

# exp(x) for x <= 0 as p(r) * 2^t with x = t ln2 + r, |r| <= ln2 / 2 (Cephes' expf polynomial,
# relative error below 1e-6). Below x = -70 (exp = 4e-31) the result is exactly 0: marginals that
# small, once weighted by splat, blur and slice, would become denormal numbers, whose arithmetic
# is many times slower, and they can never change a result at float32 precision.
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_FLOOR = np.float32(-70.0)


@inline
def _add_scaled(row, w, src, count):
    """``row[j] += w * src[j]`` for the first ``count`` channels: the inner loop of splat and
    slice."""
    for j in range(count):
        row[j] += w * src[j]


@jit
def splat_scatter(vertex, weight, values, lattice):
    """``lattice[vertex[p, k]] += weight[p, k] values[p]`` for the points ``p`` in order, on
    one thread: the same sums, in the same order, as :func:`splat`. ``vertex, weight (N, K)``,
    ``values (N, C)``, ``lattice (M+1, C)`` (the last row is left zero)."""
    lattice[:] = 0.0
    c = values.shape[1]
    for p in range(vertex.shape[0]):
        src = values[p]
        for k in range(vertex.shape[1]):
            _add_scaled(lattice[vertex[p, k]], weight[p, k], src, c)


@pjit
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
            _add_scaled(row, weight[i], values[point[i]], c)
    lattice[m, :] = 0.0


@pjit
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


@jit
def _accumulate(message, first, count, vertex, weight, lattice):
    """``message[s] += sum_k weight[p, k] lattice[vertex[p, k]]`` for ``p = first + s``."""
    lanes = message.shape[1]
    for s in range(count):
        p = first + s
        row = message[s]
        for k in range(vertex.shape[1]):
            _add_scaled(row, weight[p, k], lattice[vertex[p, k]], lanes)


@pjit
def slice_into(vertex, weight, lattice, out):
    """``out[p] = sum_k weight[p, k] lattice[vertex[p, k]]``."""
    n = vertex.shape[0]
    for chunk in prange(chunks(n)):
        first, count = span(chunk, n)
        rows = out[first : first + count]
        rows[:] = 0.0
        _accumulate(rows, first, count, vertex, weight, lattice)


@jit
def _energies(message, unary_t, compat, first, count, energy):
    """``energy (C, S)``: the negative energy of the points ``first .. first+count`` (columns),
    from their messages ``(S, C')`` (rows)."""
    c = energy.shape[0]
    if compat.shape[0] == 0:  # Potts: message - unary
        for j in range(c):
            for s in range(count):
                energy[j, s] = message[s, j] - unary_t[j, first + s]
        return
    transposed = np.empty_like(energy)
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


@jit
def _running_max(top, row, count):
    for s in range(count):
        top[s] = max(top[s], row[s])


@jit
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


@jit
def _scale_and_sum(row, power, total, count):
    for s in range(count):
        row[s] *= power[s]
        total[s] += row[s]


@jit
def _softmax_columns(energy, total, count):
    """Softmax of each of the first ``count`` columns of ``energy (C, S)``, unnormalised in
    place; ``total (S,)`` receives the reciprocal of each column's sum."""
    c, lanes = energy.shape
    bits = np.empty((c, lanes), np.int32)
    top = np.empty(lanes, np.float32)
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


@pjit
def update(unary_t, vertex1, weight1, lattice1, vertex2, weight2, lattice2, compat, q, final):
    """One mean-field update, fused: slice both kernels, add the unary, softmax into ``q``.

    ``unary_t (C, N)`` (class-major); per kernel ``vertex (N, K) int32``, ``weight (N, K)``
    and the blurred ``lattice (M+1, C')`` (``K = 0`` for an absent kernel); ``compat (C, C)``
    the symmetrised compatibility, or ``(0, 0)`` for Potts (energy ``-unary + message``);
    ``q (N, C')``, whose padding channels ``C..C'`` are left as they are (zero); the last
    update passes ``final (C, N)`` to receive the marginals class-major instead (else
    ``(0, 0)``).

    Each work item takes ``CHUNK`` points: their messages are sliced as rows, then turned
    into class-major columns so that the softmax runs along the points (the 21 or so classes of
    a row are too few for the vectoriser).
    """
    c, n = unary_t.shape
    lanes = q.shape[1]
    for chunk in prange(chunks(n)):
        first, count = span(chunk, n)
        message = np.zeros((CHUNK, lanes), np.float32)
        energy = np.empty((c, CHUNK), np.float32)
        total = np.empty(CHUNK, np.float32)
        _accumulate(message, first, count, vertex1, weight1, lattice1)
        _accumulate(message, first, count, vertex2, weight2, lattice2)
        _energies(message, unary_t, compat, first, count, energy)
        _softmax_columns(energy, total, count)
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
