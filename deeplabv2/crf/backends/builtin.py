"""The records of the built-in CRF backends (``torch``, ``numba``, ``pydensecrf``), which import
none of them: each function is imported from its backend's module on its first call, so that
listing the backends (``deeplabv2 crf --help``, ``--crf-backend``'s choices) loads no torch.
``backends/__init__.py`` registers them; each backend's module exposes its record as
``BACKEND``."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from .registry import Backend

__all__ = ["BUILTIN", "NUMBA", "PYDENSECRF", "TORCH"]


def _deferred(module: str, name: str) -> Callable[..., Any]:
    """The function ``name`` of the backend module ``module`` (``"torch"`` is
    ``deeplabv2.crf.backends.torch``), imported when first called."""

    def call(*args: Any, **kwargs: Any) -> Any:
        function = getattr(importlib.import_module(f"{__package__}.{module}"), name)
        return function(*args, **kwargs)

    call.__name__ = name
    call.__qualname__ = f"{module}.{name}"
    return call


TORCH = Backend(
    name="torch",
    mean_field=_deferred("torch", "mean_field"),
    ragged=_deferred("torch", "mean_field_ragged"),
    devices=None,
    differentiable=True,
    priority=10,
    summary="native permutohedral lattice in PyTorch; any device, batched, differentiable",
)
NUMBA = Backend(
    name="numba",
    mean_field=_deferred("numba", "mean_field"),
    ragged=_deferred("numba", "mean_field_ragged"),
    require=_deferred("numba", "load_kernels"),
    devices=("cpu",),
    priority=30,
    summary="the native lattice compiled for the CPU (pip install 'deeplabv2[fast]')",
)
PYDENSECRF = Backend(
    name="pydensecrf",
    mean_field=_deferred("pydensecrf", "mean_field"),
    require=_deferred("pydensecrf", "require"),
    devices=("cpu",),
    priority=20,
    summary="the reference C++ implementation (pip install 'deeplabv2[crf]'); CPU",
)

#: In the order ``DenseCRF`` and the CLI list them.
BUILTIN = (TORCH, NUMBA, PYDENSECRF)
