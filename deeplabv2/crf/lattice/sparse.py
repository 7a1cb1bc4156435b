"""The sparse CSR matrices of the lattice (splat, blur, slice): building, scaling and the
sparse-dense product, which runs as MKL's ``addmm`` on the CPU and as the kernel of
:mod:`.cuda_spmm` on CUDA (cuSPARSE where that kernel is unavailable)."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from . import cuda_spmm

__all__ = ["csr", "csr_cols", "csr_rows", "csr_tensor", "matmul", "scale_csr"]


def matmul(matrix: Tensor, dense: Tensor) -> Tensor:
    """Sparse CSR ``(R, K) float32`` ``matrix @ dense`` for ``(K, C) float32`` row-major values:
    ``(R, C) float32``."""
    if dense.device.type == "cpu":
        # On the CPU, ``addmm`` into a fresh buffer skips the zero-fill and copy that ``mm`` does
        # around the MKL call (2-3x faster for these shapes); beta=0 ignores the buffer's content.
        out = torch.empty(matrix.shape[0], dense.shape[1], dtype=dense.dtype)
        return torch.addmm(out, matrix, dense, beta=0, out=out)
    if dense.device.type == "cuda":
        product = cuda_spmm.spmm(matrix, dense)
        if product is not None:
            return product
    return matrix @ dense


def csr_rows(matrix: Tensor) -> Tensor:
    """The row of each stored entry of a CSR matrix: ``(nnz,) int64``."""
    crow = matrix.crow_indices().to(torch.int64)
    rows = torch.arange(matrix.shape[0], device=crow.device)
    return torch.repeat_interleave(rows, crow.diff(), output_size=matrix.values().numel())


def csr_cols(matrix: Tensor) -> Tensor:
    """The column of each stored entry of a CSR matrix: ``(nnz,) int64``."""
    return matrix.col_indices().to(torch.int64)


def scale_csr(matrix: Tensor, factors: Tensor) -> Tensor:
    """The CSR matrix with each stored value multiplied by the matching entry of ``factors``
    (``(nnz,)``)."""
    return csr_tensor(
        matrix.crow_indices(), matrix.col_indices(), matrix.values() * factors, matrix.shape
    )


def csr_tensor(crow: Tensor, cols: Tensor, values: Tensor, shape: tuple[int, ...]) -> Tensor:
    """``torch.sparse_csr_tensor`` without invariant checks or the "beta" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        return torch.sparse_csr_tensor(crow, cols, values, shape, check_invariants=False)


def csr(row_counts: Tensor, cols: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """A sparse CSR matrix from the entry count of each row (``(R,) int64``) and the row-major
    entries' columns (``(nnz,) int64``) and values (``(nnz,) float32``)."""
    crow = torch.zeros(shape[0] + 1, dtype=torch.int64, device=cols.device)
    crow[1:] = torch.cumsum(row_counts, dim=0)
    # int32 indices when they fit: MKL's sparse kernels take them without a per-call conversion.
    index_dtype = torch.int32 if max(shape[0], shape[1], cols.numel()) < 2**31 else torch.int64
    return csr_tensor(crow.to(index_dtype), cols.to(index_dtype), values, shape)
