"""Reading checkpoints into any model family (timm's ``checkpoint_filter_fn``, as data).

A :class:`CheckpointMapping` says how raw weights (:class:`deeplabv2.weights.Checkpoint`: Caffe
layers or a state dict) become a family's state dict: the Caffe layer table of its backbone, how
its head is named in Caffe files, other code bases' key names (:class:`Dialect`), and which
entries form the class-specific head (what a backbone-only initialisation lacks). The types are
defined with the registry that holds them (:mod:`deeplabv2.models._registry`) and importable from
here too. Each family defines its mapping in its own file (``deeplab_resnet.py``,
``deeplab_vgg.py``) and registers it; the code here is generic: :func:`to_state_dict` applies a
mapping, :func:`check_state_dict` compares the result with a model, naming every difference,
:func:`detect_architecture` finds the family of a file.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

import numpy as np
import torch

from ..errors import CaffeFormatError, WeightsMismatchError
from ..weights import CaffeLayer, Checkpoint
from ._registry import CheckpointMapping, Dialect, LayerTable, get_model, list_mappings

__all__ = [
    "CheckpointMapping",
    "Dialect",
    "LayerTable",
    "check_family",
    "check_state_dict",
    "choose_dialect",
    "describe_names",
    "detect_architecture",
    "expected_shapes",
    "find_head_prefix",
    "head_classes",
    "to_state_dict",
]

_REPORT_LIMIT = 8


def describe_names(names: Iterable[str]) -> str:
    """Sorted names for an error message, the first few and a count of the rest."""
    names = sorted(names)
    more = f" and {len(names) - _REPORT_LIMIT} more" if len(names) > _REPORT_LIMIT else ""
    return ", ".join(names[:_REPORT_LIMIT]) + more


def find_head_prefix(names: Iterable[str], pattern: str, branches: set[str], example: str) -> str:
    """The one prefix whose layers ``<prefix><branch>`` exist for every branch."""
    heads: dict[str, set[str]] = {}
    for name in names:
        match = re.fullmatch(pattern, name)
        if match:
            heads.setdefault(match.group(1), set()).add(match.group(2) or "")
    complete = [head for head, found in heads.items() if found == branches]
    if len(complete) != 1:
        found = ", ".join(sorted(heads)) or "none"
        raise WeightsMismatchError(
            f"cannot find the head: expected exactly one complete set of layers like {example}, "
            f"found prefixes: {found}"
        )
    return complete[0]


# -- conversion ---------------------------------------------------------------------------------


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, whatever the blob shape encoding (``(C,)`` vs legacy ``(1, 1, 1, C)``)."""
    return a.size == b.size and np.array_equal(a.ravel(), b.ravel())


def _blob_count(source: str, name: str, what: str, blobs: list, allowed: Sequence[int]) -> None:
    if len(blobs) not in allowed:
        raise CaffeFormatError(
            f"{source}: {what} layer {name} has {len(blobs)} blobs, expected "
            f"{' or '.join(str(n) for n in allowed)}: the file is corrupt"
        )


def _layer_entries(source: str, name: str, layer: CaffeLayer, module: str, kind: str) -> dict:
    blobs = [torch.from_numpy(np.ascontiguousarray(b)) for b in layer.blobs]
    if kind == "conv":
        _blob_count(source, name, "convolution", blobs, (1, 2))
        entries = {f"{module}.weight": blobs[0]}
        if len(blobs) > 1:
            entries[f"{module}.bias"] = blobs[1].flatten()
        return entries
    if kind == "bn":
        if len(blobs) != 3 or blobs[2].numel() != 1:
            found = ", ".join(str(tuple(b.shape)) for b in blobs) or "none"
            raise CaffeFormatError(
                f"{source}: BatchNorm layer {name} has blobs of shapes {found}; expected "
                "three (mean*s, var*s and s, a single value): the file is corrupt"
            )
        s = float(blobs[2].flatten()[0])
        factor = 0.0 if s == 0 else 1.0 / s  # Caffe computes zeros for s == 0
        return {
            f"{module}.running_mean": blobs[0].flatten() * factor,
            f"{module}.running_var": blobs[1].flatten() * factor,
        }
    _blob_count(source, name, "Scale", blobs, (1, 2))
    weight = blobs[0].flatten()
    bias = blobs[1].flatten() if len(blobs) > 1 else torch.zeros_like(weight)
    return {f"{module}.weight": weight, f"{module}.bias": bias}


