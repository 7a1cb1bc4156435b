"""The permutohedral lattice (Adams, Baek & Davis 2010) that filters the CRF's Gaussian kernels.

* :mod:`.permutohedral`: :class:`PermutohedralLattice`, batched, on any device, differentiable;
  the ``torch`` backend's lattice;
* :mod:`.geometry`: the feature scaling and vertex-key layout, shared with the ``numba``
  backend's compiled lattice;
* :mod:`.sparse`: its CSR matrices and sparse-dense products;
* :mod:`.cuda_spmm`: those products on CUDA, as one kernel compiled at run time by NVRTC.
"""

from .permutohedral import PermutohedralLattice

__all__ = ["PermutohedralLattice"]
