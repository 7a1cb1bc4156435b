"""What a killed run leaves behind: every worker process the library starts (the CRF workers of
``deeplabv2 crf`` and ``predict --crf-workers``, the reading processes of ``deeplabv2 score``,
``predict --workers``' decoding processes) ends within seconds of its parent's SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from deeplabv2 import _pools

from .signals import alive, cpu_seconds, default_sigint, descendants

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
ENV["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), ENV.get("PYTHONPATH")]))


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_for(condition, timeout: float = 120.0, process: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"exited early ({process.returncode}): {process.stderr.read()}")
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.05)


def seconds_until_gone(pids: list[int], limit: float) -> float:
    """How long the processes took to end (``limit`` if some outlived it)."""
    start = time.monotonic()
    while any(alive(pid) for pid in pids):
        if time.monotonic() - start > limit:
            return limit
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture()
def launch() -> Iterator:
    """Start commands in their own process group; the group is killed at the end, pass or fail
    (a parent killed by the test leaves its group's id to its orphans)."""
    started: list[subprocess.Popen] = []

    def start(command: list[str]) -> subprocess.Popen:
        started.append(subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
            preexec_fn=default_sigint, start_new_session=True,  # noqa: PLW1509 - no threads
        ))  # fmt: skip
        return started[-1]

    yield start
    for process in started:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()


def spawned(pid: int) -> list[int]:
    """The ``spawn`` workers below ``pid`` (not its resource tracker)."""
    return [p for p in descendants(pid) if "spawn_main" in cmdline(p)]


def kill_when_busy(process: subprocess.Popen, workers: int) -> tuple[list[int], list[int]]:
    """SIGKILL ``process`` once ``workers`` spawn workers compute (a CRF); its descendants then
    (the spawn workers, all)."""
    wait_for(lambda: len(spawned(process.pid)) >= workers, process=process)
    mine = spawned(process.pid)
    before = {pid: cpu_seconds(pid) for pid in mine}  # started: importing torch takes seconds
    wait_for(lambda: all(cpu_seconds(p) > before[p] + 3 for p in mine), process=process)
    everything = descendants(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    return mine, everything


def photos(folder: Path, count: int, size: tuple[int, int]) -> Path:
    folder.mkdir()
    photo = skdata.astronaut()
    for i in range(count):
        tile = photo[10 * i : 10 * i + size[0], 10 * i : 10 * i + size[1]]
        Image.fromarray(np.ascontiguousarray(tile)).save(folder / f"{i}.png")
    return folder


def long_crf(tmp_path: Path) -> Path:
    params = tmp_path / "crf.json"
    params.write_text('{"iterations": 2000}')  # a CRF of many seconds per image
    return params


def test_the_crf_verbs_workers_end_with_it(tmp_path, launch):
    images = photos(tmp_path / "images", 4, (120, 160))
    scores = tmp_path / "scores"
    scores.mkdir()
    rng = np.random.default_rng(0)
    for image in images.iterdir():
        values = rng.random((21, 120, 160), dtype=np.float32)
        np.save(scores / f"{image.stem}.npy", values / values.sum(0))
    process = launch([
        sys.executable, "-m", "deeplabv2.cli", "crf", str(images), str(scores), "--out",
        str(tmp_path / "out"), "--crf-workers", "2", "--crf-backend", "numba", "--quiet",
        "--crf-params", str(long_crf(tmp_path)),
    ])  # fmt: skip
    workers, everything = kill_when_busy(process, 2)
    took = seconds_until_gone(everything, 10)
    print(f"crf --crf-workers 2: every process gone {took:.2f} s after the SIGKILL")
    assert took < 3, [cmdline(p) for p in everything if alive(p)]


@pytest.mark.slow
def test_predicts_crf_and_decoding_workers_end_with_it(tmp_path, launch, voc_safetensors):
    images = photos(tmp_path / "images", 6, (120, 160))
    args = ["predict", str(images), "--out", str(tmp_path / "out"), "--weights"]
    args += [str(voc_safetensors), "--single-scale", "--pad-to", "none", "--quiet"]
    args += ["--crf-params", str(long_crf(tmp_path)), "--crf-backend", "numba"]
    process = launch([sys.executable, "-m", "deeplabv2.cli", *args, "--crf-workers", "2",
                      "--workers", "2"])  # fmt: skip
    crf_workers, everything = kill_when_busy(process, 2)
    decoding = [p for p in everything if p not in crf_workers and "resource_tracker" not in
                cmdline(p)]  # fmt: skip
    assert len(decoding) == 2  # torch's DataLoader workers (forked)
    crf_took = seconds_until_gone(crf_workers, 10)
    print(f"predict: CRF workers gone {crf_took:.2f} s after the SIGKILL")
    assert crf_took < 3, [cmdline(p) for p in crf_workers if alive(p)]
    # torch's own watchdog ends its DataLoader workers: it checks the parent every 5 s
    took = seconds_until_gone(everything, 15)
    print(f"predict: every process gone {took:.2f} s after the SIGKILL")
    assert took < 8, [cmdline(p) for p in everything if alive(p)]


SCORE = """
import time
from deeplabv2.label_eval import _map
list(_map(time.sleep, [600, 600], 2))  # two reading processes (forked), busy for minutes
"""

STARTED_IN_A_THREAD = """
import os, sys, threading, time
from deeplabv2.crf.workers import CRFWorkers
def start(pools):  # a worker started by a thread that ends: no PR_SET_PDEATHSIG (it would fire)
    pools.append(CRFWorkers(1))
    list(pools[0].submit(time.sleep, 1))
    list(pools[0].drain())
if __name__ == "__main__":
    pools = []
    thread = threading.Thread(target=start, args=(pools,))
    thread.start()
    thread.join()
    if sys.argv[1] == "outlive":  # the thread is gone: the worker works on
        [(_, job)] = list(pools[0].submit(os.getpid)) + list(pools[0].drain())
        print(job.result(), flush=True)
        pools[0].close()
    else:
        list(pools[0].submit(time.sleep, 600))
        time.sleep(600)
"""


def run_script(tmp_path: Path, launch, text: str, *args: str) -> subprocess.Popen:
    script = tmp_path / "script.py"
    script.write_text(text)
    return launch([sys.executable, str(script), *args])


def test_the_reading_processes_of_score_end_with_it(tmp_path, launch):
    process = run_script(tmp_path, launch, SCORE)
    wait_for(lambda: len(descendants(process.pid)) >= 2, process=process)
    workers = descendants(process.pid)
    time.sleep(1)  # in their jobs
    os.kill(process.pid, signal.SIGKILL)
    took = seconds_until_gone(workers, 10)
    print(f"score: reading processes gone {took:.2f} s after the SIGKILL")
    assert took < 3, [cmdline(p) for p in workers if alive(p)]


def test_without_pdeathsig_the_watch_thread_ends_an_orphan(tmp_path, launch):
    process = run_script(tmp_path, launch, STARTED_IN_A_THREAD, "orphan")
    wait_for(lambda: spawned(process.pid), process=process)
    [worker] = spawned(process.pid)
    time.sleep(3)  # started, in its job
    os.kill(process.pid, signal.SIGKILL)
    took = seconds_until_gone([worker], 10)
    print(f"watch thread alone: the worker gone {took:.2f} s after the SIGKILL")
    assert took < 2 * _pools.POLL_SECONDS + 1


def test_a_worker_outlives_the_thread_that_started_it(tmp_path, launch):
    process = run_script(tmp_path, launch, STARTED_IN_A_THREAD, "outlive")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert int(out) != process.pid
