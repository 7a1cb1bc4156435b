"""Building a network and filling it with pretrained weights, for every model family.

A family's builders (``deeplab_v2_resnet101`` ...) only gather arguments and call :func:`build`,
which resolves the weights (:mod:`deeplabv2.weights`), maps them with the family's
:class:`~deeplabv2.models._mapping.CheckpointMapping`, checks them strictly and records what
was loaded in ``model.class_names`` and ``model.pretrained_info``
(:class:`~deeplabv2.protocol.PretrainedInfo`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union

import torch
from torch import nn

from ..errors import WeightsFormatError
from ..protocol import EvalProtocol, PretrainedInfo
from ..weights import (
    Checkpoint,
    Weights,
    discard,
    find_weights,
    read_checkpoint,
    resolve_weights,
)
from ._mapping import (
    CheckpointMapping,
    check_family,
    check_state_dict,
    choose_dialect,
    detect_architecture,
    to_state_dict,
)
from ._registry import Dialect, get_model

if TYPE_CHECKING:
    from ._base import DeepLabBase

Model = TypeVar("Model", bound="DeepLabBase")

__all__ = ["Loaded", "Pretrained", "build", "load_model", "load_state"]

#: What ``pretrained=`` of a builder takes (see :func:`build`).
Pretrained = Union[None, bool, str, os.PathLike, Weights, Checkpoint]


def _open(
    pretrained: Union[bool, str, os.PathLike, Weights, Checkpoint],
    architecture: Optional[str],
    cache_dir: Any,
    local_files_only: bool,
    progress: bool,
) -> tuple[Checkpoint, Optional[Weights]]:
    """Resolve and read weights; a cached file that turns out corrupt is removed."""
    if isinstance(pretrained, Checkpoint):
        return pretrained, None
    path, entry, cached = resolve_weights(
        pretrained,
        architecture,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
    )
    try:
        return read_checkpoint(path), entry
    except WeightsFormatError as error:
        if not cached:
            raise
        discard(path)
        raise type(error)(
            f"{error} (the cached copy was removed: load again to download it anew)"
        ) from None


def _class_names(
    checkpoint: Checkpoint, entry: Optional[Weights], num_classes: Optional[int]
) -> tuple:
    if entry is not None:
        return tuple(entry.categories)
    names = checkpoint.metadata.get("classes")
    if not names:
        return ()
    try:
        parsed = json.loads(names)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, list) or len(parsed) != num_classes:
        raise WeightsFormatError(
            f"{checkpoint.source}: its metadata names {len(parsed or [])} classes for a head of "
            f"{num_classes}: the header is corrupt"
        )
    return tuple(str(n) for n in parsed)


def _header_json(checkpoint: Checkpoint, key: str, what: str) -> Any:
    """A JSON value of the file's header, or None; a malformed one is a corrupt header."""
    recorded = checkpoint.metadata.get(key)
    if not recorded:
        return None
    try:
        return json.loads(recorded)
    except json.JSONDecodeError as error:
        raise WeightsFormatError(
            f"{checkpoint.source}: its metadata holds an invalid {what} ({error})"
        ) from None


def _protocol(
    checkpoint: Checkpoint,
    entry: Optional[Weights],
    mapping: CheckpointMapping,
    dialect: Optional[Dialect],
) -> Optional[EvalProtocol]:
    """How the weights were evaluated: the registry's word, the file's, or what its format
    says (Caffe files come from the release; a dialect's files from its code base)."""
    if entry is not None:
        return entry.protocol
    recorded = _header_json(checkpoint, "protocol", "test protocol")
    if recorded is not None:
        try:
            return EvalProtocol.from_dict(recorded)
        except (TypeError, ValueError) as error:
            raise WeightsFormatError(
                f"{checkpoint.source}: its metadata holds an invalid test protocol ({error})"
            ) from None
    if checkpoint.format == "caffemodel":
        return mapping.release_protocol
    return dialect.protocol if dialect is not None else None


@dataclass(frozen=True)
class Loaded:
    """Weights read and mapped for one family.

    Attributes:
        state: the state dict in the family's keys.
        num_classes: the head's class count, or None for a backbone.
        info: what the weights are (``info.has_head`` is ``num_classes is not None``).
        model_args: the network's constructor arguments recorded in the file (e.g. ASPP rates
            of a model saved with other rates than its builder's) or implied by its dialect;
            ``{}`` when none.
        dialect: the dialect the state dict was read in (None: ours, or a Caffe file).
    """

    state: dict[str, torch.Tensor]
    num_classes: Optional[int]
    info: PretrainedInfo
    model_args: dict[str, Any]
    dialect: Optional[Dialect] = None


