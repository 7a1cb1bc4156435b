"""Child processes for the signal tests (tests/test_interrupts.py, tests/crf/test_pseudo.py,
tests/test_orphans.py): start a ``deeplabv2`` command, wait until it works, signal it as
``kill`` or Ctrl-C in a terminal do, and check it stopped at once with nothing left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

__all__ = [
    "alive",
    "cpu_seconds",
    "default_sigint",
    "descendants",
    "start_in_session",
    "stop_with",
    "wait_for",
]


def default_sigint() -> None:
    """``preexec_fn``: SIGINT at its default in the child. A shell without job control starts
    background jobs with SIGINT ignored, and children inherit that (Python then installs no
    KeyboardInterrupt handler): a CI runner may do so."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(condition: Callable[[], object], timeout: float = 120.0) -> None:
    """Poll ``condition`` until it is true; AssertionError after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.002)


def descendants(pid: int) -> list[int]:
    """The live processes below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def cpu_seconds(pid: int) -> float:
    """The CPU time ``pid`` has used (user + system), 0 once it is gone."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_in_session(args: list[str], env: Optional[dict[str, str]] = None) -> subprocess.Popen:
    """``python -m deeplabv2.cli ARGS`` in a session of its own (its process group is its own,
    to signal it whole as a terminal's Ctrl-C does), SIGINT at its default."""
    return subprocess.Popen(
        [sys.executable, "-m", "deeplabv2.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, preexec_fn=default_sigint, start_new_session=True,  # noqa: PLW1509 - no threads
    )  # fmt: skip


def stop_with(
    process: subprocess.Popen, sig: signal.Signals, group: bool, busy: Callable[[], None]
) -> str:
    """Once ``busy()`` returns (the run is at the work to interrupt), send ``sig`` to the
    process, or to its whole group (``group``: Ctrl-C in a terminal); check that it exits with
    143 (SIGTERM) or 130 (SIGINT) within 10 s, without a traceback, and that none of its child
    processes outlives it by 5 s. Its stderr."""
    try:
        busy()
        assert process.poll() is None, "the run ended before it could be interrupted"
        children = descendants(process.pid)
        signalled = time.monotonic()
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
        _, err = process.communicate(timeout=120)
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == (143 if sig == signal.SIGTERM else 130), err
    assert "Traceback" not in err and "returned a result with an exception set" not in err, err
    assert took < 10, f"exited {took:.1f} s after the signal"
    end = time.monotonic() + 5
    while any(alive(pid) for pid in children):
        assert time.monotonic() < end, "worker processes left behind"
        time.sleep(0.1)
    return err
