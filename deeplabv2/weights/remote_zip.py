"""Resumable HTTP transfers of a whole file or of one member of a remote zip archive.

Runs in the network helper process of :mod:`deeplabv2.weights.internet`, which loads this file by
its path (the package imports torch): standard library only, no package imports.

A member (:func:`fetch_member`) costs three small range requests and its own bytes: the last
:data:`TAIL` bytes of the archive (its end records, ZIP64 ones included, and usually the whole
central directory; more only where a long comment or a large directory needs it), the member's
30-byte local header, then its stored or deflated data. A server that answers a range request
with the whole file (HTTP 200) gets the whole archive saved instead, for the caller to extract.

Resuming: the bytes received so far stay in a partial file (``<cache file>.part``) next to a
small record of what they are (``<partial file>.json``: the URL, the server's ETag, where they
start in the remote file and how many there are to come). The next attempt asks for the rest
(``Range: bytes=N-``) only when the server gave a strong ETag (one without ``W/``), with
``If-Range`` set to it, and appends the answer only when it is the range asked for and carries
the same ETag; otherwise it starts again from zero (truncating, never appending). A
``Last-Modified`` date alone is not enough: RFC 9110 (13.1.5, 8.8.2.2) lets a client send a date
in ``If-Range`` only when it is strong, which a client cannot tell for sure (a file changed twice
within its one-second resolution keeps its date), so the date is never used.

Bounded: an answer's body is read for exactly the bytes of its range (or of its
``Content-Length``), never more, and at most ``params["limit"]`` bytes are written (a whole
archive: :data:`MAX_ARCHIVE_BYTES`); a server that sends a range other than the one asked, a
``Content-Range`` that cannot be right or more bytes than the file may hold raises
:class:`ServerAnswerError`, whose message names what it sent.

Files of the cache are never opened through a link (:func:`open_cache_file`): a symbolic or
hard link planted at a partial file or a record raises :class:`LinkedFileError`, and records are
written to a new temporary file renamed over the old one (a rename replaces a link, it never
writes through it).
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import re
import stat
import struct
import tempfile
import urllib.error
import urllib.request
from typing import Any, Optional

#: The bytes first read from the end of an archive.
TAIL = 4096
#: The largest central directory read (a release's lists a few dozen files in a few KiB).
_MAX_DIRECTORY = 1 << 24
#: The most the end records can take (a 22-byte record with a comment of up to 65535 bytes).
_MAX_END = 22 + 0xFFFF
_END, _LOCATOR, _END64 = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
_CENTRAL, _LOCAL = b"PK\x01\x02", b"PK\x03\x04"
_CENTRAL_FORMAT, _LOCAL_FORMAT = "<4s6H3I5HII", "<4s5H3I2H"  # 46 and 30 bytes
#: Compression methods a member may use: stored, deflated.
METHODS = {0: "stored", 8: "deflated"}
#: The most bytes a whole archive may hold (the fallback of a server without ranges).
MAX_ARCHIVE_BYTES = 4 << 30
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
#: Open flags that keep an open from following a final symbolic link (POSIX) and from
#: blocking on a planted FIFO; 0 where the system has none (then :func:`check_own_file`).
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
_BINARY = getattr(os, "O_BINARY", 0)  # Windows
#: Suffix of temporary files (as :mod:`deeplabv2._files` names its own).
_TMP_SUFFIX = ".deeplabv2-tmp"


class ZipFormatError(ValueError):
    """An archive or member that cannot be used: the message says why."""


class ServerAnswerError(ValueError):
    """An HTTP answer that cannot be right (a range not asked for, a ``Content-Range`` that ends
    before it starts, more bytes than the file may hold): the message, which follows the
    server's name, says what it sent."""


class LinkedFileError(PermissionError):
    """A file of the weights cache that is a symbolic link, has other names (hard links) or is
    not a regular file: the cache never reads or writes its own files through a link."""


