"""A model's weights as a file of this library: the safetensors header that makes a file load
back as it was (:func:`weights_metadata`) and :func:`save_weights`.

Below the networks' base class (``DeepLabBase``, whose ``save_pretrained`` writes with it), so
it knows a network only by what it reads of it (:class:`SavedNetwork`)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Optional, Protocol, Union

from ..protocol import PretrainedInfo
from ..version import __version__
from ..weights import save_safetensors
from ._registry import get_mapping

__all__ = ["CONVERSION_VERSION", "SavedNetwork", "save_weights", "weights_metadata"]

#: Bumped whenever converted files change; stored in every written file's header.
CONVERSION_VERSION = "2"


class SavedNetwork(Protocol):
    """What :func:`save_weights` reads of a network (every ``DeepLabBase`` has it); it also
    reads ``architecture``, ``class_names``, ``model_args`` and ``pretrained_info`` where the
    network has them."""

    num_classes: int

    def state_dict(self) -> Mapping[str, Any]: ...


def weights_metadata(
    architecture: Optional[str],
    num_classes: Optional[int],
    info: PretrainedInfo,
    model_args: Optional[Mapping[str, Any]] = None,
) -> dict[str, str]:
    """The safetensors header of a file this library writes (all values are strings): the
    architecture (left out for a custom network that no builder makes), the class count and
    names, the source, the test protocol, the lineage and warning, the network's non-default
    constructor arguments and the versions that wrote it.
    """
    if architecture is not None:
        get_mapping(architecture)  # a ValueError naming the known ones
    metadata = {} if architecture is None else {"architecture": architecture}
    metadata |= {
        "num_classes": "none" if num_classes is None else str(num_classes),
        "source": info.source or "deeplabv2",
        "deeplabv2_version": __version__,
        "conversion_version": CONVERSION_VERSION,
    }
    if info.classes:
        if num_classes is not None and len(info.classes) != num_classes:
            raise ValueError(f"{len(info.classes)} class names for a head of {num_classes} classes")
        metadata["classes"] = json.dumps(list(info.classes))
    if info.protocol is not None:
        metadata["protocol"] = json.dumps(info.protocol.as_dict())
    if info.lineage:
        metadata["lineage"] = json.dumps(list(info.lineage))
    if info.warning:
        metadata["warning"] = info.warning
    if model_args:
        metadata["model_args"] = json.dumps(dict(model_args))
    return metadata


def save_weights(
    model: SavedNetwork, path: Union[str, os.PathLike], *, force: bool = False, source: str = ""
) -> os.PathLike:
    """Write a model's weights to a ``.safetensors`` file that loads back as it is.

    The header records the architecture (when a builder makes the network), the class count
    and names, the test protocol, lineage and warning (``model.pretrained_info``) and the network's
    constructor arguments, so ``<builder>(pretrained=path)`` restores the same network,
    ``class_names`` and protocol. Written atomically; an existing file only with ``force``.
    """
    info = getattr(model, "pretrained_info", None) or PretrainedInfo()
    info = replace(
        info,
        source=source or info.source or "deeplabv2",
        classes=tuple(getattr(model, "class_names", ())),
    )
    metadata = weights_metadata(
        getattr(model, "architecture", None),
        int(model.num_classes),
        info,
        getattr(model, "model_args", None),
    )
    return save_safetensors(model.state_dict(), path, metadata, force=force)