def _from_caffe(
    mapping: CheckpointMapping, layers: Iterable[CaffeLayer], source: str, backbone_only: bool
) -> dict[str, torch.Tensor]:
    """Caffe layers -> state dict (our keys). Copies of shared layers in multi-scale training
    nets (``conv1_res075``, ``fc1_voc12_c0_res05``) must equal the original and are dropped."""
    with_blobs = {layer.name: layer for layer in layers if layer.blobs}
    table = dict(mapping.backbone)
    if not backbone_only:
        try:
            table.update(mapping.find_head(with_blobs))
        except WeightsMismatchError as error:
            raise WeightsMismatchError(
                f"{source}: {error}; a backbone initialisation (whose classifier is not this "
                "head) loads with --backbone-only (backbone_only=True)"
            ) from None
    state: dict[str, torch.Tensor] = {}
    unexpected = []
    for name, layer in with_blobs.items():
        copy_of = re.fullmatch(r"(.+)_res\d+", name)
        if name not in table and copy_of and copy_of.group(1) in with_blobs:
            original = with_blobs[copy_of.group(1)]
            if len(original.blobs) != len(layer.blobs) or not all(
                _same_values(a, b) for a, b in zip(original.blobs, layer.blobs)
            ):
                raise WeightsMismatchError(
                    f"{source}: layer {name} should be a shared copy of {copy_of.group(1)} "
                    "(multi-scale training net) but its blobs differ"
                )
            continue
        if name not in table:
            if not backbone_only:
                unexpected.append(f"{name} ({layer.type or 'unknown type'})")
            continue
        state.update(_layer_entries(source, name, layer, *table[name]))
    if unexpected:
        raise WeightsMismatchError(
            f"{source}: layers with parameters that {mapping.architecture} does not have: "
            f"{describe_names(unexpected)}"
        )
    return state


_OUR_PREFIXES = ("backbone.", "aspp.", "aux.")


def _ours(keys: Iterable[str]) -> bool:
    return all(key.startswith(_OUR_PREFIXES) for key in keys)


def _from_tensors(
    mapping: CheckpointMapping,
    tensors: Mapping[str, torch.Tensor],
    source: str,
    lenient: bool,
    dialect: Optional[Dialect] = None,
) -> dict[str, torch.Tensor]:
    """A state dict of ours (keys under ``backbone.``/``aspp.``/``aux.``) or in ``dialect``
    (default: the first of the family's dialects that matches). ``lenient`` drops entries
    that map to nothing (a backbone-only load)."""
    if _ours(tensors):
        return dict(tensors)
    dialect = dialect or _dialect(mapping, tensors)
    if dialect is None:
        foreign = [k for k in tensors if not k.startswith(_OUR_PREFIXES)]
        raise WeightsMismatchError(
            f"{source}: entries that are not {mapping.architecture} parameters: "
            f"{describe_names(foreign)}"
        )
    return dialect.translate(tensors, source, lenient)


def _dialect(mapping: CheckpointMapping, tensors: Mapping) -> Optional[Dialect]:
    return next((d for d in mapping.dialects if d.matches(tensors)), None)


def _named_dialect(mapping: CheckpointMapping, name: str, source: str) -> Dialect:
    """The family's dialect called ``name``; a ValueError naming the family it belongs to, or
    listing the known names."""
    for dialect in mapping.dialects:
        if dialect.name == name:
            return dialect
    owners = [m.architecture for m in list_mappings() if name in (d.name for d in m.dialects)]
    if owners:
        raise WeightsMismatchError(
            f"dialect {name!r} reads {' and '.join(owners)} files, but {source} is loaded as "
            f"{mapping.architecture}: leave dialect= (--dialect) out, or load a "
            f"{owners[0]} file"
        )
    known = sorted({d.name for m in list_mappings() for d in m.dialects})
    raise ValueError(f"unknown dialect {name!r}; known: {', '.join(known)}")


