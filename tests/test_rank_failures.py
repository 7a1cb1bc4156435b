"""torchrun (2 gloo ranks on the CPU) when one rank fails: a bad image is skipped as in one
process, a fatal error stops every rank within seconds, and no process outlives the run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from deeplabv2._files import TMP_SUFFIX
from deeplabv2.data.classes import voc_palette

from .voc_fixture import NAMES, write_voc

ROOT = Path(__file__).resolve().parents[1]
MARK = "DEEPLABV2_TEST_RUN"
FAST = ["--single-scale", "--pad-to", "none", "--quiet"]

# torchrun runs this script instead of `-m deeplabv2` where a test injects a fault in rank 1.
LAUNCH = """
import os, sys, time
from pathlib import Path
from deeplabv2.cli import main
fault = os.environ.get("TEST_FAULT", "")
if fault and os.environ["RANK"] == "1":
    from deeplabv2.segmenter import Segmenter
    original = Segmenter.probabilities_batch
    def faulty(self, *args, **kwargs):
        if fault == "error":
            raise RuntimeError("injected fault on rank 1")
        Path(os.environ["TEST_STARTED"]).touch()
        time.sleep(float(fault))  # a slow image
        return original(self, *args, **kwargs)
    Segmenter.probabilities_batch = faulty
sys.exit(main())
"""


def marked(marker: str) -> list[int]:
    """The live processes whose environment holds ``marker`` (every process of one run)."""
    tag = f"{MARK}={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:  # gone, or not ours
                continue
    return pids


def gone(marker: str, within: float) -> bool:
    end = time.monotonic() + within
    while marked(marker):
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


class Torchrun:
    """A 2-rank ``torchrun`` in its own session; stderr lines are kept with their times."""

    def __init__(self, args: list[str], tmp_path: Path, fault: str = "") -> None:
        self.marker = uuid.uuid4().hex
        self.started = tmp_path / "started"
        if fault:
            script = tmp_path / "launch.py"
            script.write_text(LAUNCH)
            target = [str(script)]
        else:
            target = ["-m", "deeplabv2"]
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", *target, *args,
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", MARK: self.marker}
        env.update(TEST_FAULT=fault, TEST_STARTED=str(self.started))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            start_new_session=True,
        )  # fmt: skip
        self.err: list[tuple[float, str]] = []
        self.out: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.process.stderr, True), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stdout, False), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream, timed: bool) -> None:
        for line in stream:
            if timed:
                self.err.append((time.monotonic(), line))
            else:
                self.out.append(line)

    def wait(self, timeout: float) -> int:
        """The exit code; on timeout every process of the run is killed and the test fails."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running after {timeout} s (hung):\n{self.stderr[-3000:]}")
        for reader in self.readers:
            reader.join(30)
        return code

    def kill(self) -> None:
        for pid in [self.process.pid, *marked(self.marker)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()

    @property
    def stderr(self) -> str:
        return "".join(line for _, line in self.err)

    def first(self, text: str) -> float:
        """When a line holding ``text`` was printed."""
        return next(t for t, line in self.err if text in line)


@pytest.fixture()
def run(tmp_path):
    runs: list[Torchrun] = []

    def start(args: list[str], fault: str = "") -> Torchrun:
        runs.append(Torchrun(args, tmp_path, fault))
        return runs[-1]

    yield start
    for done in runs:  # nothing survives a test, pass or fail
        if done.process.poll() is None or marked(done.marker):
            done.kill()


def voc_of(root: Path, count: int) -> Path:
    """The test VOC set with ``count`` images ``img00``... (copies of the three): rank 1 gets
    the odd ones."""
    write_voc(root)
    names = [f"img{i:02}" for i in range(count)]
    for i, name in enumerate(names):
        for folder, ext in (("JPEGImages", "jpg"), ("SegmentationClass", "png")):
            shutil.copy(root / folder / f"{NAMES[i % 3]}.{ext}", root / folder / f"{name}.{ext}")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(names) + "\n")
    return root


