"""Destinations: probed before any work, and every failed write names the user's path.

Tests run as root here, where a read-only folder is still writable: an unwritable destination is
simulated by a path under a regular file, or by a failing ``mkstemp`` (what a user without write
permission, or with a full or read-only disk, gets from the operating system).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest

from deeplabv2 import _files
from deeplabv2._files import TMP_SUFFIX, atomic_write, check_destination, check_writable


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_writable_destination_passes_and_leaves_nothing(tmp_path):
    assert check_writable(tmp_path / "out.png") == tmp_path / "out.png"
    assert check_writable(tmp_path / "new" / "deeper" / "out.png") == (
        tmp_path / "new" / "deeper" / "out.png"
    )
    assert check_writable(tmp_path / "new", folder=True) == tmp_path / "new"
    assert leftovers(tmp_path) == []  # neither probe files nor folders


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "file.txt").write_text("mine")
    target = tmp_path / "file.txt" / "out" / "x.png"
    with pytest.raises(NotADirectoryError) as caught:
        check_writable(target)
    message = str(caught.value)
    assert str(target) in message and f"{tmp_path / 'file.txt'} is a file" in message
    with pytest.raises(NotADirectoryError, match="is a file"):
        check_destination(target, force=False)
    assert (tmp_path / "file.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (errno.EACCES, PermissionError, "permission denied"),
        (errno.EROFS, OSError, "read-only file system"),
        (errno.ENOSPC, OSError, "no space left"),
    ],
)
def test_what_a_user_without_write_access_gets(tmp_path, monkeypatch, code, kind, words):
    """What a non-root user, a read-only mount or a full disk gives: the user's path and the fix,
    never the name of a probe or a temporary file."""

    def refuse(*args, dir=None, prefix="", suffix="", **kwargs):
        name = os.path.join(dir or ".", f"{prefix}abcd{suffix}")
        raise OSError(code, os.strerror(code), name)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = tmp_path / "out" / "scores.json"
    for attempt in (
        lambda: check_writable(target),
        lambda: check_destination(target, force=False),
        lambda: atomic_write(target, lambda tmp: Path(tmp).write_text("{}")),
    ):
        with pytest.raises(kind) as caught:
            attempt()
        message = str(caught.value)
        assert str(target) in message and words in message, message
        assert TMP_SUFFIX not in message and "abcd" not in message, message
        assert caught.value.errno == code
    assert not target.exists()


def test_a_failing_write_names_the_destination_not_the_temporary(tmp_path):
    target = tmp_path / "x.png"

    def full_disk(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", tmp)

    with pytest.raises(OSError) as caught:
        atomic_write(target, full_disk)
    message = str(caught.value)
    assert str(target) in message and "no space left" in message
    assert TMP_SUFFIX not in message
    assert leftovers(tmp_path) == []  # the temporary is gone


def test_other_errors_of_the_writer_pass_unchanged(tmp_path):
    def bad(tmp: str) -> None:
        raise OSError("cannot write mode RGBA as JPEG")

    with pytest.raises(OSError, match="^cannot write mode RGBA as JPEG$"):
        atomic_write(tmp_path / "x.jpg", bad)


def test_the_probe_is_not_repeated_by_atomic_write(tmp_path, monkeypatch):
    """atomic_write's own temporary file is its probe: no second file is created."""
    created = []
    original = tempfile.mkstemp

    def counting(*args, **kwargs):
        created.append(kwargs.get("prefix"))
        return original(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", counting)
    atomic_write(tmp_path / "a.txt", lambda tmp: Path(tmp).write_text("a"))
    assert len(created) == 1
    assert _files.TMP_SUFFIX == ".deeplabv2-tmp"