def choose_dialect(
    mapping: CheckpointMapping, checkpoint: Checkpoint, name: Optional[str] = None
) -> Optional[Dialect]:
    """The dialect to read a state dict with (None: our own keys, or a Caffe file).

    ``name`` (``dialect=`` / ``--dialect``) must fit the file. Without it, the first of the
    family's dialects that matches is taken, with a one-line note (a ``UserWarning``) when
    another matches too: the same keys may come from code bases that compute different
    things with them (AdaptSegNet's and ADVENT's ``ResNetMulti``).

    Raises:
        ValueError: an unknown name (the known ones are listed).
        WeightsMismatchError: a name that does not fit the file or the family.
    """
    source = checkpoint.source
    named = None if name is None else _named_dialect(mapping, name, source)
    if checkpoint.format == "caffemodel" or _ours(checkpoint.tensors):
        if named is not None:
            what = "a Caffe model" if checkpoint.format == "caffemodel" else "in deeplabv2's keys"
            raise WeightsMismatchError(
                f"{source} is {what}, not a file of {named.description or named.name}: leave "
                "dialect= (--dialect) out"
            )
        return None
    matching = [d for d in mapping.dialects if d.matches(checkpoint.tensors)]
    if named is not None:
        if named not in matching:
            reads = f"; it reads as dialect {matching[0].name!r}" if matching else ""
            raise WeightsMismatchError(
                f"{source} does not have the keys of {named.description or named.name} "
                f"(dialect {named.name!r}){reads}"
            )
        return named
    if len(matching) > 1:
        chosen, others = matching[0], matching[1:]
        alternatives = "; ".join(
            f"for {d.description}, pass dialect={d.name!r} (--dialect {d.name})" for d in others
        )
        warnings.warn(
            f"{source}: read as dialect {chosen.name!r}, {chosen.description}; {alternatives}",
            stacklevel=5,
        )
    return matching[0] if matching else None


def head_classes(mapping: CheckpointMapping, state: Mapping[str, torch.Tensor], source: str) -> int:
    """The class count of the head in ``state``: first dimension of its classifier weight."""
    weight = state.get(mapping.head_weight)
    if weight is None:
        weight = next(
            (v for k, v in sorted(state.items()) if mapping.is_head(k) and v.dim() == 4), None
        )
    if weight is None or weight.dim() != 4:
        raise WeightsMismatchError(
            f"{source}: its head has no 4-D classifier weight "
            f"(found: {describe_names(k for k in state if mapping.is_head(k))})"
        )
    return int(weight.shape[0])


def to_state_dict(
    mapping: CheckpointMapping,
    checkpoint: Checkpoint,
    backbone_only: bool,
    new_head: bool,
    dialect: Optional[Dialect] = None,
) -> tuple[dict[str, torch.Tensor], Optional[int]]:
    """Raw weights -> ``(state dict in our keys, class count or None for a backbone)``.

    A file without any head entry loads as a backbone only if that is explicit: its metadata
    says so (``num_classes: none``, as this library writes backbone-only files),
    ``backbone_only`` asks for it, or ``new_head`` (the caller builds a new head). A head with
    entries missing is refused later by :func:`check_state_dict`. ``dialect``: the key names of
    a state dict (:func:`choose_dialect`; default: the first that matches).

    Raises:
        WeightsMismatchError: no head where one is needed, or entries of another network.
        CaffeFormatError: Caffe layers with the wrong blobs.
    """
    source = checkpoint.source
    if checkpoint.format == "caffemodel":
        state = _from_caffe(mapping, checkpoint.layers, source, backbone_only)
        return state, None if backbone_only else head_classes(mapping, state, source)
    state = _from_tensors(mapping, checkpoint.tensors, source, backbone_only, dialect)
    has_head = any(mapping.is_head(k) for k in state)
    explicit = checkpoint.metadata.get("num_classes") == "none" or new_head
    if backbone_only or (not has_head and explicit):
        return {k: v for k, v in state.items() if not mapping.is_head(k)}, None
    if not has_head:
        raise WeightsMismatchError(
            f"{source} has no head (missing: {mapping.head_weight} and the rest of it); a "
            "backbone-only initialisation must be loaded as one: convert it with "
            "--backbone-only (backbone_only=True), or pass num_classes=N to build a new head"
        )
    return state, head_classes(mapping, state, source)


