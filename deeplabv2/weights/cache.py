"""Files in the weights caches: checksums and their records, resumable partial downloads, and
removal; none of them is ever written or read through a link.

Every file the release cache (torch.hub's ``checkpoints`` folder) writes is opened without
following links (:func:`~deeplabv2.weights.remote_zip.open_cache_file`) or written to a new
temporary file renamed into place (a rename replaces a link, it never writes through it): the
partial download (``<cache file>.part``), its record (``.part.json``), the SHA-256 record
(``<cache file>.sha256``) and the cache file itself. A link, or a file with other names (a hard
link), planted at one of them in a shared cache is refused with a ``PermissionError``
(:class:`~deeplabv2.weights.remote_zip.LinkedFileError`) that names it; its target is never
touched.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Optional, Union

from .._files import atomic_write_text
from .remote_zip import check_own_file, open_cache_file

__all__ = [
    "check_own_files",
    "discard",
    "partial_files",
    "read_record",
    "record_file",
    "sha256sum",
    "write_record",
]

PathLike = Union[str, os.PathLike]
_DIGEST = re.compile(r"([0-9a-f]{64})\b")


def sha256sum(path: PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def partial_files(path: PathLike) -> tuple[Path, Path]:
    """Where an unfinished download of the cache file ``path`` keeps what arrived
    (``<path>.part``) and the record of what it is (``<path>.part.json``: URL, validator,
    range), to resume from (see :mod:`deeplabv2.weights.remote_zip`)."""
    path = Path(path)
    return path.with_name(f"{path.name}.part"), path.with_name(f"{path.name}.part.json")


def record_file(path: PathLike) -> Path:
    """Where the SHA-256 of the cache file ``path`` is recorded when it is first downloaded:
    ``<path>.sha256``, one line as ``sha256sum`` writes it (``sha256sum -c`` checks it)."""
    path = Path(path)
    return path.with_name(f"{path.name}.sha256")


def read_record(path: PathLike) -> Optional[str]:
    """The SHA-256 recorded for the cache file ``path`` (:func:`record_file`), or None where
    there is none or it is not one (a record that cannot be read is written anew by the next
    download). A link there raises ``PermissionError``."""
    try:
        with open(open_cache_file(os.fspath(record_file(path)), os.O_RDONLY), "rb") as handle:
            text = handle.read(4096).decode("ascii", "replace")
    except FileNotFoundError:
        return None
    match = _DIGEST.match(text)
    return match[1] if match else None


def write_record(path: PathLike, digest: str) -> None:
    """Record ``digest``, the SHA-256 of the cache file ``path`` (atomically: a new file
    renamed over the record, never written through a link)."""
    path = Path(path)
    atomic_write_text(record_file(path), f"{digest}  {path.name}\n", force=True)


def check_own_files(path: PathLike) -> None:
    """Raise ``PermissionError`` (:class:`~deeplabv2.weights.remote_zip.LinkedFileError`) if a
    file the cache writes for the cache file ``path`` (its partial download and its records) is
    a link, a file with other names or not a regular file."""
    for each in (*partial_files(path), record_file(path)):
        check_own_file(os.fspath(each))


def _hub_blob(link: Path) -> Optional[Path]:
    """The blob a Hugging Face cache link points to, if it is where the cache keeps it: the
    ``blobs/`` folder of the same repository folder (``models--o--r/snapshots/<rev>/<file>`` ->
    ``models--o--r/blobs/<hash>``); None for a link that points anywhere else."""
    for ancestor in link.parents:
        if ancestor.parent.name == "snapshots":
            blobs = ancestor.parent.parent / "blobs"
            target = Path(os.path.realpath(link))
            inside = target.parent == Path(os.path.realpath(blobs))
            return target if inside and not target.is_symlink() else None
    return None


def _remove(path: Path) -> None:
    if path.is_symlink():
        blob = _hub_blob(path)
        path.unlink()
        if blob is not None:
            blob.unlink(missing_ok=True)
    elif path.is_file():
        path.unlink()


def discard(path: PathLike) -> None:
    """Remove a cached file, and any unfinished download of it (:func:`partial_files`), so that
    neither is reused, never following a link out of the cache. Its SHA-256 record
    (:func:`record_file`) stays: the next download is checked against it.

    A link is removed itself; the file it points to is removed only when it is the blob of a
    Hugging Face cache link inside the same repository's ``blobs/`` folder. Whatever else a
    link points to (anyone who can write into a shared cache can plant one) is left alone.
    """
    for each in (Path(path), *partial_files(path)):
        _remove(each)
