"""The CRF backends, registered in :mod:`.registry` in the order ``DenseCRF`` and the CLI list
them:

* :mod:`.torch`: the native permutohedral lattice in PyTorch (any device, differentiable);
* :mod:`.numba`: the same lattice compiled for the CPU (``deeplabv2[fast]``);
* :mod:`.pydensecrf`: the reference C++ implementation (``deeplabv2[crf]``).

Their :class:`~.registry.Backend` records are in :mod:`.builtin`, which imports none of them
(each function is imported on its first call: listing the backends loads no torch); each
module exposes its record as ``BACKEND``. Another
backend is added with :func:`deeplabv2.crf.register_backend` (``docs/crf.md``, "Adding a CRF
backend").
"""

from .builtin import BUILTIN
from .registry import register_backend

for _backend in BUILTIN:
    register_backend(_backend)
