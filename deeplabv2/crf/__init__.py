"""The fully connected CRF of DeepLab v2 (Krähenbühl & Koltun 2011).

``DenseCRF`` refines per-pixel class probabilities with mean-field inference. Its backends are
registered in :mod:`.backends`: ``torch`` is a native, batched permutohedral lattice (CPU or GPU,
differentiable), ``numba`` the same lattice compiled for the CPU, ``pydensecrf`` the C++
reference. ``BACKENDS`` (the names ``DenseCRF`` and the CLI take, ``"auto"`` first) and
``CPU_BACKENDS`` (what ``"auto"`` tries on the CPU before ``torch``) are read from the registry
each time, so they include backends registered later.

Pseudo-labels for weakly supervised segmentation (``deeplabv2 crf``): :func:`pseudo_label` and
:func:`pseudo_label_files` refine CAMs or class scores (:func:`load_scores` reads IRN's, PSA's
and our own layouts) with a :class:`PseudoLabelRecipe`; :data:`PSEUDO_LABEL_RECIPES` holds the
published ones (``"psa"``, ``"irn"``), each with its source.

The names are imported when first read (``deeplabv2._lazy``): listing the backends, presets and
recipes (``deeplabv2 crf --help``) loads no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .backends.registry import (
        Backend,
        auto_backend,
        backend_help,
        get_backend,
        list_backends,
        register_backend,
        unregister_backend,
    )
    from .dense_crf import DenseCRF
    from .lattice import PermutohedralLattice
    from .params import PRESETS, PSEUDO_LABEL_RECIPES, CRFParams, PseudoLabelRecipe
    from .pseudo import PseudoLabel, pseudo_label, pseudo_labels_batch
    from .pseudo_files import FileResult, pseudo_label_files
    from .score_maps import Scores, find_scores, load_scores

__all__ = [
    "BACKENDS",
    "CPU_BACKENDS",
    "Backend",
    "CRFParams",
    "DenseCRF",
    "FileResult",
    "PRESETS",
    "PSEUDO_LABEL_RECIPES",
    "PermutohedralLattice",
    "PseudoLabel",
    "PseudoLabelRecipe",
    "Scores",
    "auto_backend",
    "backend_help",
    "find_scores",
    "get_backend",
    "list_backends",
    "load_scores",
    "pseudo_label",
    "pseudo_label_files",
    "pseudo_labels_batch",
    "register_backend",
    "unregister_backend",
]

_lazy_getattr, _lazy_dir = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            (
                "Backend",
                "auto_backend",
                "backend_choices",
                "backend_help",
                "cpu_backends",
                "get_backend",
                "list_backends",
                "register_backend",
                "unregister_backend",
            ),
            ".backends.registry",
        ),
        **dict.fromkeys(("DenseCRF",), ".dense_crf"),
        **dict.fromkeys(("PermutohedralLattice",), ".lattice"),
        **dict.fromkeys(
            ("PRESETS", "PSEUDO_LABEL_RECIPES", "CRFParams", "PseudoLabelRecipe"), ".params"
        ),
        **dict.fromkeys(("PseudoLabel", "pseudo_label", "pseudo_labels_batch"), ".pseudo"),
        **dict.fromkeys(("FileResult", "pseudo_label_files"), ".pseudo_files"),
        **dict.fromkeys(("Scores", "find_scores", "load_scores"), ".score_maps"),
    },
)


def __getattr__(name: str) -> Any:
    """``BACKENDS`` and ``CPU_BACKENDS``, derived from the registry when they are read; the other
    names imported on first read."""
    if name == "BACKENDS":
        from .backends.registry import backend_choices

        return backend_choices()
    if name == "CPU_BACKENDS":
        from .backends.registry import cpu_backends

        return cpu_backends()
    return _lazy_getattr(name)


def __dir__() -> list[str]:
    return sorted({*_lazy_dir(), "BACKENDS", "CPU_BACKENDS"})
