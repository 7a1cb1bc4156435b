"""numba kernels of the compiled CRF backend (imported only when numba is installed).

Every kernel is a plain loop over points or lattice vertices; those that run in parallel split
their outer loop over numba's threads (``backends.numba.threads`` sets how many). Arrays are
C-contiguous ``float32`` values and ``int32``/``int64`` indices produced by
:mod:`..lattice` and :mod:`deeplabv2.crf.backends.numba`; bounds are not checked at run time, so
callers must pass arrays of the documented shapes.

* :mod:`.construction`: building the lattice (simplices, keys, vertices, neighbours);
* :mod:`.inference`: splat, blur, slice and the fused mean-field update.
"""

from . import construction, inference
from .construction import *  # noqa: F403
from .inference import *  # noqa: F403

#: the kernels that each module names in its ``__all__``
__all__ = construction.__all__ + inference.__all__
