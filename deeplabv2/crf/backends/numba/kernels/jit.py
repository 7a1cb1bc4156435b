"""The decorators and work-item size that the numba backend's kernels share."""

from __future__ import annotations

import numba

__all__ = ["CHUNK", "jit", "pjit", "prange"]

#: compiled once, then loaded from numba's cache next to the package; no bounds checks
jit = numba.njit(cache=True, nogil=True, boundscheck=False)
#: the same, for kernels whose ``prange`` loops run on numba's threads
pjit = numba.njit(cache=True, nogil=True, boundscheck=False, parallel=True)
prange = numba.prange

CHUNK = 256  # points per parallel work item of the loops over points
