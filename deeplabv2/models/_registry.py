"""Name -> builder registry behind :func:`list_models` and :func:`get_model`."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from torch import nn

__all__ = ["get_model", "list_models", "register_model"]

_Builder = TypeVar("_Builder", bound=Callable[..., nn.Module])
_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(builder: _Builder) -> _Builder:
    """Register a builder function under its own name."""
    _MODELS[builder.__name__] = builder
    return builder


def list_models() -> list[str]:
    """Names of the registered model builders, sorted."""
    return sorted(_MODELS)


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name, e.g. ``get_model("deeplab_v2_resnet101")``."""
    try:
        builder = _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None
    return builder(**kwargs)
