"""Weights files on disk: reading ``.safetensors`` and ``.pth`` state dicts, writing
safetensors (atomically, through :func:`deeplabv2._files.atomic_write`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .._files import atomic_write, check_destination, check_readable
from ..errors import WeightsFormatError

__all__ = ["read_pth", "read_safetensors", "save_safetensors"]

PathLike = Union[str, os.PathLike]


def read_safetensors(path: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A ``.safetensors`` file -> ``(tensors, header metadata)``.

    Raises:
        FileNotFoundError / PermissionError / IsADirectoryError: the file cannot be opened.
        WeightsFormatError: the file is not valid safetensors (corrupt or truncated).
    """
    path = os.fspath(path)
    check_readable(path, "weights file")
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors raises its own error types
        raise WeightsFormatError(
            f"{path}: not a readable safetensors file ({error}); it is corrupt or truncated: "
            "download or convert it again"
        ) from None
    return state, metadata


def read_pth(path: PathLike) -> dict[str, torch.Tensor]:
    """A PyTorch checkpoint of tensors -> its state dict, read with ``weights_only=True``.

    A ``{"state_dict": {...}}`` wrapper is unwrapped. Nothing in the file is executed.

    Raises:
        FileNotFoundError / PermissionError / IsADirectoryError: the file cannot be opened.
        WeightsFormatError: not a readable checkpoint, or not a mapping of names to tensors
            (the message names the offending key).
    """
    path = os.fspath(path)
    check_readable(path, "weights file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - pickle and zip errors alike
        raise WeightsFormatError(
            f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error}); "
            "the file is corrupt, truncated or holds more than tensors"
        ) from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise WeightsFormatError(
            f"{path}: not a state dict: the file holds a {type(loaded).__name__}, expected a "
            "mapping of parameter names to tensors"
        )
    for key, value in loaded.items():
        if not isinstance(key, str):
            raise WeightsFormatError(
                f"{path}: not a state dict: key {key!r} is a {type(key).__name__}, expected "
                "parameter names (strings)"
            )
        if not isinstance(value, torch.Tensor):
            raise WeightsFormatError(
                f"{path}: not a state dict: {key!r} holds a {type(value).__name__}, expected "
                "a tensor"
            )
    return dict(loaded)


def save_safetensors(
    state: Mapping[str, torch.Tensor],
    path: PathLike,
    metadata: Mapping[str, str],
    force: bool = False,
) -> Path:
    """Write ``state`` as float32 contiguous tensors to ``path`` atomically (:func:`atomic_write`).

    Raises:
        ValueError: ``path`` does not end in ``.safetensors``.
        OutputExistsError: ``path`` exists and ``force`` is false.
        IsADirectoryError: ``path`` is a directory.
    """
    check_destination(path, force, suffix=".safetensors")
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in state.items()}
    return atomic_write(
        path,
        lambda tmp: save_file(tensors, tmp, metadata={"format": "pt", **metadata}),
        force=force,
    )
