"""The CRF backends, registered in :mod:`.registry` in the order ``DenseCRF`` and the CLI list
them:

* :mod:`.torch`: the native permutohedral lattice in PyTorch (any device, differentiable);
* :mod:`.numba`: the same lattice compiled for the CPU (``deeplabv2[fast]``);
* :mod:`.pydensecrf`: the reference C++ implementation (``deeplabv2[crf]``).

Each module defines its backend's :class:`~.registry.Backend` record as ``BACKEND``. Another
backend is added with :func:`deeplabv2.crf.register_backend` (``docs/crf.md``, "Adding a CRF
backend").
"""

from . import numba, pydensecrf, torch
from .registry import register_backend

for _module in (torch, numba, pydensecrf):
    register_backend(_module.BACKEND)