def load_state(
    mapping: CheckpointMapping,
    pretrained: Union[bool, str, os.PathLike, Weights, Checkpoint],
    *,
    new_head: bool = False,
    backbone_only: bool = False,
    dialect: Optional[str] = None,
    cache_dir: Any = None,
    local_files_only: bool = False,
    progress: bool = True,
) -> Loaded:
    """Resolve, read and map weights for ``mapping``'s family; ``dialect`` names the code
    base whose key names (and computation) a state dict follows (default: the registry
    entry's, else the first that matches, :func:`~deeplabv2.models._mapping.choose_dialect`)."""
    checkpoint, entry = _open(
        pretrained, mapping.architecture, cache_dir, local_files_only, progress
    )
    check_family(mapping, checkpoint)
    chosen = choose_dialect(
        mapping, checkpoint, dialect or (entry.dialect if entry is not None else None)
    )
    state, num_classes = to_state_dict(
        mapping,
        checkpoint,
        backbone_only=backbone_only or (entry is not None and entry.backbone_only),
        new_head=new_head,
        dialect=chosen,
    )
    has_head = num_classes is not None
    model_args = _header_json(checkpoint, "model_args", "network configuration") or {}
    if not isinstance(model_args, dict):
        raise WeightsFormatError(
            f"{checkpoint.source}: its metadata holds an invalid network configuration "
            f"(expected a JSON object, got {type(model_args).__name__})"
        )
    if chosen is not None:  # the network that the file's code base builds
        model_args = {**chosen.model_args(checkpoint.tensors), **model_args}
    if entry is not None:  # the registry's word first
        model_args = {**model_args, **entry.model_args}
    info = PretrainedInfo(
        name=entry.name if entry is not None else None,
        source=checkpoint.metadata.get("source") or checkpoint.source,
        path=checkpoint.path,
        classes=_class_names(checkpoint, entry, num_classes) if has_head else (),
        has_head=has_head,
        protocol=_protocol(checkpoint, entry, mapping, chosen) if has_head else None,
        lineage=_lineage(checkpoint, entry),
        warning=entry.warning if entry is not None else checkpoint.metadata.get("warning"),
    )
    return Loaded(state, num_classes, info, model_args, chosen)


def _lineage(checkpoint: Checkpoint, entry: Optional[Weights]) -> tuple[str, ...]:
    if entry is not None:
        return entry.lineage
    recorded = _header_json(checkpoint, "lineage", "lineage")
    return tuple(str(stage) for stage in recorded) if isinstance(recorded, list) else ()


def _check_complete(
    mapping: CheckpointMapping,
    make: Callable[[int], nn.Module],
    loaded: Loaded,
) -> None:
    """The file must be complete in itself (a partial head is refused even if it is replaced)."""
    with torch.device("meta"):
        reference = make(loaded.num_classes or 1).state_dict()
    expected = {k: v.shape for k, v in reference.items()}
    if loaded.num_classes is None:
        expected = {k: v for k, v in expected.items() if not mapping.is_head(k)}
        target = f"{mapping.architecture}'s layers outside the head"
    else:
        target = f"{mapping.architecture} with {loaded.num_classes} classes"
    check_state_dict(loaded.state, expected, _loaded_file(loaded.info), target)


def _loaded_file(info: PretrainedInfo) -> str:
    """The file that was read, for messages (not the file it was once converted from)."""
    return info.path or info.source


