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
"""

from __future__ import annotations

from .backends.registry import (
    Backend,
    auto_backend,
    backend_choices,
    backend_help,
    cpu_backends,
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


def __getattr__(name: str) -> tuple[str, ...]:
    """``BACKENDS`` and ``CPU_BACKENDS``, derived from the registry when they are read."""
    if name == "BACKENDS":
        return backend_choices()
    if name == "CPU_BACKENDS":
        return cpu_backends()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