def check_own_file(path: str) -> None:
    """Raise :class:`LinkedFileError` if ``path`` exists and is not a regular file of one name."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    _check_regular(path, info)


def _check_regular(path: str, info: os.stat_result) -> None:
    if stat.S_ISLNK(info.st_mode):
        what = f"a symbolic link (to {os.readlink(path)})"
    elif not stat.S_ISREG(info.st_mode):
        what = "not a regular file"
    elif info.st_nlink > 1:
        what = f"a file with {info.st_nlink} names (hard links)"
    else:
        return
    raise LinkedFileError(
        f"{path} is {what}; the weights cache never writes or reads its own files through a "
        "link (someone with write access to a shared cache may have planted it): remove it "
        "and load again"
    )


def open_cache_file(path: str, flags: int) -> int:
    """A descriptor of the cache's own file ``path`` opened with ``flags`` (``os.O_*``; files
    are created 0644), never through a link: a symbolic link there, a file with other names or
    anything but a regular file raises :class:`LinkedFileError`."""
    if not getattr(os, "O_NOFOLLOW", 0):
        check_own_file(path)  # no O_NOFOLLOW (Windows): look first
    try:
        fd = os.open(path, flags | _NO_FOLLOW | _BINARY, 0o644)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EMLINK):  # what O_NOFOLLOW says of a link
            check_own_file(path)
        raise
    try:
        _check_regular(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def file_sha256(fd: int) -> str:
    """Hex SHA-256 of the whole file open at ``fd``, read in 1 MiB chunks (the offset moves)."""
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


class _Whole(Exception):
    """The server answered a range request with the whole file (``args[0]``: the answer)."""


# -- the zip format (APPNOTE.TXT 4.3) ----------------------------------------------------------


def _directory_span(tail: bytes, first: int, total: int) -> tuple[int, int, int]:
    """``(offset, size, entries)`` of the central directory, from the last bytes of an archive
    (``tail``, starting at ``first`` of ``total``); ``(-1, 0, 0)``: the end record is not in
    ``tail``; ``(-2, offset, 0)``: the ZIP64 end record at ``offset`` must be read first."""
    at = tail.rfind(_END)
    while at >= 0 and at + 22 + struct.unpack_from("<H", tail, at + 20)[0] != len(tail):
        at = tail.rfind(_END, 0, at)  # the signature inside a comment or in member data
    if at < 0:
        if len(tail) < total and len(tail) < _MAX_END + 76:
            return -1, 0, 0
        raise ZipFormatError("no end of central directory record: not a zip archive")
    if at < 20 < first and len(tail) < _MAX_END + 76:
        return -1, 0, 0  # a ZIP64 locator may be just before what was read
    disk, _, _, entries, size, offset = struct.unpack_from("<4H2I", tail, at + 4)
    if disk != 0:
        raise ZipFormatError("a multi-volume (split) archive is not supported")
    if at >= 20 and tail[at - 20 : at - 16] == _LOCATOR:
        end64 = struct.unpack_from("<Q", tail, at - 12)[0]
        if end64 < first:
            return -2, end64, 0
        return _zip64_span(tail[end64 - first :])
    if first + at < offset + size:
        raise ZipFormatError("the central directory overlaps its end record: a damaged archive")
    return offset, size, entries


def _zip64_span(record: bytes) -> tuple[int, int, int]:
    """``(offset, size, entries)`` of the central directory from a ZIP64 end record."""
    if len(record) < 56 or record[:4] != _END64:
        raise ZipFormatError("the ZIP64 end of central directory record is missing or damaged")
    entries, size, offset = struct.unpack_from("<3Q", record, 32)
    return offset, size, entries


def _zip64_fields(extra: bytes, fields: list[int]) -> list[int]:
    """Member sizes and offset with the ones marked 0xFFFFFFFF read from the ZIP64 extra field
    (``fields``: uncompressed size, compressed size, local header offset)."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, at)
        if kind == 1:
            values = iter(struct.unpack_from(f"<{length // 8}Q", extra, at + 4))
            try:
                return [next(values) if value == 0xFFFFFFFF else value for value in fields]
            except StopIteration:
                break
        at += 4 + length
    if 0xFFFFFFFF in fields:
        raise ZipFormatError("a member's ZIP64 extra field is missing or too short")
    return fields


def read_directory(data: bytes, entries: int) -> list[dict[str, Any]]:
    """The members listed in a central directory: ``name``, ``method``, ``flags``, ``crc``,
    ``compressed``, ``size`` (bytes) and ``offset`` (of the local header), with ZIP64 values."""
    members, at = [], 0
    for _ in range(entries):
        if data[at : at + 4] != _CENTRAL or at + 46 > len(data):
            raise ZipFormatError("the central directory is damaged")
        fields = struct.unpack_from(_CENTRAL_FORMAT, data, at)
        flags, method, crc, compressed, size = fields[3], fields[4], *fields[7:10]
        name_length, extra_length, comment_length, offset = *fields[10:13], fields[16]
        name = data[at + 46 : at + 46 + name_length]
        extra = data[at + 46 + name_length : at + 46 + name_length + extra_length]
        size, compressed, offset = _zip64_fields(extra, [size, compressed, offset])
        members.append(
            dict(name=name.decode("utf-8" if flags & 0x800 else "cp437"), method=method,
                 flags=flags, crc=crc, compressed=compressed, size=size, offset=offset)
        )  # fmt: skip
        at += 46 + name_length + extra_length + comment_length
    return members


