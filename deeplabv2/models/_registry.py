"""The registries a model family fills: builders by name (:func:`list_models`,
:func:`get_model`) and checkpoint mappings by architecture (how its weights are read).

A family's file registers itself (``@register_model`` on its builders,
:func:`register_mapping` for its checkpoint mapping, ``register_weights`` for its weights
entries); nothing here imports a family, so no import cycle can form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

from torch import nn

if TYPE_CHECKING:
    from ._mapping import CheckpointMapping

__all__ = [
    "get_mapping",
    "get_model",
    "list_mappings",
    "list_models",
    "register_mapping",
    "register_model",
]

_Builder = TypeVar("_Builder", bound=Callable[..., nn.Module])
_MODELS: dict[str, Callable[..., nn.Module]] = {}
_MAPPINGS: dict[str, CheckpointMapping] = {}


def _add(table: dict[str, Any], name: str, value: Any, what: str) -> None:
    if name in table:
        raise ValueError(f"{what} {name!r} is registered already")
    table[name] = value


def _get(table: dict[str, Any], name: str, what: str) -> Any:
    try:
        return table[name]
    except KeyError:
        raise ValueError(
            f"unknown {what} {name!r}; available: {', '.join(sorted(table))}"
        ) from None


def register_model(builder: _Builder) -> _Builder:
    """Register a builder function under its own name (a decorator).

    Raises:
        ValueError: a builder of that name is registered already.
    """
    _add(_MODELS, builder.__name__, builder, "a model builder")
    return builder


def list_models() -> list[str]:
    """Names of the registered model builders, sorted."""
    return sorted(_MODELS)


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name, e.g. ``get_model("deeplab_v2_resnet101")`` (a
    ValueError listing the names for an unknown one)."""
    return _get(_MODELS, name, "model")(**kwargs)


def register_mapping(mapping: CheckpointMapping) -> CheckpointMapping:
    """Register how the family ``mapping.architecture`` reads checkpoints (once per family)."""
    _add(_MAPPINGS, mapping.architecture, mapping, "a checkpoint mapping for")
    return mapping


def list_mappings() -> list[CheckpointMapping]:
    """Every registered checkpoint mapping, in registration order."""
    return list(_MAPPINGS.values())


def get_mapping(architecture: str) -> CheckpointMapping:
    """The checkpoint mapping of ``architecture`` (a builder name); a ValueError listing the
    known ones for another name."""
    return _get(_MAPPINGS, architecture, "architecture")
