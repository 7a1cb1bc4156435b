"""What a shared cache and a misbehaving server cannot do to a release download (issue 27): make
it write through a link planted in the cache, get a file spliced from two versions cached as
complete, make it write more bytes than it asked for, or end it with an internal message. Against
:class:`LocalServer` on 127.0.0.1, through ``resolve_weights`` (the ``release`` fixture)."""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path

import pytest

from deeplabv2.errors import WeightsFormatError, WeightsUnavailableError
from deeplabv2.weights import release as release_module

from .test_range_download import cached, make_archive, member_of, payload, with_records

MEMBER_FILE = "deeplab_v2_resnet101.test-range.caffemodel"  # the cache name of a member
WHOLE_FILE = "release-prototxt_and_model.zip"  # ... of a whole file (/release/<name>)
NOTES = "my own notes\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def victim(tmp_path) -> Path:
    """A user's file outside the cache, readable by its owner only."""
    path = tmp_path / "notes.txt"
    path.write_text(NOTES)
    path.chmod(0o600)
    return path


def untouched(victim: Path) -> None:
    assert victim.read_text() == NOTES
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


def plant(kind: str, target: Path, at: Path) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    (os.symlink if kind == "symlink" else os.link)(target, at)


def interrupted(load, server, after: int) -> None:
    """A first download that the server drops after ``after`` bytes of the file's answer."""
    server.drop_after = after
    with pytest.raises(WeightsUnavailableError, match="broke"):
        load()


# -- 1. writing through a planted link ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
@pytest.mark.parametrize("member", [None, "train_iter_*.caffemodel"], ids=["whole", "member"])
def test_a_link_planted_at_the_partial_file_costs_its_target_nothing(release, victim, kind, member):
    server, load = release(make_archive(), member=member)
    name = WHOLE_FILE if member is None else MEMBER_FILE
    part = release.checkpoints / f"{name}.part"
    plant(kind, victim, part)
    with pytest.raises(PermissionError, match="never writes or reads its own files through a"):
        load()
    untouched(victim)
    assert not (release.checkpoints / name).exists()
    assert server.headers == [], "refused before any request"


@pytest.mark.parametrize("suffix", [".part.json.tmp", ".part.json", ".sha256"])
def test_a_link_planted_at_a_record_costs_its_target_nothing(release, victim, suffix):
    """The records of a download: ``.part.json`` (and the temporary file it was once written
    through, ``.part.json.tmp``), and the SHA-256 record of the cache file."""
    content = payload(300_000, 6)
    server, load = release(content, member=None)
    plant("symlink", victim, release.checkpoints / f"{WHOLE_FILE}{suffix}")
    if suffix == ".part.json.tmp":  # a name the cache no longer writes: the download goes on
        assert load().read_bytes() == content
    else:
        with pytest.raises(PermissionError, match=f"{WHOLE_FILE}{suffix} is a symbolic link"):
            load()
    untouched(victim)
    assert not (release.checkpoints / WHOLE_FILE).is_symlink()


def test_a_link_planted_at_the_partial_file_of_a_resume_costs_its_target_nothing(release, victim):
    """A partial download in the cache replaced by a link between two attempts."""
    content = payload(400_000, 16)
    server, load = release(content, member=None)
    interrupted(load, server, 200_000)
    part = release.checkpoints / f"{WHOLE_FILE}.part"
    part.unlink()
    plant("symlink", victim, part)
    with pytest.raises(PermissionError, match=f"{part} is a symbolic link"):
        load()
    untouched(victim)
    part.unlink()
    assert load().read_bytes() == content


# -- 2. a spliced file cached as complete ------------------------------------------------------


@pytest.mark.parametrize(
    "etag, date",
    [(None, None), ('W/"v1"', None), (None, "Wed, 21 Oct 2015 07:28:00 GMT")],
    ids=["no-validator", "weak-etag", "last-modified-only"],
)
def test_without_a_strong_etag_a_whole_file_starts_again_from_zero(release, etag, date):
    """The file changes between two attempts while what the server says of it does not (a
    weak ETag may; a date has a one-second resolution): resuming would join two versions."""
    old, new = payload(400_000, 7), payload(400_000, 8)
    server, load = release(old, member=None)
    server.etag, server.last_modified = etag, date
    interrupted(load, server, 200_000)
    server.content = new
    assert load().read_bytes() == new
    assert "range" not in server.headers[-1], "started from zero"
    assert cached(release.checkpoints) == with_records(WHOLE_FILE)


def test_a_server_that_ignores_if_range_does_not_get_two_versions_joined(release):
    old, new = payload(400_000, 10), payload(400_000, 11)
    server, load = release(old, member=None)
    interrupted(load, server, 200_000)
    server.content, server.etag, server.if_range = new, '"v2"', False
    assert load().read_bytes() == new  # its 206 answer carried another ETag: from zero
    assert server.headers[-2]["if-range"] == '"v1"' and "range" not in server.headers[-1]


