"""Lean, resumable release downloads: one member of a remote zip over HTTP range requests,
resumed after a dropped connection, checked (CRC-32, size, SHA-256) before use, with a whole
archive fallback for servers without ranges. Against :class:`LocalServer` on 127.0.0.1, which
counts the bytes it sends."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
from pathlib import Path
from unittest import mock

import pytest

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from deeplabv2.errors import WeightsFormatError, WeightsUnavailableError
from deeplabv2.weights import remote_zip, resolve_weights

MEMBER = "prototxt_and_model/train_iter_20000.caffemodel"
#: What a member download may move beyond the member's own bytes: the archive's last 4 KiB
#: (end records and central directory), its local header, and the answers' headers.
FEW_KB = 6 * 1024


def payload(size: int, seed: int, compressible: bool = False) -> bytes:
    """``size`` random bytes (about half as large deflated if ``compressible``)."""
    generator = random.Random(seed)
    if compressible:
        return bytes(generator.choice(b"0123456789abcdef") for _ in range(size))
    return generator.randbytes(size)


def make_archive(method: int = zipfile.ZIP_STORED, comment: bytes = b"") -> bytes:
    """A 3-member release-like zip: the member (a few hundred KB) between two others."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.comment = comment
        archive.writestr("prototxt_and_model/train2_iter_20000.caffemodel", payload(200_000, 1))
        archive.writestr(MEMBER, payload(300_000, 2, compressible=True), compress_type=method)
        archive.writestr("prototxt_and_model/test.prototxt", payload(150_000, 3, True), 8)
    return buffer.getvalue()


def zip64_archive(comment: int = 0) -> bytes:
    """A 3-member archive in ZIP64 form: Python writes ZIP64 records and member fields past
    ``ZIP64_LIMIT`` (lowered here); the classic end record's fields are set to 0xFFFF... as
    they are in an archive over 4 GiB (so only the ZIP64 record tells where things are)."""
    with mock.patch.object(zipfile, "ZIP64_LIMIT", 1000):
        archive = bytearray(make_archive(zipfile.ZIP_DEFLATED, comment=b"c" * comment))
    end = archive.rindex(b"PK\x05\x06", 0, len(archive) - comment)
    archive[end + 8 : end + 20] = b"\xff" * 12  # entries (2 x 2 bytes), size, offset
    assert b"PK\x06\x06" in archive and b"PK\x06\x07" in archive  # ZIP64 end records
    return bytes(archive)