def eval_args(root: Path, weights: Path, *extra: str) -> list[str]:
    return ["eval", "--data", str(root), "--weights", str(weights), *FAST, *extra]


def test_a_corrupt_image_on_one_rank_is_skipped_and_the_rest_merged(run, tmp_path, voc_safetensors):
    root = voc_of(tmp_path / "voc", 3)
    (root / "JPEGImages" / "img01.jpg").write_bytes(b"not a jpeg")  # rank 1's
    out = tmp_path / "r.json"
    done = run(eval_args(root, voc_safetensors, "--out", str(out)))
    assert done.wait(240) == 1, done.stderr[-3000:]  # as one process: scored, and failed
    scores = json.loads(out.read_text())
    assert scores["num_pixels"] == 2 * 65 * 78 and scores["num_images"] == 2
    assert len(scores["failed_images"]) == 1 and "img01.jpg" in scores["failed_images"][0]
    assert done.stderr.count("skipped") == 1 and "img01.jpg" in done.stderr
    assert "".join(done.out).count("mean_iou") == 1
    assert gone(done.marker, 10)


def test_a_fatal_error_on_one_rank_stops_every_rank(run, tmp_path, voc_safetensors):
    root = voc_of(tmp_path / "voc", 10)
    label = root / "SegmentationClass" / "img01.png"  # rank 1's first image
    with Image.open(label) as image:
        values = np.array(image)
    values[0, :10] = 37
    bad = Image.fromarray(values, mode="P")
    bad.putpalette(voc_palette().reshape(-1).tolist())
    bad.save(label)
    done = run(eval_args(root, voc_safetensors, "--strict-labels", "--out", str(tmp_path / "r")))
    code = done.wait(240)
    error = "img01: 10 label pixels hold values outside 0..20"
    assert code != 0 and done.stderr.count(error) == 1, done.stderr[-3000:]
    assert time.monotonic() - done.first(error) < 20  # seconds, not the 30 minute timeout
    assert f'File "{ROOT / "deeplabv2"}' not in done.stderr  # no traceback of the library
    assert not (tmp_path / "r").exists()
    assert gone(done.marker, 10)


def photos(folder: Path, count: int) -> Path:
    folder.mkdir()
    photo = skdata.coffee()
    for i in range(count):
        tile = np.ascontiguousarray(photo[20 * i : 20 * i + 57, 30 * i : 30 * i + 73])
        Image.fromarray(tile).save(folder / f"{i}.png")
    return folder


def test_predict_stops_every_rank_when_one_fails(run, tmp_path, voc_safetensors):
    images = photos(tmp_path / "in", 10)
    out = tmp_path / "out"
    args = ["predict", str(images), "--out", str(out), "--weights", str(voc_safetensors), *FAST]
    done = run(args, fault="error")
    code = done.wait(240)
    assert code != 0 and done.stderr.count("injected fault on rank 1") == 1, done.stderr[-3000:]
    assert time.monotonic() - done.first("injected fault on rank 1") < 20
    assert not list(out.glob(f".*{TMP_SUFFIX}")) and "wrote" not in "".join(done.out)
    assert gone(done.marker, 10)


def test_no_rank_outlives_a_killed_torchrun(run, tmp_path, voc_safetensors):
    images = photos(tmp_path / "in", 8)
    args = ["predict", str(images), "--out", str(tmp_path / "out")]
    done = run([*args, "--weights", str(voc_safetensors), *FAST], fault="4")  # rank 1: 4 s/image
    end = time.monotonic() + 180
    while not done.started.exists():  # rank 1 is in its first image
        assert done.process.poll() is None and time.monotonic() < end, done.stderr[-3000:]
        time.sleep(0.05)
    os.kill(done.process.pid, signal.SIGKILL)  # the launcher dies; its workers must follow
    done.process.wait()
    assert gone(done.marker, 12)  # rank 1 alone had 16 s of work left
