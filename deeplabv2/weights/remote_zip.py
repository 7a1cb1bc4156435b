"""Resumable HTTP transfers of a whole file or of one member of a remote zip archive.

Runs in the network helper process of :mod:`deeplabv2.weights.network`, which loads this file by
its path (the package imports torch): standard library only, no package imports.

A member (:func:`fetch_member`) costs three small range requests and its own bytes: the last
:data:`TAIL` bytes of the archive (its end records, ZIP64 ones included, and usually the whole
central directory; more only where a long comment or a large directory needs it), the member's
30-byte local header, then its stored or deflated data. A server that answers a range request
with the whole file (HTTP 200) gets the whole archive saved instead, for the caller to extract.

Resuming: the bytes received so far stay in a partial file (``<cache file>.part``) next to a
small record of what they are (``<partial file>.json``: the URL, the server's validator, where
they start in the remote file and how many there are to come). The next attempt asks for the
rest (``Range: bytes=N-``) with ``If-Range`` set to the validator (a strong ``ETag``, else
``Last-Modified``) when the server gave one; an answer with the whole file (the server ignores
ranges, or the file changed) starts again from zero.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
import struct
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
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class ZipFormatError(ValueError):
    """An archive or member that cannot be used: the message says why."""


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
    """What identifies this version of the file for ``If-Range``: a strong ETag, else the date."""
    etag = response.headers.get("ETag")
    return etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")


def _content_range(response: Any) -> Optional[tuple[int, int, Optional[int]]]:
    """``(first, last, total)`` of a 206 answer (total None if unknown); None for the whole file."""
    if getattr(response, "status", None) != 206:
        return None
    match = _RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
    if match is None:
        raise ZipFormatError(f"a 206 answer with Content-Range {response.headers['Content-Range']}")
    return int(match[1]), int(match[2]), None if match[3] == "*" else int(match[3])


def _read(
    params: dict, seconds: float, span: str, validator: Optional[str] = None
) -> tuple[bytes, tuple, Any]:
    """``(bytes, (first, last, total), validator)`` of one small range request."""
    response = _open(params, seconds, span, validator)
    where = _content_range(response)
    if where is None:
        raise _Whole(response)
    with response:
        data = response.read(where[1] - where[0] + 1)
    if len(data) != where[1] - where[0] + 1:
        raise ConnectionResetError(errno.ECONNRESET, f"closed after {len(data):,} bytes")
    return data, where, _validator(response)


# -- partial files -----------------------------------------------------------------------------


def _resumable(part: str, state: dict) -> int:
    """Bytes of ``part`` that continue the transfer ``state`` describes (0: start anew)."""
    try:
        with open(part + ".json", encoding="utf-8") as handle:
            saved = json.load(handle)
        have = os.path.getsize(part)
    except (OSError, ValueError):
        return 0
    same = all(saved.get(key) == value for key, value in state.items())
    return have if same and have <= (saved.get("length") or have) else 0


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


def _save(response: Any, params: dict, part: str, state: dict, have: int) -> int:
    """Write the body of ``response`` into ``part`` from byte ``have`` on (the record of what
    it is written first); the bytes in ``part``, or ConnectionResetError if it ends early."""
    from tqdm import tqdm

    length = state["length"]
    style = dict(total=length, initial=have, unit="B", unit_scale=True, unit_divisor=1024)
    bar = tqdm(desc=params["desc"], disable=not params["progress"], **style)
    with response, open(os.open(part, os.O_RDWR | os.O_CREAT, 0o644), "r+b") as sink, bar:
        _lock(sink, part)
        with open(part + ".json.tmp", "w", encoding="utf-8") as handle:
            json.dump(state, handle)
        os.replace(part + ".json.tmp", part + ".json")
        sink.seek(have)
        sink.truncate()
        while chunk := response.read(1 << 16):
            have += sink.write(chunk)
            bar.update(len(chunk))
        sink.flush()
        os.fsync(sink.fileno())
    if length is not None and have != length:
        raise ConnectionResetError(errno.ECONNRESET, f"closed after {have:,} of {length:,} bytes")
    return have


def _whole_file(response: Any, params: dict, part: str) -> int:
    """Save a whole-file (200) answer into ``part``, from zero."""
    length = response.headers.get("Content-Length")
    state = dict(url=params["url"], validator=_validator(response), start=0,
                 length=int(length) if length else None)  # fmt: skip
    return _save(response, params, part, state, 0)


def fetch_file(params: dict, stage: list, seconds: float) -> dict[str, Any]:
    """``params["url"]`` -> ``params["part"]``, continuing what an earlier attempt left there."""
    stage[0] = "download"
    part = params["part"]
    have = _resumable(part, {"url": params["url"], "start": 0})
    if have:
        with open(part + ".json", encoding="utf-8") as handle:
            state = json.load(handle)
        if have == state["length"]:
            return {"bytes": have}
        response = _open(params, seconds, f"{have}-", state["validator"])
        where = _content_range(response)
        if where is not None and where[0] == have and where[2] == state["length"]:
            return {"bytes": _save(response, params, part, state, have)}
        if where is not None:  # not the range asked for: start again with the whole file
            response.close()
            response = _open(params, seconds)
    else:
        response = _open(params, seconds)
    return {"bytes": _whole_file(response, params, part)}


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
        have = _resumable(params["part"], state)
        if have < member["compressed"]:
            end = start + member["compressed"] - 1
            response = _open(params, seconds, f"{start + have}-{end}", validator)
            where = _content_range(response)
            if where is None:
                raise _Whole(response)
            if where[0] != start + have:
                raise ZipFormatError(f"asked for bytes {start + have}- and got {where[0]}-")
            _save(response, params, params["part"], state, have)
        return {"member": member}
    except _Whole as whole:
        _whole_file(whole.args[0], params, params["archive_part"])
        return {"whole": True}