def member_of(archive: bytes, name: str = MEMBER) -> tuple[bytes, zipfile.ZipInfo]:
    """The member's bytes and record, read by Python's zipfile (the reference)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        return zipped.read(name), zipped.getinfo(name)


def cached(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def with_records(*names: str) -> list[str]:
    """What :func:`cached` lists for these cache files: each with its SHA-256 record."""
    return sorted([*names, *(f"{name}.sha256" for name in names)])


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_one_member_moves_only_its_bytes_and_a_few_kilobytes(release, method):
    archive = make_archive(method)
    expected, info = member_of(archive)
    server, load = release(archive, sha256=hashlib.sha256(expected).hexdigest())
    path = load()
    assert path.read_bytes() == expected
    assert server.sent <= info.compress_size + FEW_KB, (server.sent, info.compress_size)
    assert all("range" in fields for fields in server.headers), server.headers
    assert len(server.headers) == 3  # the archive's end, the member's local header, its data
    assert cached(release.checkpoints) == with_records(path.name), "no archive, no partial"
    assert load() == path and len(server.headers) == 3, "a cached member needs no request"


def test_a_dropped_connection_is_resumed_with_a_range_request(release):
    archive = make_archive(zipfile.ZIP_DEFLATED)
    expected, info = member_of(archive)
    server, load = release(archive)
    server.drop_after = info.compress_size // 2  # only the member's answer is that long
    with pytest.raises(WeightsUnavailableError, match="connection to 127.0.0.1:.* broke"):
        load()
    part = release.checkpoints / "deeplab_v2_resnet101.test-range.caffemodel.part"
    kept = part.stat().st_size
    assert 0 < kept <= info.compress_size // 2
    first = len(server.headers)
    assert load().read_bytes() == expected
    resumed = server.headers[-1]
    start = info.header_offset + len(info.FileHeader())  # where the member's data starts
    assert resumed["range"] == f"bytes={start + kept}-{start + info.compress_size - 1}"
    assert resumed["if-range"] == server.etag
    assert all("range" in fields for fields in server.headers[first:])
    assert server.sent <= info.compress_size + 2 * FEW_KB, (server.sent, info.compress_size)
    assert cached(release.checkpoints) == with_records("deeplab_v2_resnet101.test-range.caffemodel")


def test_a_changed_archive_is_not_mixed_with_the_partial_download(release):
    archive = make_archive()
    server, load = release(archive)
    server.drop_after = member_of(archive)[1].compress_size // 2
    with pytest.raises(WeightsUnavailableError):
        load()
    server.content, server.etag = make_archive(zipfile.ZIP_DEFLATED), '"v2"'
    assert load().read_bytes() == member_of(server.content)[0]


def test_without_range_support_the_whole_archive_is_downloaded(release):
    archive = make_archive(zipfile.ZIP_DEFLATED)
    server, load = release(archive)
    server.ranges = False
    assert load().read_bytes() == member_of(archive)[0]
    assert server.sent >= len(archive)
    names = ["deeplab_v2_resnet101.test-range.caffemodel", "release-prototxt_and_model.zip"]
    assert cached(release.checkpoints) == with_records(*names)  # the archive is kept, as before


def test_a_whole_file_restarts_from_zero_when_the_server_ignores_the_range(release):
    content = payload(400_000, 4)
    server, load = release(content, member=None)
    server.drop_after = 200_000
    with pytest.raises(WeightsUnavailableError, match="broke"):
        load()
    server.ranges = False
    assert load().read_bytes() == content
    assert server.headers[-1]["range"].startswith("bytes=")  # asked to resume; got it all
    assert cached(release.checkpoints) == with_records("release-prototxt_and_model.zip")


def test_a_whole_file_is_resumed(release):
    content = payload(400_000, 5)
    server, load = release(content, member=None)
    server.drop_after = 150_000
    with pytest.raises(WeightsUnavailableError):
        load()
    assert load().read_bytes() == content
    assert server.headers[-1]["range"].startswith("bytes=") and server.sent < 420_000


def test_an_altered_member_byte_is_a_crc_error_and_nothing_is_cached(release):
    archive = bytearray(make_archive())
    info = member_of(bytes(archive))[1]
    archive[info.header_offset + len(info.FileHeader()) + 1000] ^= 0xFF
    server, load = release(bytes(archive))
    with pytest.raises(WeightsFormatError, match="corrupt .*CRC-32 .* records CRC-32") as error:
        load()
    assert "train_iter_20000.caffemodel" in str(error.value)
    assert cached(release.checkpoints) == []


def test_a_member_whose_sha256_differs_is_refused_and_nothing_is_cached(release):
    server, load = release(make_archive(zipfile.ZIP_DEFLATED), sha256="0" * 64)
    with pytest.raises(WeightsFormatError, match="SHA-256 .* does not match"):
        load()
    assert cached(release.checkpoints) == []


def test_a_member_larger_than_the_weights_can_be_is_refused_before_its_bytes_move(release):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        with zipped.open(MEMBER, "w") as member:
            for _ in range(80):  # 80 MB of zeros: about 80 kB deflated
                member.write(bytes(1 << 20))
    server, load = release(buffer.getvalue())
    with pytest.raises(WeightsFormatError, match="declares 83,886,080 bytes, more than"):
        load()
    assert server.sent < FEW_KB and cached(release.checkpoints) == []


def test_an_unsupported_compression_method_is_a_clear_error(release):
    server, load = release(make_archive(zipfile.ZIP_BZIP2))
    with pytest.raises(WeightsFormatError, match="compression method 12; only stored"):
        load()
    assert cached(release.checkpoints) == []


@pytest.mark.parametrize("comment", [10_000, remote_zip.TAIL - 22 - 10])
def test_zip64_archive_and_a_long_comment(release, comment):
    """ZIP64 end records and member fields (Python writes them past ZIP64_LIMIT, lowered here),
    and an end record behind a comment longer than the first read of the archive's end, or
    one that leaves the ZIP64 locator just before it."""
    archive = zip64_archive(comment)
    expected, info = member_of(archive)
    server, load = release(archive)
    assert load().read_bytes() == expected
    assert server.sent <= info.compress_size + remote_zip.TAIL * 5 + FEW_KB  # 4 KiB, 16 KiB


@pytest.mark.parametrize("zip64", [False, True])
def test_the_central_directory_reads_as_pythons_zipfile_reads_it(zip64):
    archive = zip64_archive() if zip64 else make_archive(zipfile.ZIP_DEFLATED)
    offset, size, entries = remote_zip._directory_span(archive, 0, len(archive))
    members = remote_zip.read_directory(archive[offset : offset + size], entries)
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        reference = [
            dict(name=i.filename, method=i.compress_type, flags=i.flag_bits, crc=i.CRC,
                 compressed=i.compress_size, size=i.file_size, offset=i.header_offset)
            for i in zipped.infolist()
        ]  # fmt: skip
    assert members == reference
    if zip64:
        assert b"\xff\xff\xff\xff" in archive[offset : offset + size]  # fields in the extra


def test_the_progress_bar_shows_the_member_size(release, capfd):
    from tqdm import tqdm

    archive = make_archive()
    release(archive)
    resolve_weights("deeplab_v2_resnet101.test-range", progress=True)
    size = member_of(archive)[1].compress_size
    error = capfd.readouterr().err
    assert f"/{tqdm.format_sizeof(size, divisor=1024)} [" in error, error[-500:]
    assert "deeplab_v2_resnet101.test-range.caffemodel" in error


@pytest.mark.skipif(fcntl is None, reason="needs fcntl (POSIX)")
def test_a_download_in_progress_elsewhere_is_not_written_into(release):
    archive = make_archive()
    server, load = release(archive)
    release.checkpoints.mkdir(parents=True)
    part = release.checkpoints / "deeplab_v2_resnet101.test-range.caffemodel.part"
    with open(part, "wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as another process's transfer holds it
        with pytest.raises(WeightsUnavailableError, match="another process is downloading"):
            load()
    assert load().read_bytes() == member_of(archive)[0]
