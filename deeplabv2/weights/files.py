"""Weights files on disk: reading ``.safetensors`` and ``.pth`` state dicts, atomic writes.

:func:`atomic_write` is the one way this package (and its examples) writes a file: into a
temporary file next to the destination, flushed to disk, then renamed over it, so a reader never
sees a partial file. Temporaries are named ``.<name>.<pid>.<random>.deeplabv2-tmp``; an
interrupted write (Ctrl-C, SIGTERM) removes its own, and one left by a killed process (SIGKILL,
power loss) is removed by the next write to the same destination.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import OutputExistsError, WeightsFormatError

__all__ = [
    "TMP_SUFFIX",
    "atomic_write",
    "check_destination",
    "check_readable",
    "read_bytes",
    "read_pth",
    "read_safetensors",
    "save_safetensors",
]

PathLike = Union[str, os.PathLike]

#: Suffix of this package's temporary files.
TMP_SUFFIX = ".deeplabv2-tmp"
# Temporaries last modified before this process started cannot be this process's own.
_RUN_START = time.time()


def _open_error(path: str, what: str, error: OSError) -> OSError:
    """The OSError of opening ``path``, with a message that says what really happened."""
    if isinstance(error, FileNotFoundError):
        return FileNotFoundError(f"no {what} at {path!r}")
    if isinstance(error, IsADirectoryError):
        return IsADirectoryError(f"{path} is a directory, not a {what} file")
    if isinstance(error, PermissionError):
        return PermissionError(
            f"cannot read {path}: permission denied; make the file readable for this user "
            "(e.g. chmod u+r) or copy it somewhere readable"
        )
    return type(error)(f"cannot read {path}: {error.strerror or error}")


def read_bytes(path: PathLike, what: str) -> bytes:
    """The whole file; a missing, unreadable or directory path raises an OSError that says so."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise _open_error(path, what, error) from None


def check_readable(path: str, what: str) -> None:
    """Raise the OSError of opening ``path``, with a message that says what really happened."""
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise _open_error(path, what, error) from None


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


def check_destination(path: PathLike, force: bool, suffix: Optional[str] = None) -> Path:
    """Refuse a destination that is a directory, exists (unless ``force``) or lacks ``suffix``."""
    path = Path(path)
    if suffix is not None and not path.name.endswith(suffix):
        raise ValueError(
            f"{path}: the output must be a {suffix} file (that is the only format written "
            f"here); name it <something>{suffix}"
        )
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give the output a file name")
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force (force=True) to overwrite it")
    return path


def _stale(tmp: Path) -> bool:
    """A temporary of ours whose writer is gone: older than this run, its process not alive."""
    try:
        if tmp.stat().st_mtime >= _RUN_START:
            return False
        pid = int(tmp.name.split(".")[-3])
    except (OSError, ValueError, IndexError):
        return False
    if pid == os.getpid():
        return True  # an earlier process that had this pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, owned by someone else
    return False


def _remove_stale_temporaries(path: Path) -> None:
    for tmp in path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"):
        if _stale(tmp):
            with contextlib.suppress(OSError):
                tmp.unlink()


def atomic_write(path: PathLike, write: Callable[[str], None], *, force: bool = False) -> Path:
    """Write ``path`` through ``write(tmp_path)`` into a temporary file, then rename it.

    The destination is checked first (:func:`check_destination`); the temporary file is
    flushed to disk before the rename and removed if ``write`` fails or the process is
    interrupted. Stale temporaries of the same destination from killed processes are removed.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = check_destination(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX
    )
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files readable by their owner only
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


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
