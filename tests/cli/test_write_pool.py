"""``deeplabv2 predict`` writes in a pool of threads: a bounded number of images in flight, one
image's write failure is that image's only, and the files are those written inline."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from deeplabv2 import pipeline
from deeplabv2._files import TMP_SUFFIX
from deeplabv2.cli import predict, writers
from deeplabv2.cli.main import main
from deeplabv2.cli.write_pool import WritePool
from deeplabv2.data.images import load_image
from deeplabv2.segmenter import Segmenter


class TinyNet(nn.Module):
    """Output stride 8, 5 classes: the network costs next to nothing, writing dominates."""

    num_classes = 5

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 5, 3, stride=8, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x / 50)


def tiny_segmenter(*args: object) -> Segmenter:
    return Segmenter(TinyNet(), scales=(), pad_to=None, device="cpu")


@pytest.fixture
def tiny(monkeypatch) -> None:
    monkeypatch.setattr(predict, "build_segmenter", tiny_segmenter)


def photos(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        h, w = 24 + i % 5 * 4, 32 + i % 3 * 8
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        paths.append(folder / f"{i:02}.png")
        Image.fromarray(rgb).save(paths[-1])
    return paths


def argv(tmp_path: Path, out: Path, *more: str) -> list[str]:
    return ["predict", str(tmp_path / "in"), "--out", str(out), "--quiet", *more]


def slowed(monkeypatch, seconds: float) -> dict[str, int]:
    """``save_labels`` takes ``seconds`` longer; the most writes seen running at once."""
    real, lock, seen = writers.save_labels, threading.Lock(), {"now": 0, "most": 0}

    def save_labels(*args: object) -> None:
        with lock:
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])
        try:
            time.sleep(seconds)
            real(*args)
        finally:
            with lock:
                seen["now"] -= 1

    monkeypatch.setattr(writers, "save_labels", save_labels)
    return seen


def test_images_in_flight_never_exceed_the_bound(tmp_path, tiny, monkeypatch) -> None:
    """Counted from outside the pool: results the network handed out minus images whose
    writes finished, each time the network is asked for the next one."""
    photos(tmp_path / "in", 50)
    running = slowed(monkeypatch, 0.12)  # the tiny network takes ~40 ms an image
    counts, lock = {"out": 0, "written": 0, "most": 0}, threading.Lock()
    real_stream, real_write = pipeline.stream, predict._write

    def stream(*args: object, **kwargs: object):
        for result in real_stream(*args, **kwargs):
            with lock:
                counts["most"] = max(counts["most"], counts["out"] - counts["written"])
            counts["out"] += 1
            yield result

    def write(*args: object) -> None:
        real_write(*args)
        with lock:
            counts["written"] += 1

    monkeypatch.setattr(pipeline, "stream", stream)  # predict imports it when it runs
    monkeypatch.setattr(predict, "_write", write)
    out = tmp_path / "out"
    assert main(argv(tmp_path, out, "--writers", "2")) == 0
    assert counts["out"] == counts["written"] == 50
    assert 2 < counts["most"] <= 4  # 2 x writers, and the pool did fill up
    assert running["most"] == 2  # two writing threads ran at once
    assert len(list(out.glob("*.png"))) == 50


def test_the_pool_waits_for_the_oldest_at_its_limit() -> None:
    pool: WritePool[int] = WritePool(3)
    order, most = [], 0
    with pool:
        for i in range(40):
            finished = pool.submit(i, lambda: time.sleep(0.002))
            most = max(most, pool.in_flight)
            order += [key for key, outcome in finished if outcome is None]
        order += [key for key, outcome in pool.finish() if outcome is None]
    assert most <= 6 == pool.limit
    assert order == list(range(40))  # outcomes in the order the images were handed in


def test_a_write_failure_skips_that_image_only(tmp_path, tiny, monkeypatch, capsys) -> None:
    photos(tmp_path / "in", 12)
    (tmp_path / "in" / "03.png").write_bytes(b"\x89PNG broken")  # fails before the network
    real = writers.save_overlay

    def save_overlay(path: Path, *args: object) -> None:
        if path.name == "02_overlay.jpg":
            raise PermissionError(f"cannot write {path}: permission denied")
        real(path, *args)

    monkeypatch.setattr(writers, "save_overlay", save_overlay)
    out = tmp_path / "out"
    assert main(argv(tmp_path, out, "--overlay", "--writers", "3")) == 1
    err = capsys.readouterr().err.splitlines()
    skipped = [line for line in err if line.startswith("deeplabv2 predict: skipped")]
    assert len(skipped) == 2
    assert "02_overlay.jpg: permission denied" in skipped[0]  # in the order of the images
    assert "03.png" in skipped[1]
    names = {p.name for p in out.iterdir()}
    others = {
        f"{i:02}{end}" for i in range(12) if i not in (2, 3) for end in (".png", "_overlay.jpg")
    }
    assert names == others | {"02.png"}  # its label PNG was written before the overlay failed


def test_another_error_stops_the_run_and_leaves_no_temporaries(
    tmp_path, tiny, monkeypatch, capsys
) -> None:
    photos(tmp_path / "in", 30)
    real = writers.save_labels

    def save_labels(path: Path, *args: object) -> None:
        if path.name == "05.png":
            raise ValueError("more than 256 classes cannot be stored in an indexed PNG")
        real(path, *args)

    monkeypatch.setattr(writers, "save_labels", save_labels)
    out = tmp_path / "out"
    assert main(argv(tmp_path, out, "--writers", "2")) == 1
    assert "error: more than 256 classes" in capsys.readouterr().err
    assert not list(out.glob(f".*{TMP_SUFFIX}"))
    assert len(list(out.glob("*.png"))) < 30


def test_outputs_are_those_written_inline(tmp_path, tiny) -> None:
    paths = photos(tmp_path / "in", 8)
    pooled, inline, direct = tmp_path / "pooled", tmp_path / "inline", tmp_path / "direct"
    assert main(argv(tmp_path, pooled, "--overlay", "--probs", "--writers", "3")) == 0
    assert main(argv(tmp_path, inline, "--overlay", "--probs", "--writers", "0")) == 0
    files = sorted(p.name for p in pooled.iterdir())
    assert len(files) == 3 * 8 and files == sorted(p.name for p in inline.iterdir())
    for name in files:
        assert (pooled / name).read_bytes() == (inline / name).read_bytes(), name
    segmenter = tiny_segmenter()
    direct.mkdir()
    for path in paths:  # the label PNGs are save_labels' own
        labels = segmenter.predict(load_image(path)).labels.numpy()
        writers.save_labels(direct / f"{path.stem}.png", labels, force=False)
        assert (direct / f"{path.stem}.png").read_bytes() == (
            pooled / f"{path.stem}.png"
        ).read_bytes()


def test_negative_writers_is_a_usage_error(tmp_path, tiny, capsys) -> None:
    photos(tmp_path / "in", 1)
    with pytest.raises(SystemExit) as usage:
        main(argv(tmp_path, tmp_path / "out", "--writers", "-1"))
    assert usage.value.code == 2
    assert "argument --writers: must be >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
