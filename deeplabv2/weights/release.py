"""Original release files in torch.hub's cache: fetched lean, resumed, checked before use.

An entry stored in a remote zip (``url_member``) costs only the member's bytes and a few
kilobytes more where the server serves range requests (:mod:`deeplabv2.weights.remote_zip`);
otherwise the whole archive is downloaded (and kept) and the member extracted from it. Either
way the member is checked against the CRC-32 and size of the archive's central directory, and
at most :func:`member_limit` bytes are written. An interrupted download keeps what arrived in
``<cache file>.part`` (:func:`~deeplabv2.weights.cache.partial_files`) and the next attempt
continues it; a corrupt one is removed with everything it left.
"""

from __future__ import annotations

import fnmatch
import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .._files import atomic_write
from ..errors import WeightsFormatError
from . import network
from .cache import discard, partial_files
from .registry import Weights
from .remote_zip import ZipFormatError

__all__ = ["MAX_MEMBER_BYTES", "cache_files", "extract", "fetch", "member_limit"]

#: The largest archive member extracted for an entry whose size is not recorded.
MAX_MEMBER_BYTES = 1 << 30


def member_limit(weights: Weights) -> int:
    """The most bytes an archive member of ``weights`` may hold: twice the size of the
    converted file (a ``.caffemodel`` stores the same float32 values, plus layer names and
    training copies of shared layers), at least 64 MB; :data:`MAX_MEMBER_BYTES` if unknown."""
    if not weights.file_size:
        return MAX_MEMBER_BYTES
    return max(int(2 * weights.file_size * 1e6), 64 << 20)


def cache_files(weights: Weights, checkpoints: Path) -> tuple[Path, Path]:
    """``(archive, file)``: where the release file of ``weights`` and the file the loader reads
    (the same, or the member extracted from the archive) are cached. The archive's name differs
    between releases whose files share one (both are ``prototxt_and_model.zip``)."""
    parent, _, name = weights.url.rstrip("/").rpartition("/")
    archive = checkpoints / f"{parent.rpartition('/')[2]}-{name}"
    if weights.url_member is None:
        return archive, archive
    return archive, checkpoints / f"{weights.name}{Path(weights.url_member).suffix}"


