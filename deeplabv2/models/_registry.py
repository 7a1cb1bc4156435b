"""The registries a model family fills, and what it registers: builders by name
(:func:`list_models`, :func:`get_model`) and checkpoint mappings by architecture
(:class:`CheckpointMapping`: how its weights are read; the generic code that applies one is
:mod:`deeplabv2.models._mapping`).

A family's file registers itself (``@register_model`` on its builders,
:func:`register_mapping` for its checkpoint mapping, ``register_weights`` for its weights
entries); this module imports nothing else of the package's models, so no import cycle can
form through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TypeVar

import torch
from torch import nn

from ..protocol import EvalProtocol

__all__ = [
    "CheckpointMapping",
    "Dialect",
    "LayerTable",
    "get_mapping",
    "get_model",
    "list_mappings",
    "list_models",
    "register_mapping",
    "register_model",
]

# (module path, kind) of a Caffe layer: kind "conv" (weight, optional bias), "bn" (Caffe
# BatchNorm: mean*s, var*s, s) or "scale" (Caffe Scale: BatchNorm weight, bias).
LayerTable = dict[str, tuple[str, str]]


@dataclass(frozen=True)
class Dialect:
    """Another code base's state-dict keys for a family.

    Attributes:
        name: e.g. ``"port"`` (kazuto1011/deeplab-pytorch) or ``"torchvision"``.
        protocol: how weights in this dialect were evaluated (None: not a segmentation model).
        matches: whether a state dict is in this dialect.
        translate: ``(tensors, source, lenient) -> state dict`` in our keys; ``lenient`` drops
            entries that map to nothing (a backbone-only load) instead of failing.
        description: the code base, in a few words, for messages (``"AdaptSegNet's
            ResNetMulti"``).
        model_args: ``tensors -> constructor arguments`` of the network that computes what
            that code base computes with such a file (e.g. AdaptSegNet's two-branch heads);
            ``{}`` for the family's plain network.
        init_head: initialises a new head (weights without one, or another class count) as
            that code base's training does; None: the family's own initialisation.
    """

    name: str
    protocol: Optional[EvalProtocol]
    matches: Callable[[Mapping[str, torch.Tensor]], bool]
    translate: Callable[[Mapping[str, torch.Tensor], str, bool], dict[str, torch.Tensor]]
    description: str = ""
    model_args: Callable[[Mapping[str, torch.Tensor]], dict[str, Any]] = field(
        default=lambda tensors: {}
    )
    init_head: Optional[Callable[[nn.Module], None]] = None


@dataclass(frozen=True)
class CheckpointMapping:
    """How one model family reads checkpoints.

    Attributes:
        architecture: the builder's name.
        backbone: Caffe layer -> ``(module path, kind)`` for everything but the head.
        find_head: Caffe layer names -> the table of the head's layers (raises
            :class:`WeightsMismatchError` if there is no complete head).
        is_head: whether a state-dict key belongs to the class-specific head.
        head_weight: the state-dict key whose first dimension is the class count.
        dialects: other code bases' key names for this family (the PyTorch port's,
            torchvision's) and how to translate them.
        caffe_signature: Caffe layers whose presence identifies the family in a file.
        release_protocol: how the Caffe release evaluated this family.
    """

    architecture: str
    backbone: LayerTable
    find_head: Callable[[Iterable[str]], LayerTable]
    is_head: Callable[[str], bool]
    head_weight: str
    dialects: tuple[Dialect, ...]
    caffe_signature: tuple[str, ...]
    release_protocol: EvalProtocol


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
