"""Building a network and filling it with pretrained weights, for every model family.

The builders (``deeplab_v2_resnet101`` ...) only gather arguments and call :func:`build`, which
resolves the weights (:mod:`deeplabv2.weights`), maps them with the family's
:class:`~deeplabv2.models._checkpoint.CheckpointMapping`, checks them strictly and records what
was loaded in ``model.class_names`` and ``model.weights_info``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from ..errors import WeightsFormatError
from ..version import __version__
from ..weights import Checkpoint, EvalProtocol, Weights, read_checkpoint, resolve_weights
from ..weights.files import save_safetensors
from ..weights.hub import discard
from ..weights.registry import find_weights
from ._checkpoint import (
    MAPPINGS,
    CheckpointMapping,
    check_family,
    check_state_dict,
    detect_architecture,
    dialect_of,
    to_state_dict,
)
from ._registry import get_model

__all__ = ["CONVERSION_VERSION", "build", "load_model", "save_weights", "weights_metadata"]

#: Bumped whenever converted files change; stored in every written file's header.
CONVERSION_VERSION = "2"

Pretrained = Union[None, bool, str, os.PathLike, Checkpoint]


def _open(
    pretrained: Union[bool, str, os.PathLike, Checkpoint],
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


def _class_names(checkpoint: Checkpoint, entry: Optional[Weights], num_classes: int) -> tuple:
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


def _protocol(
    checkpoint: Checkpoint, entry: Optional[Weights], mapping: CheckpointMapping
) -> Optional[EvalProtocol]:
    """How the weights were evaluated: the registry's word, the file's, or what its format
    says (Caffe files come from the release; the port's ``.pth`` files from the port)."""
    if entry is not None:
        return entry.protocol
    recorded = checkpoint.metadata.get("protocol")
    if recorded:
        try:
            return EvalProtocol.from_dict(json.loads(recorded))
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            raise WeightsFormatError(
                f"{checkpoint.source}: its metadata holds an invalid test protocol ({error})"
            ) from None
    if checkpoint.format == "caffemodel":
        return mapping.release_protocol
    dialect = dialect_of(mapping, checkpoint)
    return dialect.protocol if dialect is not None else None


def load_state(
    mapping: CheckpointMapping,
    pretrained: Union[bool, str, os.PathLike, Checkpoint],
    *,
    new_head: bool = False,
    backbone_only: bool = False,
    cache_dir: Any = None,
    local_files_only: bool = False,
    progress: bool = True,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Resolve, read and map weights for ``mapping``'s family -> ``(state dict, info)``.

    ``info`` holds ``architecture``, ``weights`` (the registry name or None), ``source``,
    ``path``, ``num_classes`` (None for a backbone), ``categories``, ``protocol`` (a dict or
    None) and ``warning`` (None, or what the registry says against some uses).
    """
    checkpoint, entry = _open(
        pretrained, mapping.architecture, cache_dir, local_files_only, progress
    )
    check_family(mapping, checkpoint)
    state, num_classes = to_state_dict(
        mapping,
        checkpoint,
        backbone_only=backbone_only or (entry is not None and entry.backbone_only),
        new_head=new_head,
    )
    protocol = _protocol(checkpoint, entry, mapping) if num_classes is not None else None
    info = {
        "architecture": mapping.architecture,
        "weights": entry.name if entry is not None else None,
        "source": checkpoint.metadata.get("source") or checkpoint.source,
        "path": checkpoint.path,
        "num_classes": num_classes,
        "categories": _class_names(checkpoint, entry, num_classes) if num_classes else (),
        "protocol": protocol.as_dict() if protocol is not None else None,
        "warning": entry.warning if entry is not None else None,
    }
    return state, info


def build(
    mapping: CheckpointMapping,
    make: Callable[[int], nn.Module],
    pretrained: Pretrained,
    num_classes: Optional[int],
    *,
    cache_dir: Any = None,
    local_files_only: bool = False,
    progress: bool = True,
) -> nn.Module:
    """Build ``make(num_classes)`` and load ``pretrained`` into it, strictly.

    Without weights the model is returned as built (in training mode). With them: the class
    count defaults to the weights'; a different one keeps everything but the head (a warning);
    a backbone-only file without ``num_classes`` gets a random head (a warning). The result is
    in eval mode, with ``class_names`` and ``weights_info`` set.
    """
    if pretrained is None or pretrained is False:
        model = make(21 if num_classes is None else num_classes)
        model.architecture = mapping.architecture
        return model
    new_head = num_classes is not None
    state, info = load_state(
        mapping,
        pretrained,
        new_head=new_head,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
    )
    weights_classes = info["num_classes"]
    if num_classes is None:
        num_classes = weights_classes or 21
    source = str(info["source"])
    # the file must be complete in itself (a partial head is refused even if it is replaced)
    with torch.device("meta"):
        reference = make(weights_classes or 1).state_dict()
    expected = {k: v.shape for k, v in reference.items()}
    if weights_classes is None:
        expected = {k: v for k, v in expected.items() if not mapping.is_head(k)}
        target = f"{mapping.architecture}'s layers outside the head"
    else:
        target = f"{mapping.architecture} with {weights_classes} classes"
    check_state_dict(state, expected, source, target)
    what = info["weights"] or source
    if weights_classes is None and not new_head:
        warnings.warn(
            f"the weights {what} have no head (a backbone initialisation): the head "
            f"({num_classes} classes) is initialised randomly; pass num_classes= to choose its "
            "size",
            stacklevel=3,
        )
    if weights_classes is not None and weights_classes != num_classes:
        warnings.warn(
            f"the weights {what} have {weights_classes} classes but num_classes={num_classes}: "
            "everything but the head is loaded and the head is initialised randomly",
            stacklevel=3,
        )
        state = {k: v for k, v in state.items() if not mapping.is_head(k)}
        weights_classes = None
    if weights_classes is None:
        info.update(categories=(), protocol=None)
    model = make(num_classes)
    model.architecture = mapping.architecture
    model.load_state_dict(state, strict=False)  # checked above; a new head stays as built
    model.class_names = tuple(info["categories"])
    model.weights_info = info
    return model.eval()


def load_model(
    weights: Union[bool, str, os.PathLike],
    model: Optional[str] = None,
    **kwargs: Any,
) -> nn.Module:
    """The network that ``weights`` are for, with them loaded.

    The architecture comes from ``model`` if given, else from the registry entry (a full
    name such as ``"deeplab_v2_vgg16.voc12"``; a bare tag means ResNet-101's), else from the
    file (its metadata, or its layer names / keys). ``kwargs`` go to the builder
    (``num_classes``, ``cache_dir``, ``local_files_only``, ``progress``).

    Raises:
        WeightsMismatchError: the file fits no network (or several): pass ``model``.
    """
    if model is not None:
        return get_model(model, pretrained=weights, **kwargs)
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


def weights_metadata(
    architecture: Optional[str],
    num_classes: Optional[int],
    source: str,
    classes: Sequence[str] = (),
    protocol: Optional[dict[str, Any]] = None,
) -> dict[str, str]:
    """The safetensors header of a file this library writes (all values are strings).

    ``architecture`` None (a custom network, not made by a builder) leaves it out.
    """
    if architecture is not None and architecture not in MAPPINGS:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(MAPPINGS)}")
    metadata = {} if architecture is None else {"architecture": architecture}
    metadata |= {
        "num_classes": "none" if num_classes is None else str(num_classes),
        "source": source,
        "deeplabv2_version": __version__,
        "conversion_version": CONVERSION_VERSION,
    }
    if classes:
        if num_classes is not None and len(classes) != num_classes:
            raise ValueError(f"{len(classes)} class names for a head of {num_classes} classes")
        metadata["classes"] = json.dumps(list(classes))
    if protocol is not None:
        metadata["protocol"] = json.dumps(protocol)
    return metadata


def save_weights(
    model: nn.Module, path: Union[str, os.PathLike], *, force: bool = False, source: str = ""
) -> os.PathLike:
    """Write a model's weights to a ``.safetensors`` file that loads back as it is.

    The header records the architecture (when the model came from a builder), the class
    count and names, and the test protocol (``model.weights_info["protocol"]``), so
    ``<builder>(pretrained=path)`` restores ``class_names`` and the protocol. Written
    atomically; an existing file only with ``force``.
    """
    architecture = getattr(model, "architecture", None)
    info = getattr(model, "weights_info", {}) or {}
    metadata = weights_metadata(
        architecture,
        int(model.num_classes),
        source or str(info.get("source") or "deeplabv2"),
        getattr(model, "class_names", ()),
        info.get("protocol"),
    )
    return save_safetensors(model.state_dict(), path, metadata, force=force)