def _fit_head(mapping: CheckpointMapping, loaded: Loaded, num_classes: Optional[int]) -> Loaded:
    """Keep the weights' head, or drop it (a warning) for a new head of ``num_classes``."""
    what = loaded.info.name or loaded.info.source
    if loaded.num_classes is None and num_classes is None:
        warnings.warn(
            f"the weights {what} have no head (a backbone initialisation): the head "
            "(21 classes) is initialised randomly; pass num_classes= to choose its size",
            stacklevel=4,
        )
    if loaded.num_classes is None or num_classes in (None, loaded.num_classes):
        return loaded
    warnings.warn(
        f"the weights {what} have {loaded.num_classes} classes but num_classes={num_classes}: "
        "everything but the head is loaded and the head is initialised randomly",
        stacklevel=4,
    )
    state = {k: v for k, v in loaded.state.items() if not mapping.is_head(k)}
    info = replace(loaded.info, classes=(), has_head=False, protocol=None)
    return replace(loaded, state=state, num_classes=None, info=info)


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists), to compare recorded arguments."""
    return json.loads(json.dumps(value))


def build(
    mapping: CheckpointMapping,
    model_class: Callable[..., Model],
    pretrained: Pretrained,
    num_classes: Optional[int],
    *,
    fixed: Optional[Mapping[str, Any]] = None,
    dialect: Optional[str] = None,
    cache_dir: Any = None,
    local_files_only: bool = False,
    progress: bool = True,
    **model_args: Any,
) -> Model:
    """Build ``model_class(num_classes=..., **fixed, **model_args)`` and load ``pretrained``
    into it, strictly: what every builder of every family calls.

    Args:
        mapping: the family's checkpoint mapping.
        model_class: the family's network class.
        pretrained: None/False (random initialisation, training mode), True (the registry's
            default for the family), a registry name or entry (a
            :class:`~deeplabv2.weights.Weights` of the family, e.g.
            ``deeplabv2.weights.get_weights("voc12")``; another family's is a ValueError naming
            both), a file, ``hf-hub:...``, or a :class:`~deeplabv2.weights.Checkpoint` already
            read.
        num_classes: the head's classes; default: the weights' (21 without weights). Another
            count than the weights' keeps all but the head (a warning); a backbone-only file
            without it gets a random head of 21 classes (a warning).
        fixed: the arguments that define the builder (e.g. ResNet-101's ``blocks``); passing
            one of them again is refused.
        dialect: the code base a state dict comes from, when its keys do not say it (e.g.
            ``"adaptsegnet"`` or ``"advent"`` for the UDA works' ``ResNetMulti``: the same keys,
            different computations); see docs/uda.md. A name that does not fit the file is
            refused.
        cache_dir, local_files_only, progress: where and how weights are fetched.
        model_args: the class's other arguments (e.g. ``rates``); default: what the weights'
            file records, else the class's defaults.

    Returns:
        The model; with weights in eval mode, ``class_names`` and ``pretrained_info`` set.
    """
    fixed = dict(fixed or {})
    # a value the builder fixes may be passed again unchanged (a file's recorded arguments)
    same = {
        k for k in fixed.keys() & model_args.keys() if _plain(model_args[k]) == _plain(fixed[k])
    }
    model_args = {k: v for k, v in model_args.items() if k not in same}
    clash = sorted(fixed.keys() & model_args.keys())
    if clash:
        raise ValueError(
            f"{mapping.architecture} fixes {', '.join(f'{k}={fixed[k]!r}' for k in clash)}; "
            f"build {getattr(model_class, '__name__', 'the class')} directly for other values"
        )
    if pretrained is None or pretrained is False:
        if dialect is not None:
            raise ValueError(f"dialect={dialect!r} applies to weights: pass pretrained= too")
        return model_class(num_classes=21 if num_classes is None else num_classes, **fixed,
                           **model_args)  # fmt: skip
    loaded = load_state(
        mapping,
        pretrained,
        new_head=num_classes is not None,
        dialect=dialect,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
    )
    recorded = {k: v for k, v in loaded.model_args.items() if k not in fixed}

    def make(n: int, **args: Any) -> Model:
        return model_class(num_classes=n, **fixed, **args)

    # the file must be complete for the network it records; what the caller adds (e.g. an
    # auxiliary head, aux_head=True) is new, initialised as built
    _check_complete(mapping, lambda n: make(n, **recorded), loaded)
    loaded = _fit_head(mapping, loaded, num_classes)
    model = make(num_classes or loaded.num_classes or 21, **{**recorded, **model_args})
    if loaded.dialect is not None and loaded.dialect.init_head is not None:
        loaded.dialect.init_head(model)  # new heads as that code base initialises them
    result = model.load_state_dict(loaded.state, strict=False)  # the heads it lacks stay new
    if result.unexpected_keys:
        raise ValueError(
            f"{_loaded_file(loaded.info)} has entries the network built with "
            f"{model_args} lacks: {', '.join(sorted(result.unexpected_keys)[:4])}"
        )
    model.class_names = loaded.info.classes
    model.pretrained_info = loaded.info
    return model.eval()


def load_model(
    weights: Union[bool, str, os.PathLike, Weights],
    model: Optional[str] = None,
    **kwargs: Any,
) -> nn.Module:
    """The network that ``weights`` are for, with them loaded.

    The architecture comes from ``model`` if given, else from the registry entry (a
    :class:`~deeplabv2.weights.Weights`, or a full name such as ``"deeplab_v2_vgg16.voc12"``;
    a bare tag means ResNet-101's), else from the file (its metadata, or its layer names /
    keys). ``kwargs`` go to the builder (``num_classes``, ``cache_dir``, ``local_files_only``,
    ``progress``).

    Raises:
        WeightsMismatchError: the file fits no network (or several): pass ``model``.
        ValueError: ``model`` is not the network of the registry entry or name.
    """
    if model is not None:
        return get_model(model, pretrained=weights, **kwargs)
    if isinstance(weights, Weights):
        return get_model(weights.architecture, pretrained=weights, **kwargs)
    spec = os.fspath(weights) if isinstance(weights, os.PathLike) else weights
    if isinstance(spec, str) and not os.path.exists(spec) and not spec.startswith("hf-hub:"):
        entry = find_weights(spec)
        if entry is not None:
            return get_model(entry.architecture, pretrained=entry.name, **kwargs)
    if spec is True:
        return get_model("deeplab_v2_resnet101", pretrained=True, **kwargs)
    checkpoint, _ = _open(
        spec,
        None,
        kwargs.get("cache_dir"),
        kwargs.get("local_files_only", False),
        kwargs.get("progress", True),
    )
    return get_model(detect_architecture(checkpoint), pretrained=checkpoint, **kwargs)