def _transfer(
    operation: str, url: str, paths: tuple[Path, ...], seconds: float, **params: Any
) -> Any:
    """Run a transfer (:mod:`.remote_zip`) for the cache file ``paths[0]`` (or the others); an
    empty partial file it leaves on failure is removed (there is nothing to resume)."""
    path = paths[0]
    from ..version import __version__

    part = partial_files(path)[0]
    params.update(url=url, part=os.fspath(part), desc=path.name)
    params.update(user_agent=f"deeplabv2/{__version__}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return network.run(operation, params, seconds=seconds, host=network.host_of(url))
    except BaseException:
        for each in paths:
            part, record = partial_files(each)
            if not part.is_file() or part.stat().st_size == 0:
                part.unlink(missing_ok=True)
                record.unlink(missing_ok=True)
        raise


def _complete(path: Path) -> None:
    """Move a finished download into place (the transfer flushed it to disk)."""
    part, record = partial_files(path)
    os.chmod(part, 0o644)
    os.replace(part, path)
    record.unlink(missing_ok=True)


def fetch(weights: Weights, checkpoints: Path, progress: bool, seconds: float) -> None:
    """Fetch the release file of ``weights`` (or only its member) into ``checkpoints``.

    Raises:
        NetworkFailure: the transfer failed (what arrived is kept to resume from).
        WeightsFormatError: not a usable archive, or a corrupt member (nothing is kept).
    """
    archive, target = cache_files(weights, checkpoints)
    if weights.url_member is None:
        _transfer("url_download", weights.url, (archive,), seconds, progress=progress)
        _complete(archive)
        return
    limit = member_limit(weights)
    archive_part = os.fspath(partial_files(archive)[0])
    try:
        result = _transfer(
            "zip_member", weights.url, (target, archive), seconds, progress=progress,
            pattern=weights.url_member, limit=limit, archive_part=archive_part,
        )  # fmt: skip
    except network.NetworkFailure as failure:
        if failure.error_type != ZipFormatError.__name__:
            raise
        discard(target)
        raise WeightsFormatError(
            f"{weights.url} is not a usable release archive holding {weights.url_member} "
            f"({failure.detail}); nothing was kept in the cache"
        ) from None
    if result.get("whole"):  # the server does not serve ranges
        _complete(archive)
        extract(archive, weights.url_member, target, limit)
    else:
        _unpack(target, result["member"], limit, weights.url)


def _pieces(source: IO[bytes], method: int) -> Iterator[bytes]:
    """The member's bytes from its stored or raw-deflated data, at most 4 MiB at a time."""
    inflater = zlib.decompressobj(-15) if method == 8 else None
    while chunk := source.read(1 << 20):
        while inflater is not None and chunk:
            yield inflater.decompress(chunk, 1 << 22)
            chunk = inflater.unconsumed_tail
        yield chunk
    if inflater is not None:
        yield inflater.flush()
        if not inflater.eof:
            raise ZipFormatError("the deflated data ends early")


def _unpack(target: Path, member: dict[str, Any], limit: int, url: str) -> None:
    """The downloaded data of ``member`` (``<target>.part``) -> ``target``, checked against the
    CRC-32 and size of the archive's central directory; a corrupt download is removed."""
    part = partial_files(target)[0]

    def write(tmp: str) -> None:
        crc = size = 0
        with open(part, "rb") as source, open(tmp, "wb") as sink:
            for piece in _pieces(source, member["method"]):
                size += len(piece)
                if size > limit:
                    raise ZipFormatError(f"it holds more than the {limit:,} bytes it may")
                crc = zlib.crc32(piece, crc)
                sink.write(piece)
        if (size, crc) != (member["size"], member["crc"]):
            raise ZipFormatError(
                f"CRC-32 {crc:08x} and {size:,} bytes, where the archive's central directory "
                f"records CRC-32 {member['crc']:08x} and {member['size']:,} bytes"
            )

    try:
        atomic_write(target, write, force=True)
    except (ZipFormatError, zlib.error) as error:
        discard(target)
        raise WeightsFormatError(
            f"the member {member['name']} downloaded from {url} is corrupt ({error}); it was "
            "not kept in the cache, load again to download it anew"
        ) from None
    for each in partial_files(target):
        each.unlink(missing_ok=True)


def extract(archive: Path, pattern: str, target: Path, limit: int) -> None:
    """Stream the one member of ``archive`` whose file name matches ``pattern`` to ``target``;
    a member larger than ``limit`` bytes (declared, or found while reading) is refused and the
    archive removed from the cache."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [
                info
                for info in zipped.infolist()
                if fnmatch.fnmatchcase(info.filename.rsplit("/", 1)[-1], pattern)
            ]
            if len(members) != 1:
                names = ", ".join(info.filename for info in members) or "none"
                raise zipfile.BadZipFile(f"{len(members)} members match {pattern!r}: {names}")
            if members[0].file_size > limit:
                raise zipfile.BadZipFile(
                    f"{members[0].filename} declares {members[0].file_size:,} bytes, more than "
                    f"the {limit:,} such weights can take"
                )

            def extract(tmp: str) -> None:
                written = 0
                with zipped.open(members[0]) as source, open(tmp, "wb") as sink:
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written > limit:
                            raise zipfile.BadZipFile(
                                f"{members[0].filename} holds more than the {limit:,} bytes "
                                "such weights can take"
                            )
                        sink.write(chunk)

            atomic_write(target, extract, force=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as error:
        discard(archive)
        raise WeightsFormatError(
            f"{archive} is not a valid release archive holding {pattern} "
            f"({type(error).__name__}: {error}); it was removed from the cache, try again"
        ) from None
