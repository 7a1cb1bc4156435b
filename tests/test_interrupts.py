"""SIGTERM, SIGKILL and Ctrl-C during `convert` and `predict` (also inside the CRF): prompt exits
with the documented codes, no temporary files or worker processes left behind."""

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

from .signals import (
    cpu_seconds,
    default_sigint,
    descendants,
    start_in_session,
    stop_with,
    wait_for,
)


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(f".*{TMP_SUFFIX}"))


def being_written(folder: Path) -> list[Path]:
    """Temporaries with data in them: the output being written, not the empty probe that
    checks the folder is writable before the work starts (it lives for a few microseconds)."""
    found = []
    for tmp in temporaries(folder):
        try:
            if tmp.stat().st_size > 0:
                found.append(tmp)
        except FileNotFoundError:
            pass
    return found


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "deeplabv2.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=default_sigint,  # noqa: PLW1509 - no threads are started before exec
    )


def interrupt_a_write(tmp_path: Path, source: Path, sig: signal.Signals) -> tuple[int, str]:
    """Run ``convert`` and send ``sig`` while the output is being written. The write takes a
    fraction of a second: a run that finishes before the signal lands is tried again."""
    dst = tmp_path / "out.safetensors"
    for _ in range(10):
        process = start(["convert", str(source), str(dst)])
        wait_for(lambda p=process: being_written(tmp_path) or p.poll() is not None)
        process.send_signal(sig)
        _, err = process.communicate(timeout=120)
        if process.returncode == 0:  # finished first: inconclusive
            dst.unlink()
            continue
        return process.returncode, err
    raise AssertionError("the write always finished before it could be interrupted")


def test_sigterm_mid_write_cleans_up(tmp_path, release_caffemodel):
    code, err = interrupt_a_write(tmp_path, release_caffemodel, signal.SIGTERM)
    assert code == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert temporaries(tmp_path) == []
    assert not (tmp_path / "out.safetensors").exists()  # never a partial output


def test_a_killed_writers_temporary_is_removed_by_the_next_run(tmp_path, release_caffemodel):
    dst = tmp_path / "out.safetensors"
    code, _ = interrupt_a_write(tmp_path, release_caffemodel, signal.SIGKILL)
    assert code == -signal.SIGKILL  # nothing could clean up
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


# -- signals during the CRF (numba, inline or in --crf-workers processes) ----------------------


def crf_busy(process: subprocess.Popen, workers: int, out: Path) -> None:
    """Wait until the (long) CRF of the second image runs: inline a few seconds after the first
    image's output, in a worker once that worker keeps computing."""
    wait_for(lambda: (out / "0.png").exists() or process.poll() is not None)
    assert process.poll() is None
    if workers == 0:
        time.sleep(3)  # the network takes about 1 s of it, the CRF 25 s or more
        return
    wait_for(lambda: descendants(process.pid) or process.poll() is not None)
    worker = max(descendants(process.pid), key=cpu_seconds)
    before = cpu_seconds(worker)
    wait_for(lambda: cpu_seconds(worker) > before + 1 or process.poll() is not None)


@pytest.mark.parametrize(
    "sig, workers, group",
    [
        (signal.SIGTERM, 0, False),  # kill PID
        (signal.SIGINT, 0, True),  # Ctrl-C in a terminal: the whole process group
        (signal.SIGTERM, 1, False),
        (signal.SIGINT, 1, False),
        (signal.SIGINT, 1, True),  # the CRF workers leave Ctrl-C to the main process
    ],
)
def test_signals_during_the_crf_stop_promptly(tmp_path, voc_safetensors, sig, workers, group):
    images = tmp_path / "in"
    images.mkdir()
    photo = skdata.astronaut()
    Image.fromarray(np.ascontiguousarray(photo[:40, :50])).save(images / "0.png")
    Image.fromarray(np.ascontiguousarray(photo[:200, :260])).save(images / "1.png")
    params = tmp_path / "crf.json"
    params.write_text('{"iterations": 1000}')  # a CRF of 25 s or more on the second image
    out = tmp_path / "out"
    args = ["predict", str(images), "--out", str(out), "--weights", str(voc_safetensors)]
    args += ["--single-scale", "--pad-to", "none", "--quiet", "--crf-params", str(params)]
    args += ["--crf-backend", "numba", "--crf-workers", str(workers)]
    process = start_in_session(args, env={**os.environ, "OMP_NUM_THREADS": "1"})
    stop_with(process, sig, group, lambda: crf_busy(process, workers, out))
    assert temporaries(out) == [] and sorted(p.name for p in out.iterdir()) == ["0.png"]


# -- a worker that died while it sent a result (killed by the OOM killer, or terminated by
# -- Ctrl-C's clean-up): neither the run nor interpreter exit may wait on it --------------------

DIES_SENDING_A_RESULT = """
import gc, os, signal, struct, sys, time
from multiprocessing.queues import SimpleQueue
from deeplabv2.crf.workers import CRFWorkers

def die_sending_a_result():
    # a pool worker's one SimpleQueue is its result queue: the header of a 1 MiB result, some
    # of its bytes, then death, as when a worker is killed while it sends a CRF result
    [results] = [o for o in gc.get_objects() if type(o) is SimpleQueue]
    os.write(results._writer.fileno(), struct.pack("!i", 1 << 20) + bytes(1000))
    os.kill(os.getpid(), signal.SIGKILL)

if __name__ == "__main__":
    pool = CRFWorkers(1)
    try:
        list(pool.submit(die_sending_a_result))
        if sys.argv[1] == "wait":
            [(_, job)] = list(pool.drain())
            print(type(job.exception()).__name__, flush=True)
            pool.close()
        else:
            while all(p.is_alive() for p in pool.pool._processes.values()):
                time.sleep(0.05)
            print("dead", flush=True)
            time.sleep(600)  # Ctrl-C lands here
    except KeyboardInterrupt:
        pool.close(abort=True)
        sys.exit(130)
"""


def run_dying_worker(tmp_path: Path, mode: str) -> subprocess.Popen:
    script = tmp_path / "dies.py"
    script.write_text(DIES_SENDING_A_RESULT)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, str(script), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, preexec_fn=default_sigint, start_new_session=True,  # noqa: PLW1509
    )  # fmt: skip


def finish(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Its output once it exits; a process still running after ``timeout`` is killed (with its
    group) and the test fails."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"hung, killed after {timeout} s: {out} {err[-2000:]}") from None


def test_a_worker_dead_mid_result_fails_its_job_instead_of_hanging(tmp_path):
    process = run_dying_worker(tmp_path, "wait")
    out, err = finish(process, 60)
    assert process.returncode == 0, err
    assert out.split() == ["BrokenProcessPool"]


def test_ctrl_c_after_the_workers_died_exits_at_once(tmp_path):
    process = run_dying_worker(tmp_path, "interrupt")
    try:
        assert process.stdout.readline() == "dead\n"  # the manager thread reads a cut result
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = finish(process, 20)  # before: interpreter exit joined that thread forever
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 130, err
    assert time.monotonic() - interrupted < 5