def check_state_dict(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Size],
    source: str,
    target: str,
) -> None:
    """Raise :class:`WeightsMismatchError` naming every missing, unexpected, mis-shaped entry."""
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    misshaped = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k])})"
        for k in expected.keys() & state.keys()
        if tuple(state[k].shape) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append(f"missing: {describe_names(missing)}")
    if unexpected:
        problems.append(f"unexpected: {describe_names(unexpected)}")
    if misshaped:
        problems.append(f"wrong shape: {describe_names(misshaped)}")
    if problems:
        raise WeightsMismatchError(f"{source} does not match {target}; " + "; ".join(problems))


def expected_shapes(
    architecture: str, num_classes: int, model_args: Optional[Mapping[str, Any]] = None
) -> dict[str, torch.Size]:
    """Shapes of every state-dict entry of the family's model (built on the meta device),
    with the constructor arguments ``model_args`` (e.g. a variant's ``aux_head``)."""
    with torch.device("meta"):
        model = get_model(architecture, num_classes=num_classes, **(model_args or {}))
    return {k: v.shape for k, v in model.state_dict().items()}


def _fits(mapping: CheckpointMapping, tensors: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict has exactly the family's entries outside the head (whatever its
    head, and whatever else a backbone initialisation carries, such as a classifier)."""
    try:
        state = _from_tensors(mapping, tensors, "", lenient=True)
    except WeightsMismatchError:
        return False
    backbone = {k for k in expected_shapes(mapping.architecture, 1) if not mapping.is_head(k)}
    return {k for k in state if not mapping.is_head(k)} == backbone


def _candidates(checkpoint: Checkpoint) -> list[str]:
    if checkpoint.format == "caffemodel":
        names = {layer.name for layer in checkpoint.layers}
        return [m.architecture for m in list_mappings() if set(m.caffe_signature) <= names]
    return [m.architecture for m in list_mappings() if _fits(m, checkpoint.tensors)]


def check_family(mapping: CheckpointMapping, checkpoint: Checkpoint) -> None:
    """Refuse a checkpoint that clearly belongs to another family (by metadata or layout)."""
    named = checkpoint.metadata.get("architecture")
    found = [named] if named else _candidates(checkpoint)
    if len(found) == 1 and found[0] != mapping.architecture:
        raise WeightsMismatchError(
            f"{checkpoint.source} is a {found[0]} file, not {mapping.architecture}: load it with "
            f"deeplabv2.models.{found[0]} (CLI: --model {found[0]}, or leave --model out)"
        )


def detect_architecture(checkpoint: Checkpoint) -> str:
    """The family of a checkpoint: from its metadata, else its layer names or keys.

    Raises:
        WeightsMismatchError: no family (or more than one) fits; pass the model explicitly.
    """
    named = checkpoint.metadata.get("architecture")
    if named:
        known = [m.architecture for m in list_mappings()]
        if named not in known:
            raise WeightsMismatchError(
                f"{checkpoint.source} is for {named!r}, which this version of deeplabv2 does not "
                f"have (known: {', '.join(known)})"
            )
        return named
    found = _candidates(checkpoint)
    if len(found) != 1:
        raise WeightsMismatchError(
            f"cannot tell which network {checkpoint.source} is for "
            f"({'several fit' if found else 'none fits'}); name it: --model "
            f"{' | '.join(m.architecture for m in list_mappings())} (model= in Python)"
        )
    return found[0]