def choose(members: list[dict[str, Any]], pattern: str, limit: int) -> dict[str, Any]:
    """The one member whose file name matches ``pattern``, if it can be extracted: stored or
    deflated, not encrypted, at most ``limit`` bytes."""
    found = [m for m in members if fnmatch.fnmatchcase(m["name"].rsplit("/", 1)[-1], pattern)]
    if len(found) != 1:
        names = ", ".join(m["name"] for m in found) or "none"
        raise ZipFormatError(f"{len(found)} members match {pattern!r}: {names}")
    member = found[0]
    if member["flags"] & 1:
        raise ZipFormatError(f"{member['name']} is encrypted")
    if member["method"] not in METHODS:
        raise ZipFormatError(
            f"{member['name']} uses compression method {member['method']}; only stored (0) and "
            "deflated (8) members can be read: download the archive and extract it by hand"
        )
    if max(member["size"], member["compressed"]) > limit:
        raise ZipFormatError(
            f"{member['name']} declares {member['size']:,} bytes, more than the {limit:,} such "
            "weights can take"
        )
    return member


def data_offset(header: bytes, member: dict[str, Any], total: int) -> int:
    """Where the data of ``member`` starts, from its local header (30 bytes)."""
    if len(header) < 30 or header[:4] != _LOCAL:
        raise ZipFormatError(f"no local header where the directory puts {member['name']}")
    name_length, extra_length = struct.unpack_from(_LOCAL_FORMAT, header)[-2:]
    start = member["offset"] + 30 + name_length + extra_length
    if start + member["compressed"] > total:
        raise ZipFormatError(f"{member['name']} ends after the end of the archive")
    return start


# -- HTTP --------------------------------------------------------------------------------------


def _open(
    params: dict, seconds: float, span: Optional[str] = None, validator: Optional[str] = None
) -> Any:
    """The answer to a GET of ``params["url"]`` (``span``: a Range, ``validator``: If-Range)."""
    headers = {"User-Agent": params["user_agent"]}
    headers.update({"Range": f"bytes={span}"} if span else {})
    headers.update({"If-Range": validator} if span and validator else {})
    request = urllib.request.Request(params["url"], headers=headers)
    return urllib.request.urlopen(request, timeout=seconds)  # noqa: S310 - http(s), file


def _validator(response: Any) -> Optional[str]:
    """The strong ETag of this version of the file, for ``If-Range`` (None: none, or weak)."""
    etag = (response.headers.get("ETag") or "").strip()
    return etag if etag and not etag.startswith("W/") else None


def _content_range(response: Any, span: str) -> Optional[tuple[int, int, Optional[int]]]:
    """``(first, last, total)`` of a 206 answer to a request for ``bytes=span`` (total None if
    unknown); None for the whole file; :class:`ServerAnswerError` if it cannot be right."""
    if getattr(response, "status", None) != 206:
        return None
    value = (response.headers.get("Content-Range") or "").strip()
    match = _RANGE.fullmatch(value)
    if match is None:
        why = "which is not a byte range"
    elif int(match[1]) > int(match[2]):
        why = "which ends before it starts"
    elif match[3] != "*" and int(match[2]) >= int(match[3]):
        why = "which ends after the end of the file"
    else:
        return int(match[1]), int(match[2]), None if match[3] == "*" else int(match[3])
    response.close()
    raise ServerAnswerError(
        f"answered a request for bytes={span} with Content-Range {value!r}, {why}: a broken answer"
    )


def _another_range(span: str, where: tuple) -> ServerAnswerError:
    return ServerAnswerError(
        f"answered a request for bytes={span} with bytes {where[0]}-{where[1]}: another range"
    )


