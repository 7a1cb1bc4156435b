"""The fully connected CRF of DeepLab v2 (Krähenbühl & Koltun 2011).

``DenseCRF`` refines per-pixel class probabilities with mean-field inference; the ``torch``
backend (default) is a native, batched permutohedral lattice, ``pydensecrf`` the C++ reference.
"""

from .dense_crf import BACKENDS, DenseCRF
from .lattice import PermutohedralLattice
from .params import PRESETS, CRFParams

__all__ = ["BACKENDS", "CRFParams", "DenseCRF", "PRESETS", "PermutohedralLattice"]
