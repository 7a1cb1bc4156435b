"""The package's file helpers: atomic writes, destination checks, clear errors on reading.

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
from pathlib import Path
from typing import Callable, Optional, Union

from .errors import OutputExistsError

__all__ = ["TMP_SUFFIX", "atomic_write", "check_destination", "check_readable", "read_bytes"]

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
