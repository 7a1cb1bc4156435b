"""Files in the weights caches: checksums, resumable partial downloads, and removal that never
follows a link out of the cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Union

__all__ = ["discard", "partial_files", "sha256sum"]

PathLike = Union[str, os.PathLike]


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
    neither is reused, never following a link out of the cache.

    A link is removed itself; the file it points to is removed only when it is the blob of a
    Hugging Face cache link inside the same repository's ``blobs/`` folder. Whatever else a
    link points to (anyone who can write into a shared cache can plant one) is left alone.
    """
    for each in (Path(path), *partial_files(path)):
        _remove(each)
