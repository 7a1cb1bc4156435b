"""The package's file helpers: atomic writes, destination checks, clear errors on reading.

:func:`atomic_write` is the one way this package (and its examples) writes a file: into a
temporary file next to the destination, flushed to disk, then renamed over it, so a reader never
sees a partial file. Temporaries are named ``.<name>.<pid>.<random>.deeplabv2-tmp``; an
interrupted write (Ctrl-C, SIGTERM) removes its own, and one left by a killed process (SIGKILL,
power loss) is removed by the next write to the same destination.

:func:`check_writable` (and :func:`check_destination`, which calls it) finds a destination that
cannot be written before any work is done, by creating and removing a file where the output
will go. Every failure to write names the user's path and the fix, never a temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Union

from .errors import OutputExistsError

__all__ = [
    "TMP_SUFFIX",
    "atomic_write",
    "atomic_write_text",
    "check_destination",
    "check_readable",
    "check_writable",
    "read_bytes",
]

PathLike = Union[str, os.PathLike]

#: Suffix of this package's temporary files.
TMP_SUFFIX = ".deeplabv2-tmp"
# Temporaries last modified before this process started cannot be this process's own.
_RUN_START = time.time()
# A full disk (or quota), and what only a write of the destination can hit.
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_WRITE_ERRNOS = {*_FULL_ERRNOS, errno.EROFS, errno.EFBIG}


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


def _nearest_existing(folder: Path) -> Path:
    """``folder``, or its nearest ancestor that exists (what a write would have to create in)."""
    while not os.path.exists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def _write_error(path: Path, error: OSError, folder: Optional[Path] = None) -> OSError:
    """The OSError of writing ``path``, with a message that names it (not a temporary file),
    says what happened and what to do; the same type and ``errno``."""
    where = folder if folder is not None else path.parent
    code = error.errno
    if code in (errno.EACCES, errno.EPERM):
        reason = (
            f"permission denied in {where}; write somewhere this user may write (e.g. under "
            "your home folder), or get write permission there"
        )
    elif code == errno.EROFS:
        reason = f"{where} is on a read-only file system; write to a writable disk"
    elif code in _FULL_ERRNOS:
        reason = f"no space left on the disk of {where} (or over quota); free some space"
    elif code in (errno.ENOTDIR, errno.EEXIST) and not os.path.isdir(_nearest_existing(where)):
        reason = f"{_nearest_existing(where)} is a file, not a folder; choose another destination"
    elif code == errno.EISDIR:
        return IsADirectoryError(f"{path} is a directory; give the output a file name")
    elif code == errno.ENAMETOOLONG:
        reason = "the name is too long for the file system; choose a shorter one"
    else:
        reason = error.strerror or str(error)
    message = f"cannot write {path}: {reason}"
    try:
        converted = type(error)(message)
    except TypeError:  # an OSError subclass with other arguments
        converted = OSError(message)
    converted.errno = code
    return converted


def check_writable(path: PathLike, *, folder: bool = False) -> Path:
    """Check that the file ``path`` (with ``folder``: files in the folder ``path``) can be
    written, before any work is done: a uniquely named file is created and removed at once
    where it will go (in the nearest existing folder, if the destination's must be made).

    Raises:
        NotADirectoryError: a file is where a folder of the path must be.
        PermissionError / OSError: the file cannot be created (no permission, a read-only or
            full disk); the message names ``path`` and the fix.
    """
    path = Path(path)
    existing = _nearest_existing(path if folder else path.parent)
    if not existing.is_dir():
        raise NotADirectoryError(
            f"cannot write {path}: {existing} is a file, not a folder; choose another destination"
        )
    try:
        fd, probe = tempfile.mkstemp(
            dir=existing, prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX
        )
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise _write_error(path, error, existing) from error
    return path


def check_destination(
    path: PathLike, force: bool, suffix: Optional[str] = None, *, probe: bool = True
) -> Path:
    """Refuse a destination that is a directory, exists (unless ``force``), lacks ``suffix`` or
    (with ``probe``) cannot be written (:func:`check_writable`)."""
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
    if probe:
        check_writable(path)
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


def _about_the_write(error: OSError, tmp: str) -> bool:
    """Whether an OSError out of writing ``tmp`` is about the destination (its temporary file,
    or a disk that is full or read-only), not about something else ``write`` did."""
    names = (error.filename, getattr(error, "filename2", None))
    return tmp in names or tmp in str(error) or error.errno in _WRITE_ERRNOS


def atomic_write(path: PathLike, write: Callable[[str], object], *, force: bool = False) -> Path:
    """Write ``path`` through ``write(tmp_path)`` into a temporary file, then rename it.

    The destination is checked first (:func:`check_destination`); the temporary file is
    flushed to disk before the rename and removed if ``write`` fails or the process is
    interrupted. Stale temporaries of the same destination from killed processes are removed.
    A failure to write names ``path`` (never the temporary file) and the fix.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = check_destination(path, force, probe=False)  # the temporary file is the probe
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX
        )
    except OSError as error:
        raise _write_error(path, error) from error
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files readable by their owner only
        os.replace(tmp, path)
    except OSError as error:
        if not _about_the_write(error, tmp):
            raise
        raise _write_error(path, error) from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def atomic_write_text(path: PathLike, text: str, *, force: bool = False) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), force=force)
