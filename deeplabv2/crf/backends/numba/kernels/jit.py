"""The decorators, work-item size and chunk set-up that the numba backend's kernels share."""

from __future__ import annotations

import numba

__all__ = ["CHUNK", "chunks", "inline", "jit", "pjit", "prange", "span"]

#: compiled once, then loaded from numba's cache next to the package; no bounds checks
jit = numba.njit(cache=True, nogil=True, boundscheck=False)
#: the same, for kernels whose ``prange`` loops run on numba's threads
pjit = numba.njit(cache=True, nogil=True, boundscheck=False, parallel=True)
#: the same, for small helpers of the hot loops: inlined into their callers (numba IR), so that
#: a loop reads as before it was factored out
inline = numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
prange = numba.prange

CHUNK = 256  # points per parallel work item of the loops over points


@inline
def chunks(n):
    """How many work items of ``CHUNK`` points cover ``n`` points: ``for chunk in
    prange(chunks(n))``."""
    return (n + CHUNK - 1) // CHUNK


@inline
def span(chunk, n):
    """The points of work item ``chunk`` of ``n`` points: the first and how many (``CHUNK``,
    fewer in the last)."""
    first = chunk * CHUNK
    return first, min(n, first + CHUNK) - first