def _same_version(response: Any, validator: Optional[str], span: str) -> None:
    """Raise :class:`ServerAnswerError` if a range answer is of another version of the file
    than the ETag ``validator`` (a server that ignores ``If-Range``)."""
    if validator is not None and _validator(response) != validator:
        response.close()
        raise ServerAnswerError(
            f"answered a request for bytes={span} with If-Range {validator} by a range of "
            f"another version of the file (ETag {response.headers.get('ETag')}): the file "
            "changed during the download, or the server ignores If-Range"
        )


def _read(
    params: dict, seconds: float, span: str, validator: Optional[str] = None
) -> tuple[bytes, tuple, Any]:
    """``(bytes, (first, last, total), validator)`` of one small range request: no more than
    the range asked for is read."""
    response = _open(params, seconds, span, validator)
    where = _content_range(response, span)
    if where is None:
        raise _Whole(response)
    first, _, last = span.partition("-")  # "a-b" or "-n" (the last n bytes)
    asked = int(last) - int(first) + 1 if first else int(last)
    if (first and where[0] != int(first)) or where[1] - where[0] + 1 > asked:
        response.close()
        raise _another_range(span, where)
    _same_version(response, validator, span)
    with response:
        data = response.read(where[1] - where[0] + 1)
    if len(data) != where[1] - where[0] + 1:
        raise ConnectionResetError(errno.ECONNRESET, f"closed after {len(data):,} bytes")
    return data, where, _validator(response)


# -- partial files -----------------------------------------------------------------------------


def _resumable(part: str, state: dict) -> tuple[int, dict]:
    """``(bytes of part, its record)`` when they continue the transfer ``state`` describes
    and the server's strong ETag can check that the file has not changed; ``(0, {})``: start
    anew. A link at either file raises :class:`LinkedFileError`."""
    try:
        with open(open_cache_file(part + ".json", os.O_RDONLY), encoding="utf-8") as handle:
            saved = json.load(handle)
        with open(open_cache_file(part, os.O_RDONLY), "rb") as handle:
            have = os.fstat(handle.fileno()).st_size
    except LinkedFileError:
        raise
    except (OSError, ValueError):
        return 0, {}
    same = isinstance(saved, dict) and all(saved.get(k) == v for k, v in state.items())
    if not same or not saved.get("validator") or have > (saved.get("length") or have):
        return 0, {}
    return have, saved


def _lock(handle: Any, part: str) -> None:
    """Hold ``part`` for this transfer (POSIX): another process that downloads the same file
    fails at once instead of writing into it; the lock goes with the process."""
    try:
        import fcntl
    except ImportError:  # Windows
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        message = f"another process is downloading {part}; wait for it to finish"
        raise BlockingIOError(errno.EWOULDBLOCK, message) from None


def _write_state(part: str, state: dict) -> None:
    """``state`` -> ``<part>.json``, through a new temporary file renamed over it."""
    folder, name = os.path.split(part)
    fd, tmp = tempfile.mkstemp(dir=folder or ".", prefix=f".{name}.json.", suffix=_TMP_SUFFIX)
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
        os.replace(tmp, part + ".json")
    except BaseException:
        os.unlink(tmp)
        raise


def _save(response: Any, params: dict, part: str, state: dict, have: int, limit: int) -> int:
    """Write the body of ``response`` into ``part`` from byte ``have`` on (the record of what
    it is written first): exactly ``state["length"] - have`` bytes, or where the length is not
    known all until the answer ends, at most ``limit`` in all. The bytes in ``part``;
    ConnectionResetError if the answer ends early, :class:`ServerAnswerError` if it holds
    more than ``limit``."""
    from tqdm import tqdm

    length = state["length"]
    style = dict(total=length, initial=have, unit="B", unit_scale=True, unit_divisor=1024)
    bar = tqdm(desc=params["desc"], disable=not params["progress"], **style)
    with response, open(open_cache_file(part, os.O_RDWR | os.O_CREAT), "r+b") as sink, bar:
        _lock(sink, part)
        _write_state(part, state)
        sink.seek(have)
        sink.truncate()
        end = limit + 1 if length is None else length
        while have < end and (chunk := response.read(min(1 << 16, end - have))):
            have += sink.write(chunk)
            bar.update(len(chunk))
        sink.flush()
        os.fsync(sink.fileno())
    if have > limit:
        raise ServerAnswerError(f"sent more than the {limit:,} bytes the file may hold")
    if length is not None and have != length:
        raise ConnectionResetError(errno.ECONNRESET, f"closed after {have:,} of {length:,} bytes")
    return have


