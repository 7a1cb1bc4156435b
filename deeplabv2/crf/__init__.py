"""The fully connected CRF of DeepLab v2 (Krähenbühl & Koltun 2011).

``DenseCRF`` refines per-pixel class probabilities with mean-field inference; the ``torch``
backend is a native, batched permutohedral lattice (CPU or GPU, differentiable), ``numba`` the
same lattice compiled for the CPU, ``pydensecrf`` the C++ reference.
"""

from .dense_crf import BACKENDS, CPU_BACKENDS, DenseCRF
from .lattice import PermutohedralLattice
from .params import PRESETS, CRFParams

__all__ = ["BACKENDS", "CPU_BACKENDS", "CRFParams", "DenseCRF", "PRESETS", "PermutohedralLattice"]
