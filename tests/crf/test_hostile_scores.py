"""``crf`` among hostile score files: arrays declared larger than their image, deflate bombs,
garbage and broken pickles are each that file's error (named, skipped, exit 1 at the end);
and a run killed half-way through an image is finished by the next one."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from deeplabv2.cli import main, writers
from deeplabv2.crf import load_scores
from deeplabv2.data.images import read_label

from .test_pseudo import tiny_inputs

RUN = ["--crf-params", "irn", "--crf-workers", "0", "--quiet"]


def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """The bytes of an ``.npy`` header declaring ``shape`` (no data follows)."""
    handle = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(handle, header)
    return handle.getvalue()


def write_npz(path: Path, members: dict[str, bytes], compress: bool = False) -> None:
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)


def keys_member(keys=(7, 14)) -> bytes:
    handle = io.BytesIO()
    np.save(handle, np.array(keys))
    return handle.getvalue()


def bomb(path: Path, megabytes: int) -> None:
    """``high_res`` declaring (4, 8192, megabytes * 8) float32 zeros, deflated (a bomb)."""
    shape = (4, 8192, megabytes * 8)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("high_res.npy", "w", force_zip64=True) as member:
            member.write(npy_header(shape))
            zeros = bytes(1 << 20)
            for _ in range(4 * 8192 * megabytes * 8 * 4 >> 20):
                member.write(zeros)
        archive.writestr("keys.npy", keys_member((7, 14, 3, 4)))


def run_crf(images: Path, scores: Path, out: Path, *extra: str) -> int:
    return main(["crf", str(images), str(scores), "--out", str(out), *RUN, *extra])


def test_a_declared_36_tib_array_is_that_files_error(tmp_path, capsys):
    images, scores = tiny_inputs(tmp_path, stems=("a", "b", "c"))
    write_npz(scores / "b.npz", {"high_res": npy_header((2, 1 << 22, 1 << 20)),
                                 "keys": keys_member()})  # fmt: skip
    assert run_crf(images, scores, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "b.npz (member high_res.npy): declares" in err and "its image has 5265" in err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.png", "c.png"]


def test_a_deflate_bomb_is_refused_before_it_is_inflated(tmp_path, capsys):
    images, scores = tiny_inputs(tmp_path, stems=("a", "b"))
    bomb(scores / "b.npz", 256)  # 256 MiB of zeros in about 250 kB
    assert (scores / "b.npz").stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"b\.npz \(member high_res\.npy\): declares"):
            load_scores(scores / "b.npz", size=(65, 81))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak  # numpy's and zlib's buffers are traced: nothing inflated
    assert run_crf(images, scores, tmp_path / "out") == 1
    assert "b.npz (member high_res.npy): declares" in capsys.readouterr().err
    assert (tmp_path / "out" / "a.png").is_file()


def test_members_that_are_not_needed_are_not_read(tmp_path):
    images, scores = tiny_inputs(tmp_path, stems=("a",))
    good = np.load(scores / "a.npz")
    handle = io.BytesIO()
    np.save(handle, good["high_res"])
    write_npz(scores / "a.npz", {"high_res": handle.getvalue(), "keys": keys_member(),
                                 "extra": npy_header((1 << 30, 1 << 30))})  # fmt: skip
    loaded = load_scores(scores / "a.npz", size=(65, 81))
    np.testing.assert_array_equal(loaded.values, good["high_res"])


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_garbage_and_broken_pickles_are_that_files_error(tmp_path, capsys, allow_pickle):
    images, scores = tiny_inputs(tmp_path, stems=("a", "b", "c", "d"))
    (scores / "b.npz").unlink()
    (scores / "b.npy").write_bytes(b"\x80\x04garbage that is no pickle" * 10)
    (scores / "c.npz").write_bytes(b"neither zip nor numpy " * 10)
    pickled = io.BytesIO()  # an object member whose pickle is cut short
    np.save(pickled, np.array([{"high_res": 1}], dtype=object), allow_pickle=True)
    write_npz(scores / "d.npz", {"high_res": pickled.getvalue()[:-5], "keys": keys_member()})
    extra = ("--allow-pickle",) if allow_pickle else ()
    assert run_crf(images, scores, tmp_path / "out", *extra) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "skipped" in line]
    assert len(lines) == 3, err
    assert "c.npz: not a numpy .npy/.npz file" in err  # not called "pickled Python objects"
    if allow_pickle:
        assert "b.npy: cannot be read (UnpicklingError" in err
        assert "d.npz (member high_res.npy): cannot be read" in err
    else:
        assert "b.npy: it holds pickled Python objects" in err
        assert "d.npz (member high_res.npy): it holds pickled Python objects" in err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.png"]


def test_a_run_killed_between_probs_and_label_is_finished(tmp_path, capsys):
    images, scores = tiny_inputs(tmp_path, stems=("a", "b"))
    out = tmp_path / "out"
    assert run_crf(images, scores, out, "--save-probs") == 0
    want = read_label(out / "b.png")
    (out / "b.png").unlink()  # killed after b_probs.npz, before b.png
    stale = out / "b_probs.npz"
    stale.write_bytes(b"half written by a killed run")
    assert run_crf(images, scores, out, "--save-probs") == 0
    assert "wrote 1 pseudo-labels" in capsys.readouterr().out
    np.testing.assert_array_equal(read_label(out / "b.png"), want)
    assert np.load(stale)["probs"].shape[1:] == (3, 65, 81)


def test_a_killed_force_run_leaves_no_label_of_the_old_settings(tmp_path, monkeypatch):
    images, scores = tiny_inputs(tmp_path, stems=("a", "b", "c"))
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    assert run_crf(images, scores, out) == 0  # irn
    psa = ["--crf-params", "psa"]
    assert main(["crf", str(images), str(scores), "--out", str(fresh), *RUN, *psa]) == 0
    real, calls = writers.save_labels, []

    def killed_after_one(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(args)
        real(*args, **kwargs)

    monkeypatch.setattr(writers, "save_labels", killed_after_one)
    assert run_crf(images, scores, out, *psa, "--force") == 130
    monkeypatch.setattr(writers, "save_labels", real)
    assert len(list(out.glob("*.png"))) == 1  # the old labels went before the new ones came
    assert run_crf(images, scores, out, *psa) == 0  # resumed with the new settings
    for stem in ("a", "b", "c"):
        np.testing.assert_array_equal(read_label(out / f"{stem}.png"),
                                      read_label(fresh / f"{stem}.png"))  # fmt: skip


@pytest.mark.parametrize(
    ("option", "value"),
    [("--crf-workers", "-1"), ("--batch-size", "0"), ("--min-confidence", "1.5"),
     ("--bg-threshold", "-0.1"), ("--max-pixels", "0"), ("--bg-alpha", "nan")],
)  # fmt: skip
def test_out_of_range_values_are_usage_errors(tmp_path, capsys, option, value):
    images, scores = tiny_inputs(tmp_path)
    with pytest.raises(SystemExit) as usage:
        run_crf(images, scores, tmp_path / "out", option, value)
    assert usage.value.code == 2
    assert f"argument {option}: must be" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
