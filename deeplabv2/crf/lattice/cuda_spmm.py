"""The lattice's sparse products on CUDA as one small kernel compiled at run time by NVRTC.

Splat, each blur pass and slice are CSR matrices with a handful of entries per row, applied to
``(rows, C)`` row-major values with ``C`` around 21 (or ``B * 21`` for the smoothness lattice
shared by a batch). cuSPARSE's general SpMM is built for other shapes; one thread per output
element, the threads of a row reading consecutive channels of the same gathered rows, streams
the values faster (``benchmarks/crf_phases.py`` compares the two).

The kernel is compiled by ``torch.cuda._compile_kernel`` (NVRTC, which PyTorch's CUDA wheels
install: no local compiler) and launched through the driver's ``cuLaunchKernel`` with its
arguments packed once per call (PyTorch's generic launcher reloads the driver library on every
call, which made small batches slower than cuSPARSE). Where any of this is missing or fails,
:func:`spmm` returns None and the lattice uses cuSPARSE, with the same results to float32
rounding.
"""

from __future__ import annotations

import ctypes
import sys
import warnings
from functools import cache
from typing import Optional

import torch
from torch import Tensor

__all__ = ["spmm"]

_SOURCE = r"""
extern "C" __global__ void csr_mm(const int* __restrict__ crow, const int* __restrict__ col,
                                  const float* __restrict__ val, const float* __restrict__ x,
                                  float* __restrict__ y, int rows, int channels) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;  // rows * channels < 2^31
    if (i >= rows * channels) return;
    int r = i / channels;
    const float* xc = x + (i - r * channels);
    float acc = 0.0f;
    int end = crow[r + 1];
    #pragma unroll 4
    for (int e = crow[r]; e < end; ++e) {
        acc += val[e] * xc[(long long)col[e] * channels];
    }
    y[i] = acc;
}
"""

_BLOCK = 256


def _params(pointers: list[int], ints: list[int]) -> tuple[ctypes.Array, list]:
    """``cuLaunchKernel``'s ``kernelParams``: an array of the addresses of each argument (device
    pointers, then C ints), and the argument objects, which must outlive the launch."""
    values = [ctypes.c_void_p(p) for p in pointers] + [ctypes.c_int(v) for v in ints]
    return (ctypes.c_void_p * len(values))(*(ctypes.addressof(v) for v in values)), values


class _Kernel:
    """The compiled ``csr_mm`` of one GPU and a lean launcher for it."""

    def __init__(self, device: int) -> None:
        with torch.cuda.device(device):
            self._func = torch.cuda._compile_kernel(_SOURCE, "csr_mm").func
        driver = ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")
        self._launch = driver.cuLaunchKernel
        self._launch.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p] * 3
        self._launch.restype = ctypes.c_int
        self._device = device

    def __call__(self, pointers: list[int], rows: int, channels: int) -> None:
        params, keep = _params(pointers, [rows, channels])
        stream = torch.cuda.current_stream(self._device).cuda_stream
        blocks = (rows * channels + _BLOCK - 1) // _BLOCK
        error = self._launch(self._func, blocks, 1, 1, _BLOCK, 1, 1, 0, stream, params, None)
        if error:
            raise RuntimeError(f"launching the CRF's CUDA kernel failed: CUDA error {error}")


@cache
def _kernel(device: int) -> Optional[_Kernel]:
    """The kernel of one GPU, or None (with a warning) where it cannot be built."""
    if torch.version.hip:
        return None  # the launcher speaks CUDA's driver API
    try:
        return _Kernel(device)
    except Exception as exc:  # no NVRTC, an old torch, a driver too old for the code, ...
        warnings.warn(
            f"the CRF's CUDA kernel could not be compiled ({type(exc).__name__}: {exc}); "
            "using cuSPARSE instead (same results, slower)",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def spmm(matrix: Tensor, dense: Tensor) -> Optional[Tensor]:
    """``matrix @ dense`` for a CUDA CSR ``(R, K) float32`` matrix with int32 indices and
    ``(K, C) float32`` values: ``(R, C) float32``, or None where the kernel is unavailable."""
    if matrix.crow_indices().dtype != torch.int32 or matrix.shape[0] * dense.shape[1] >= 2**31:
        return None
    kernel = _kernel(dense.device.index)
    if kernel is None:
        return None
    dense = dense.contiguous()
    rows, channels = matrix.shape[0], dense.shape[1]
    out = torch.empty(rows, channels, dtype=dense.dtype, device=dense.device)
    if out.numel():
        tensors = (matrix.crow_indices(), matrix.col_indices(), matrix.values(), dense, out)
        kernel([t.data_ptr() for t in tensors], rows, channels)
    return out
