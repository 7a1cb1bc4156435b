"""Raw weights as a file stores them, whatever its format: :func:`read_checkpoint`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Union

import torch

from .._files import check_readable
from ..errors import WeightsFormatError
from .caffe import CaffeLayer, read_caffemodel
from .state_dicts import read_pth, read_safetensors

__all__ = ["FORMATS", "Checkpoint", "read_checkpoint"]

#: File suffix -> format name.
FORMATS = {
    ".safetensors": "safetensors",
    ".pth": "pth",
    ".pt": "pth",
    ".caffemodel": "caffemodel",
}


@dataclass
class Checkpoint:
    """Weights as stored, not yet mapped onto a model.

    Attributes:
        path: the file.
        format: ``"safetensors"``, ``"pth"`` or ``"caffemodel"``.
        tensors: name -> tensor (safetensors and pth files).
        layers: the net's layers in file order (caffemodel files).
        metadata: the safetensors header's metadata (empty for other formats).
    """

    path: str
    format: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    layers: list[CaffeLayer] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The file's name (what error messages and metadata call it)."""
        return os.path.basename(self.path)


def read_checkpoint(path: Union[str, os.PathLike]) -> Checkpoint:
    """Read a ``.safetensors``, ``.pth``/``.pt`` (``weights_only``) or ``.caffemodel`` file.

    Raises:
        FileNotFoundError / PermissionError / IsADirectoryError: the file cannot be opened.
        WeightsFormatError: an unknown extension, or a corrupt or truncated file
            (:class:`~deeplabv2.errors.CaffeFormatError` for Caffe files).
    """
    path = os.fspath(path)
    check_readable(path, "weights file")
    suffix = os.path.splitext(path)[1].lower()
    kind = FORMATS.get(suffix)
    if kind == "caffemodel":
        return Checkpoint(path, kind, layers=read_caffemodel(path)[1])
    if kind == "safetensors":
        tensors, metadata = read_safetensors(path)
        return Checkpoint(path, kind, tensors=tensors, metadata=metadata)
    if kind == "pth":
        return Checkpoint(path, kind, tensors=read_pth(path))
    raise WeightsFormatError(
        f"{path}: unknown weights format {suffix or '(no extension)'}; expected .safetensors, "
        ".pth/.pt or .caffemodel"
    )