def _whole_file(response: Any, params: dict, part: str, limit: int) -> int:
    """Save a whole-file (200) answer into ``part``, from zero."""
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.strip().isdigit() else None
    if length is not None and length > limit:
        response.close()
        raise ServerAnswerError(
            f"offers a file of {length:,} bytes (Content-Length), more than the {limit:,} it "
            "may hold"
        )
    state = dict(url=params["url"], validator=_validator(response), start=0, length=length)
    return _save(response, params, part, state, 0, limit)


def fetch_file(params: dict, stage: list, seconds: float) -> dict[str, Any]:
    """``params["url"]`` -> ``params["part"]`` (at most ``params["limit"]`` bytes), continuing
    what an earlier attempt left there where the server's ETag says it is the same file."""
    stage[0] = "download"
    part, limit = params["part"], params["limit"]
    have, state = _resumable(part, {"url": params["url"], "start": 0})
    if have and have == state["length"]:
        return {"bytes": have}
    if have:
        span = f"{have}-"
        try:
            response = _open(params, seconds, span, state["validator"])
        except urllib.error.HTTPError as error:
            if error.code != 416:  # not satisfiable: the file is shorter now
                raise
            error.close()
            response = _open(params, seconds)
        where = _content_range(response, span)
        whole = where is None
        if not whole and where == (have, state["length"] - 1, state["length"]):
            if _validator(response) == state["validator"]:  # it honoured If-Range
                return {"bytes": _save(response, params, part, state, have, limit)}
        if not whole:  # another range, or of another version: start again from zero
            response.close()
            response = _open(params, seconds)
    else:
        response = _open(params, seconds)
    return {"bytes": _whole_file(response, params, part, limit)}


def _locate(params: dict, seconds: float) -> tuple[dict[str, Any], int, Optional[str]]:
    """``(member, start of its data, validator)``: the member ``params["pattern"]`` names, found
    from the end of the remote archive."""
    tail, (first, _, total), validator = _read(params, seconds, f"-{TAIL}")
    if total is None:
        raise ZipFormatError("the server does not say how large the archive is")
    offset, size, entries = _directory_span(tail, first, total)
    for more in (4 * TAIL, _MAX_END + 76):  # a long comment: read more of the end
        if offset == -1:
            tail, (first, _, _), _ = _read(params, seconds, f"-{more}", validator)
            offset, size, entries = _directory_span(tail, first, total)
    if offset == -2:  # a ZIP64 end record outside the tail
        record = _read(params, seconds, f"{size}-{size + 55}", validator)[0]
        offset, size, entries = _zip64_span(record)
    if size > _MAX_DIRECTORY:
        raise ZipFormatError(f"a central directory of {size:,} bytes: not a release archive")
    if offset < first or offset + size > first + len(tail):
        tail, (first, _, _), _ = _read(params, seconds, f"{offset}-{offset + size - 1}", validator)
    directory = tail[offset - first : offset - first + size]
    member = choose(read_directory(directory, entries), params["pattern"], params["limit"])
    header = _read(params, seconds, f"{member['offset']}-{member['offset'] + 29}", validator)[0]
    return member, data_offset(header, member, total), validator


def fetch_member(params: dict, stage: list, seconds: float) -> dict[str, Any]:
    """The raw (compressed) bytes of the member ``params["pattern"]`` of the archive at
    ``params["url"]`` -> ``params["part"]``; ``{"member": ...}`` (its name, method, CRC-32 and
    sizes, for the caller to unpack and check), or ``{"whole": True}`` when the server sent the
    whole archive instead (saved in ``params["archive_part"]``)."""
    stage[0] = "download"
    try:
        member, start, validator = _locate(params, seconds)
        state = dict(url=params["url"], validator=validator, start=start,
                     length=member["compressed"], crc=member["crc"])  # fmt: skip
        have = _resumable(params["part"], state)[0]
        if have < member["compressed"]:
            end = start + member["compressed"] - 1
            span = f"{start + have}-{end}"
            response = _open(params, seconds, span, validator)
            where = _content_range(response, span)
            if where is None:
                raise _Whole(response)
            if where[:2] != (start + have, end):
                response.close()
                raise _another_range(span, where)
            _same_version(response, validator, span)
            _save(response, params, params["part"], state, have, params["limit"])
        return {"member": member}
    except _Whole as whole:
        _whole_file(whole.args[0], params, params["archive_part"], MAX_ARCHIVE_BYTES)
        return {"whole": True}
