"""SIGTERM and SIGKILL during `convert` and `predict`: no temporary files are left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from deeplabv2._files import TMP_SUFFIX


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(f".*{TMP_SUFFIX}"))


def _default_sigint() -> None:
    # A shell without job control starts background jobs with SIGINT ignored, and children
    # inherit that (Python then installs no KeyboardInterrupt handler): a CI runner may do so.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "deeplabv2.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=_default_sigint,  # noqa: PLW1509 - no threads are started before exec
    )


def wait_for(condition, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.002)


def test_sigterm_mid_write_cleans_up(tmp_path, release_caffemodel):
    dst = tmp_path / "out.safetensors"
    # The write takes a fraction of a second: where it finishes between the temporary file
    # appearing and the signal arriving, the run is inconclusive and is tried again.
    for _ in range(5):
        process = start(["convert", str(release_caffemodel), str(dst)])
        wait_for(lambda p=process: temporaries(tmp_path) or p.poll() is not None)
        assert temporaries(tmp_path), "the write finished before it could be interrupted"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
        if process.returncode == 0 and dst.stat().st_size > 170e6:
            dst.unlink()
            continue
        break
    assert process.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert temporaries(tmp_path) == []
    assert not dst.exists() or dst.stat().st_size > 170e6  # never a partial output


def test_a_killed_writers_temporary_is_removed_by_the_next_run(tmp_path, release_caffemodel):
    dst = tmp_path / "out.safetensors"
    process = start(["convert", str(release_caffemodel), str(dst)])
    wait_for(lambda: temporaries(tmp_path) or process.poll() is not None)
    process.kill()  # SIGKILL: nothing can clean up
    process.communicate(timeout=60)
    left = temporaries(tmp_path)
    assert len(left) == 1 and not dst.exists()
    again = start(["convert", str(release_caffemodel), str(dst)])
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert temporaries(tmp_path) == [] and dst.stat().st_size > 170e6


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_predict_stops_cleanly(tmp_path, voc_safetensors, sig):
    images = tmp_path / "in"
    images.mkdir()
    photo = skdata.astronaut()
    for i in range(40):
        Image.fromarray(np.ascontiguousarray(photo[i : i + 65, :81])).save(images / f"{i:02}.png")
    out = tmp_path / "out"
    args = ["predict", str(images), "--out", str(out), "--weights", str(voc_safetensors)]
    process = start([*args, "--quiet", "--probs", "--overlay"])
    wait_for(lambda: out.is_dir() and len(list(out.glob("*.png"))) >= 2)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == (143 if sig == signal.SIGTERM else 130), err
    assert temporaries(out) == []
    written = sorted(out.glob("??.png"))
    assert 2 <= len(written) < 40
    for png in written:  # every finished output is complete
        with Image.open(png) as image:
            image.load()
