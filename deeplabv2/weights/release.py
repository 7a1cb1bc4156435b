"""Original release files in torch.hub's cache: fetched lean, resumed, checked before use.

An entry stored in a remote zip (``url_member``) costs only the member's bytes and a few
kilobytes more where the server serves range requests (:mod:`deeplabv2.weights.remote_zip`);
otherwise the whole archive is downloaded (and kept) and the member extracted from it. Either
way the member is checked against the CRC-32 and size of the archive's central directory, and
at most :func:`member_limit` bytes are written. An interrupted download keeps what arrived in
``<cache file>.part`` (:func:`~deeplabv2.weights.cache.partial_files`) and the next attempt
continues it where the server's strong ETag allows (else it starts from zero); a corrupt one is
removed with everything it left.

SHA-256: every cache file's is recorded next to it when it is first downloaded
(``<cache file>.sha256``, :func:`~deeplabv2.weights.cache.record_file`), and a later download or
reuse of it must match the record; the file the loader reads must match the registry's
``sha256`` where it has one (then the record is not consulted), and a release file named by
torch.hub's convention (``name-<hex>.pth``) must, when downloaded, start with the hex digits its
name carries (as torch.hub checks it: a file put into the cache by hand is not). A
cache file that disagrees is removed and a :class:`~deeplabv2.errors.WeightsFormatError` says
why. Files of the cache are never written or read through a link
(:mod:`deeplabv2.weights.cache`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Optional

from .._files import atomic_write
from ..errors import WeightsFormatError
from . import internet
from .cache import (
    check_own_files,
    discard,
    partial_files,
    read_record,
    record_file,
    sha256sum,
    write_record,
)
from .registry import Weights
from .remote_zip import LinkedFileError, ZipFormatError, file_sha256, open_cache_file

__all__ = [
    "MAX_MEMBER_BYTES",
    "cache_files",
    "extract",
    "fetch",
    "hash_prefix",
    "member_limit",
    "reuse",
]

#: The largest archive member extracted for an entry whose size is not recorded.
MAX_MEMBER_BYTES = 1 << 30
# torch.hub's convention (torch/hub.py HASH_REGEX and download_url_to_file, commit cf30153c4c131c
# 8164ee7798e5022d810682e2cb): "name-<hex>.ext", the hex the start of the file's SHA-256. Here at
# least 8 digits and the last part of the name: shorter ones are iteration counts (-20000.pth).
_HASH_PREFIX = re.compile(r"-([0-9a-f]{8,64})\.[^.-]+$")


def member_limit(weights: Weights) -> int:
    """The most bytes a file of ``weights`` (an archive member, or a whole release file) may
    hold: twice the size of the converted file (a ``.caffemodel`` stores the same float32
    values, plus layer names and training copies of shared layers), at least 64 MB;
    :data:`MAX_MEMBER_BYTES` if unknown."""
    if not weights.file_size:
        return MAX_MEMBER_BYTES
    return max(int(2 * weights.file_size * 1e6), 64 << 20)


def hash_prefix(url: str) -> Optional[str]:
    """The start of its SHA-256 that the file name of ``url`` carries by torch.hub's convention
    (``resnet101-63fe2227.pth``: ``63fe2227``), or None."""
    match = _HASH_PREFIX.search(url.rsplit("/", 1)[-1])
    return match[1] if match else None


def cache_files(weights: Weights, checkpoints: Path) -> tuple[Path, Path]:
    """``(archive, file)``: where the release file of ``weights`` and the file the loader reads
    (the same, or the member extracted from the archive) are cached. The archive's name differs
    between releases whose files share one (both are ``prototxt_and_model.zip``)."""
    parent, _, name = weights.url.rstrip("/").rpartition("/")
    archive = checkpoints / f"{parent.rpartition('/')[2]}-{name}"
    if weights.url_member is None:
        return archive, archive
    return archive, checkpoints / f"{weights.name}{Path(weights.url_member).suffix}"


def _checks(path: Path, weights: Weights, downloaded: bool = True) -> list[tuple[str, str]]:
    """What the SHA-256 of the cache file ``path`` of ``weights`` must be or start with:
    ``(hex digits, where they come from)``, none where nothing is known. The prefix of the
    name only for a file just ``downloaded``, as torch.hub checks it (a file put into the cache
    by hand is taken as it is, unless it has a record)."""
    archive, target = cache_files(weights, path.parent)
    checks = []
    if path == target and weights.sha256 is not None:
        checks.append((weights.sha256, f"the expected SHA-256 of the {weights.name!r} weights"))
    else:
        recorded = read_record(path)
        if recorded is not None:
            checks.append((
                recorded, f"recorded in {record_file(path)} when the file was first downloaded "
                "(if the release file really changed, delete that record)",
            ))  # fmt: skip
    prefix = hash_prefix(weights.url) if path == archive and downloaded else None
    if prefix is not None:
        checks.append((prefix, "the start of its SHA-256 that the file's name carries"))
    return checks


def _disagreement(digest: str, checks: list[tuple[str, str]]) -> Optional[str]:
    """Why a file whose SHA-256 is ``digest`` fails ``checks`` (:func:`_checks`), or None."""
    for expected, source in checks:
        if not digest.startswith(expected):
            verb = "does not match" if len(expected) == len(digest) else "does not start with"
            return f"SHA-256 {digest} {verb} {expected}, {source}"
    return None


def reuse(weights: Weights, path: Path) -> None:
    """Check the cache file ``path`` of ``weights`` before it is used again (its SHA-256 against
    the registry's, else the one recorded at its download, where there is one): one that
    disagrees is removed and a WeightsFormatError says why."""
    checks = _checks(path, weights, downloaded=False)
    problem = _disagreement(sha256sum(path), checks) if checks else None
    if problem is not None:
        discard(path)
        raise WeightsFormatError(
            f"{path}: {problem}; the cached file was removed, load again to download it anew"
        )


def _transfer(
    operation: str, url: str, paths: tuple[Path, ...], seconds: float, **params: Any
) -> Any:
    """Run a transfer (:mod:`.remote_zip`) for the cache file ``paths[0]`` (or the others),
    after checking that none of the files it writes is a link; an empty partial file it leaves
    on failure is removed (there is nothing to resume), and every partial file when the server's
    answer could not be right."""
    path = paths[0]
    from ..version import __version__

    for each in paths:
        check_own_files(each)
    part = partial_files(path)[0]
    params.update(url=url, part=os.fspath(part), desc=path.name)
    params.update(user_agent=f"deeplabv2/{__version__}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return internet.run(operation, params, seconds=seconds, host=internet.host_of(url))
    except BaseException as error:
        kind = error.kind if isinstance(error, internet.NetworkFailure) else None
        for each in paths:
            part, record = partial_files(each)
            if kind == "bad-answer" or _empty(part):
                part.unlink(missing_ok=True)  # the file, or a link itself: never its target
                record.unlink(missing_ok=True)
        if kind == "unsafe-file":  # a link planted while the transfer ran
            raise LinkedFileError(str(error)) from None
        raise


def _empty(part: Path) -> bool:
    """Whether ``part`` is missing or an empty file (a link is neither: it is left alone)."""
    try:
        return part.lstat().st_size == 0 and not part.is_symlink()
    except FileNotFoundError:
        return True


def _complete(path: Path, weights: Weights) -> None:
    """Check a finished download (``<path>.part``, flushed to disk by the transfer) against
    what is known of its SHA-256 and move it into place with its record; one that disagrees
    is removed. The partial file is read and moved without following links."""
    part, state = partial_files(path)
    fd = open_cache_file(os.fspath(part), os.O_RDONLY)
    try:
        digest = file_sha256(fd)
        problem = _disagreement(digest, _checks(path, weights))
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o644)
        moved = os.fstat(fd)
    finally:
        os.close(fd)
    if problem is not None:
        discard(path)
        raise WeightsFormatError(
            f"the file downloaded from {weights.url} is not the release file: {problem}; it was "
            "not kept in the cache, load again to download it anew"
        )
    write_record(path, digest)
    os.replace(part, path)  # a rename: a link at ``path`` is replaced, not written through
    if not os.path.samestat(moved, os.lstat(path)):  # ``part`` was swapped after the check
        os.unlink(path)
        raise LinkedFileError(f"{part} was replaced by another file while it was checked")
    state.unlink(missing_ok=True)


def fetch(weights: Weights, checkpoints: Path, progress: bool, seconds: float) -> None:
    """Fetch the release file of ``weights`` (or only its member) into ``checkpoints``.

    Raises:
        NetworkFailure: the transfer failed (what arrived is kept to resume from).
        WeightsFormatError: not a usable archive, a corrupt member, or a file whose SHA-256
            disagrees (nothing is kept).
        PermissionError: a file the download would write is a link (named).
    """
    archive, target = cache_files(weights, checkpoints)
    limit = member_limit(weights)
    if weights.url_member is None:
        _transfer("url_download", weights.url, (archive,), seconds, progress=progress, limit=limit)
        _complete(archive, weights)
        return
    archive_part = os.fspath(partial_files(archive)[0])
    try:
        result = _transfer(
            "zip_member", weights.url, (target, archive), seconds, progress=progress,
            pattern=weights.url_member, limit=limit, archive_part=archive_part,
        )  # fmt: skip
    except internet.NetworkFailure as failure:
        if failure.error_type != ZipFormatError.__name__:
            raise
        discard(target)
        raise WeightsFormatError(
            f"{weights.url} is not a usable release archive holding {weights.url_member} "
            f"({failure.detail}); nothing was kept in the cache"
        ) from None
    if result.get("whole"):  # the server does not serve ranges
        _complete(archive, weights)
        extract(weights, archive, target)
    else:
        _unpack(weights, target, result["member"])


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


class _Checked:
    """The bytes of one file as they are written: size, CRC-32, SHA-256."""

    def __init__(self, limit: int, name: str) -> None:
        self.limit, self.name, self.size, self.crc = limit, name, 0, 0
        self.sha256 = hashlib.sha256()

    def add(self, piece: bytes) -> bytes:
        self.size += len(piece)
        if self.size > self.limit:
            raise ZipFormatError(f"{self.name} holds more than the {self.limit:,} bytes it may")
        self.crc = zlib.crc32(piece, self.crc)
        self.sha256.update(piece)
        return piece

    def finish(self, path: Path, weights: Weights, size: int, crc: int) -> None:
        """Raise ZipFormatError if the size or CRC-32 differ from the archive's directory or
        the SHA-256 from what is known (:func:`_checks`); else record the SHA-256."""
        if (self.size, self.crc) != (size, crc):
            raise ZipFormatError(
                f"CRC-32 {self.crc:08x} and {self.size:,} bytes, where the archive's central "
                f"directory records CRC-32 {crc:08x} and {size:,} bytes"
            )
        digest = self.sha256.hexdigest()
        problem = _disagreement(digest, _checks(path, weights))
        if problem is not None:
            raise ZipFormatError(problem)
        write_record(path, digest)


def _unpack(weights: Weights, target: Path, member: dict[str, Any]) -> None:
    """The downloaded data of ``member`` (``<target>.part``) -> ``target``, checked against the
    CRC-32 and size of the archive's central directory and the SHA-256 known of it (the
    registry's, or a record); a corrupt download is removed."""
    part = partial_files(target)[0]

    def write(tmp: str) -> None:
        checked = _Checked(member_limit(weights), "it")
        with open(open_cache_file(os.fspath(part), os.O_RDONLY), "rb") as source:
            with open(tmp, "wb") as sink:
                for piece in _pieces(source, member["method"]):
                    sink.write(checked.add(piece))
        checked.finish(target, weights, member["size"], member["crc"])

    try:
        atomic_write(target, write, force=True)
    except (ZipFormatError, zlib.error) as error:
        discard(target)
        raise WeightsFormatError(
            f"the member {member['name']} downloaded from {weights.url} is corrupt ({error}); it "
            "was not kept in the cache, load again to download it anew"
        ) from None
    for each in partial_files(target):
        each.unlink(missing_ok=True)


def extract(weights: Weights, archive: Path, target: Path) -> None:
    """Stream the one member of ``archive`` whose file name matches ``weights.url_member`` to
    ``target``, checked as :func:`_unpack` checks it; a member larger than
    :func:`member_limit` (declared, or found while reading) is refused. A failure removes the
    archive from the cache."""
    pattern, limit = weights.url_member or "", member_limit(weights)
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
            info = members[0]
            if info.file_size > limit:
                raise zipfile.BadZipFile(
                    f"{info.filename} declares {info.file_size:,} bytes, more than the "
                    f"{limit:,} such weights can take"
                )

            def extract(tmp: str) -> None:
                checked = _Checked(limit, info.filename)
                with zipped.open(info) as source, open(tmp, "wb") as sink:
                    while chunk := source.read(1 << 20):
                        sink.write(checked.add(chunk))
                checked.finish(target, weights, info.file_size, info.CRC)

            atomic_write(target, extract, force=True)
    except LinkedFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ZipFormatError, OSError, EOFError) as error:
        discard(archive)
        raise WeightsFormatError(
            f"{archive} is not a valid release archive holding {pattern} "
            f"({type(error).__name__}: {error}); it was removed from the cache, try again"
        ) from None