def test_a_whole_answer_to_a_resume_is_written_from_zero(release):
    """The file changed (a new ETag): the server honours If-Range with the whole new file, which
    is shorter than what the partial file already holds; it replaces it, truncated."""
    old, new = payload(400_000, 19), payload(250_000, 20)
    server, load = release(old, member=None)
    interrupted(load, server, 300_000)
    server.content, server.etag = new, '"v2"'
    assert load().read_bytes() == new
    assert server.headers[-1]["if-range"] == '"v1"' and len(server.headers) == 2


def test_a_member_is_resumed_only_with_a_strong_etag(release):
    archive = make_archive(zipfile.ZIP_DEFLATED)
    expected, info = member_of(archive)
    server, load = release(archive)
    server.etag = None
    interrupted(load, server, info.compress_size // 2)
    assert load().read_bytes() == expected
    start = info.header_offset + len(info.FileHeader())
    assert server.headers[-1]["range"] == f"bytes={start}-{start + info.compress_size - 1}"


def test_a_file_named_with_a_sha256_prefix_is_checked_against_it(release):
    """torch.hub's convention (``resnet101-63fe2227.pth``): a server that keeps its ETag and
    ignores If-Range splices two versions; the name's SHA-256 prefix finds it out."""
    old, new = payload(400_000, 12), payload(400_000, 13)
    name = f"resnet-{sha256(old)[:8]}.pth"
    server, load = release(old, member=None, name=name)
    interrupted(load, server, 200_000)
    server.content, server.if_range = new, False
    with pytest.raises(WeightsFormatError, match=f"does not start with {sha256(old)[:8]}"):
        load()
    assert cached(release.checkpoints) == [], "nothing of it is kept"
    server.content = old
    assert load().read_bytes() == old
    assert cached(release.checkpoints) == with_records(f"release-{name}")


@pytest.mark.parametrize("member", [None, "train_iter_*.caffemodel"], ids=["whole", "member"])
def test_a_cached_file_is_checked_against_the_sha256_recorded_at_its_download(release, member):
    archive = make_archive()
    server, load = release(archive, member=member)
    path = load()
    expected = archive if member is None else member_of(archive)[0]
    record = path.with_name(f"{path.name}.sha256")
    assert record.read_text() == f"{sha256(expected)}  {path.name}\n"  # as sha256sum writes
    changed = bytearray(path.read_bytes())
    changed[1000] ^= 1  # a bit flipped on disk, or the file replaced
    path.write_bytes(bytes(changed))
    with pytest.raises(WeightsFormatError, match="recorded in .* first downloaded") as error:
        load()
    assert str(record) in str(error.value) and "was removed" in str(error.value)
    assert cached(release.checkpoints) == [record.name], "the file is gone, its record stays"
    assert load().read_bytes() == expected


def test_a_later_download_is_checked_against_the_recorded_sha256(release):
    old, new = payload(300_000, 14), payload(300_000, 15)
    server, load = release(old, member=None)
    load().unlink()  # removed by hand: its record stays
    server.content = new  # changed on the server, with nothing that says so
    with pytest.raises(WeightsFormatError, match=f"does not match {sha256(old)}, recorded"):
        load()
    assert cached(release.checkpoints) == [f"{WHOLE_FILE}.sha256"]


# -- 3. unbounded bytes ------------------------------------------------------------------------


def test_a_range_answer_that_runs_past_its_range_is_read_no_further(release):
    """206 answers without Content-Length whose bodies go on for megabytes past the range."""
    archive = make_archive()
    server, load = release(archive)
    server.overrun = 8 << 20
    assert load().read_bytes() == member_of(archive)[0]
    assert cached(release.checkpoints) == with_records(MEMBER_FILE)


def test_a_resumed_answer_that_runs_past_the_file_is_read_no_further(release):
    content = payload(400_000, 17)
    server, load = release(content, member=None)
    interrupted(load, server, 200_000)
    server.overrun = 8 << 20
    assert load().read_bytes() == content
    assert server.headers[-1]["range"] == "bytes=200000-"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-closed"])
def test_a_whole_file_larger_than_the_weights_can_be_is_refused(release, monkeypatch, declared):
    monkeypatch.setattr(release_module, "member_limit", lambda weights: 100_000)
    server, load = release(payload(300_000 if declared else 50_000, 18), member=None)
    server.overrun = 0 if declared else 4 << 20  # no Content-Length: the body ends at close
    with pytest.raises(WeightsUnavailableError) as error:
        load()
    message = str(error.value)
    assert f"{server.host} " in message and "than the 100,000" in message, message
    assert cached(release.checkpoints) == [], "nothing of it is kept"


# -- messages ----------------------------------------------------------------------------------


def test_a_reversed_content_range_is_one_line_naming_the_servers_answer(release):
    server, load = release(make_archive())
    server.content_range = "bytes 5000-100/300000"
    with pytest.raises(WeightsUnavailableError) as error:
        load()
    message = str(error.value)
    assert "\n" not in message and "non-negative" not in message, message
    expected = f"{server.host} answered a request for bytes=-4096 with Content-Range "
    assert expected + "'bytes 5000-100/300000', which ends before it starts" in message, message
    assert cached(release.checkpoints) == []
