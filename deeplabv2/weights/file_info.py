"""What a local weights file says about itself, read without torch and without its tensors
(``deeplabv2 weights --details FILE``): a ``.safetensors`` file's header (its metadata, written by
:func:`deeplabv2.models.save_weights` / ``deeplabv2 convert``: architecture, classes, source,
conversion version, protocol, lineage), or for other files what can be said without loading."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Union

__all__ = ["file_info"]

#: safetensors' limit on the JSON header (the format's own, 100 MB)
_MAX_HEADER = 100_000_000
#: metadata values written as JSON (deeplabv2.models._weights_file.weights_metadata)
_JSON_FIELDS = ("classes", "protocol", "lineage", "model_args")
#: the order the metadata is shown in (other keys after these)
_ORDER = ("architecture", "num_classes", "classes", "source", "conversion_version",
          "deeplabv2_version", "protocol", "lineage", "warning", "model_args")  # fmt: skip


def _safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a ``.safetensors`` file (8-byte little-endian length, then JSON)."""
    with open(path, "rb") as handle:
        start = handle.read(8)
        if len(start) < 8:
            raise ValueError(f"{path} is not a safetensors file (shorter than its header)")
        (length,) = struct.unpack("<Q", start)
        if length > _MAX_HEADER:
            raise ValueError(f"{path} is not a safetensors file (header of {length} bytes)")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError(f"{path} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file (its header is not a JSON object)")
    return header


def file_info(path: Union[str, os.PathLike]) -> dict[str, Any]:
    """What the file at ``path`` says about itself, as plain JSON-able values: ``file``,
    ``size_mb``, and for a ``.safetensors`` file ``tensors`` (their count) and ``metadata`` (its
    string fields, the JSON ones decoded; empty for a file not written by this library); for
    other files a ``note`` on what is known before loading.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a ``.safetensors`` file whose header cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    record: dict[str, Any] = {"file": str(path), "size_mb": round(path.stat().st_size / 1e6, 1)}
    if path.suffix != ".safetensors":
        kind = {".pth": "a PyTorch state dict", ".pt": "a PyTorch state dict",
                ".caffemodel": "a Caffe model"}.get(path.suffix, "a file")  # fmt: skip
        record["note"] = (
            f"{kind}: it holds no metadata this library can read without loading it; its "
            "network is told from its layer names when loaded (deeplabv2 convert writes a "
            ".safetensors file with the metadata)"
        )
        return record
    header = _safetensors_header(path)
    metadata = dict(header.pop("__metadata__", None) or {})
    for key in _JSON_FIELDS:
        if key in metadata:
            try:
                metadata[key] = json.loads(metadata[key])
            except json.JSONDecodeError:
                pass  # shown as written
    record["tensors"] = len(header)
    rank = {key: i for i, key in enumerate(_ORDER)}
    record["metadata"] = dict(sorted(metadata.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    if "architecture" not in metadata:
        record["note"] = "no deeplabv2 metadata: not written by deeplabv2 convert/save_weights"
    return record
