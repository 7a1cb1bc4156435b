"""Named pretrained weights: where they come from, what they predict, how they were evaluated.

Each entry is described once: those of the built-in model families in the data modules of
:mod:`.zoo` (``deeplabv2/weights/zoo/deeplab_*.py``, registered when this module is imported:
torch-free, so listing and looking up weights loads no model), another family's in its own file,
registered with :func:`register_weights`. An entry (:class:`~.entry.Weights`) holds its network
(``architecture``, a builder name) and ``tag``, its classes, its sources, its test protocol
(:class:`~deeplabv2.protocol.EvalProtocol`), its reported metrics with their source, its
training lineage and a runnable preprocessing transform (:meth:`Weights.transforms`). Full names
are ``"<architecture>.<tag>"`` (``"deeplab_v2_vgg16.voc12"``); a bare tag means the
ResNet-101's (``"voc12"`` = ``"deeplab_v2_resnet101.voc12"``).
"""

from __future__ import annotations

from typing import Optional

from . import zoo
from .entry import Weights

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_WEIGHTS",
    "Weights",
    "find_weights",
    "get_weights",
    "list_weights",
    "register_weights",
]

#: The network a bare weights name (no ``<architecture>.`` prefix) belongs to.
DEFAULT_ARCHITECTURE = "deeplab_v2_resnet101"


_REGISTRY: dict[str, Weights] = {}

#: The weights ``pretrained=True`` loads, by architecture (filled by :func:`register_weights`).
DEFAULT_WEIGHTS: dict[str, str] = {}


def register_weights(entry: Weights, *, default: bool = False) -> Weights:
    """Add ``entry`` to the registry (``default``: what ``pretrained=True`` loads for its
    architecture). The built-in families' entries come from :mod:`.zoo`; another family's file
    calls this for each of its weights (``docs/architecture.md``).

    Raises:
        ValueError: an entry of the same full name is registered already.
    """
    if entry.name in _REGISTRY:
        raise ValueError(f"weights {entry.name!r} are registered already")
    _REGISTRY[entry.name] = entry
    if default:
        DEFAULT_WEIGHTS[entry.architecture] = entry.tag
    return entry


for _entry, _default in zoo.entries():  # the built-in families' entries: data, no torch
    register_weights(_entry, default=_default)


def list_weights(architecture: Optional[str] = None) -> list[str]:
    """Full names (``<architecture>.<tag>``) of the registered weights, sorted; only those of
    ``architecture`` if given."""
    return sorted(
        name
        for name, entry in _REGISTRY.items()
        if architecture is None or entry.architecture == architecture
    )


def _full_name(name: str, architecture: Optional[str]) -> str:
    architecture = architecture or DEFAULT_ARCHITECTURE
    if name == "DEFAULT":
        name = DEFAULT_WEIGHTS.get(architecture, "")
    return name if name in _REGISTRY else f"{architecture}.{name}"


def find_weights(name: str, architecture: Optional[str] = None) -> Optional[Weights]:
    """The entry ``name`` (full, or a tag of ``architecture``), or None if there is none."""
    entry = _REGISTRY.get(_full_name(name, architecture))
    if entry is not None and architecture is not None and entry.architecture != architecture:
        raise ValueError(
            f"the weights {entry.name} are for {entry.architecture}, not {architecture}"
        )
    return entry


def get_weights(name: str, architecture: Optional[str] = None) -> Weights:
    """The registry entry ``name``: a full name, or a tag (``"voc12"``, ``"DEFAULT"``) of
    ``architecture`` (default: DeepLab v2 ResNet-101).

    Raises:
        ValueError: no such entry (the message lists them).
    """
    entry = find_weights(name, architecture)
    if entry is None:
        raise ValueError(
            f"unknown weights {name!r}"
            + (f" for {architecture}" if architecture else "")
            + f"; available: {', '.join(list_weights(architecture))}, or a local file path, or "
            "'hf-hub:<repo_id>[/<filename>]'"
        )
    return entry
