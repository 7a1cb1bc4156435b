"""examples/train.py under torchrun (2 gloo ranks, CPU) when only rank 1 fails: every rank
stops within seconds, the error is printed once, every process exits non-zero and none is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..voc_fixture import write_voc
from .test_train import EXAMPLES, TINY

# Runs examples/train.py's main() in a torchrun worker, after breaking rank 1 as MODE says.
WRAPPER = """
import importlib.util, os, sys, time
from pathlib import Path

examples, mode, state = sys.argv[1], sys.argv[2], Path(sys.argv[3])
del sys.argv[1:4]
spec = importlib.util.spec_from_file_location("train", os.path.join(examples, "train.py"))
train = importlib.util.module_from_spec(spec)
sys.modules["train"] = train
spec.loader.exec_module(train)
rank = int(os.environ["RANK"])
(state / f"pid{rank}").write_text(str(os.getpid()))


def failing():
    (state / "failed_at").write_text(repr(time.time()))
    return "injected " + "failure of rank 1"  # the source line differs from the message


if rank == 1 and mode == "data":  # its second batch cannot be read
    real_keys = train.batch_keys

    def batch_keys(n, config, iteration, *rest):
        if iteration == 1:
            raise OSError(failing())
        return real_keys(n, config, iteration, *rest)

    train.batch_keys = batch_keys
elif rank == 1 and mode == "nan":  # its second loss is NaN; rank 0's is finite
    real_losses, calls = train.branch_losses, []

    def branch_losses(*args):
        calls.append(1)
        terms = real_losses(*args)
        if len(calls) == 2:
            failing()
            terms = {k: v * float("nan") for k, v in terms.items()}
        return terms

    train.branch_losses = branch_losses
elif rank == 1 and mode == "val":  # an image of its validation shard cannot be read
    from deeplabv2.data.voc import VOCSegmentation

    real_item = VOCSegmentation.__getitem__

    def getitem(self, index):
        if self.split == "val2":
            raise OSError(failing())
        return real_item(self, index)

    VOCSegmentation.__getitem__ = getitem
code = 0
try:
    train.main()
except SystemExit as stop:  # a message means status 1
    code = stop.code if isinstance(stop.code, int) or stop.code is None else 1
    raise
except BaseException:
    code = 1
    raise
finally:  # how and when this rank ended by itself (torchrun's SIGTERM would skip this)
    (state / f"exit{rank}").write_text(f"{code or 0} {time.time()!r}")
"""


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    root = write_voc(tmp_path_factory.mktemp("data") / "voc")
    splits = root / "ImageSets" / "Segmentation"
    (splits / "val2.txt").write_text((splits / "val.txt").read_text())
    return root


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def run_failing(tmp_path: Path, voc: Path, mode: str) -> tuple[str, dict[int, tuple]]:
    """torchrun with rank 1 broken; returns its output and, for each rank that ended by
    itself, its exit status and the seconds from the failure to its end. A run still going a
    minute after the failure is killed, and the test fails."""
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "wrapper.py").write_text(WRAPPER)
    config = {**TINY, "msc": False, "max_iter": 3, "checkpoint_every": 100, "val_limit": 2}
    if mode == "val":
        config.update(val_split="val2", val_every=1)
    (tmp_path / "c.json").write_text(json.dumps(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    # torchrun looks at its workers every 5 s only: the ranks must stop by themselves
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        "--monitor-interval", "5",
        str(tmp_path / "wrapper.py"), str(EXAMPLES), mode, str(state),
        "--config", str(tmp_path / "c.json"), "--data", str(voc), "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    log = tmp_path / "output.txt"
    with open(log, "w") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    started, failed_at = time.time(), None
    try:
        while process.poll() is None:
            time.sleep(0.2)
            if failed_at is None and (state / "failed_at").exists():
                failed_at = time.time()
            if failed_at is not None and time.time() - failed_at > 60:
                pytest.fail("the ranks still run a minute after rank 1 failed (a deadlock)")
            if time.time() - started > 400:
                pytest.fail("torchrun did not finish")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        for pid_file in state.glob("pid*"):  # the workers run in sessions of their own
            pid = int(pid_file.read_text())
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    text = log.read_text()
    assert process.returncode != 0, text[-3000:]
    assert (state / "failed_at").exists(), text[-3000:]
    failed_at = float((state / "failed_at").read_text())
    deadline = time.time() + 5  # the workers are gone with torchrun
    while any(alive(int(p.read_text())) for p in state.glob("pid*")) and time.time() < deadline:
        time.sleep(0.1)
    leftover = [p.name for p in state.glob("pid*") if alive(int(p.read_text()))]
    assert not leftover, f"processes outlived the run: {leftover}"
    ends = {}
    for rank in (0, 1):
        if (state / f"exit{rank}").exists():
            code, when = (state / f"exit{rank}").read_text().split()
            ends[rank] = (int(code), float(when) - failed_at)
    return text, ends


def assert_all_stopped(text: str, ends: dict) -> None:
    """Both ranks ended by themselves, non-zero, within seconds of the failure."""
    assert sorted(ends) == [0, 1], text[-3000:]
    assert all(code != 0 for code, _ in ends.values()), (ends, text[-3000:])
    assert all(after < 20 for _, after in ends.values()), (ends, text[-3000:])


@pytest.mark.parametrize("mode", ["data", "val"])
def test_one_rank_failing_stops_every_rank(tmp_path: Path, voc: Path, mode: str) -> None:
    text, ends = run_failing(tmp_path, voc, mode)
    assert_all_stopped(text, ends)
    assert text.count("OSError: injected failure of rank 1") == 1, text[-3000:]
    assert "train.py: stopped: rank 1 failed" in text  # rank 0 says why it stopped
    assert not (tmp_path / "run" / "final.safetensors").exists()


def test_a_nan_loss_on_one_rank_stops_every_rank_once(tmp_path: Path, voc: Path) -> None:
    text, ends = run_failing(tmp_path, voc, "nan")
    assert_all_stopped(text, ends)
    assert text.count("iteration 2: the loss is not finite") == 1, text[-3000:]
    assert not (tmp_path / "run" / "final.safetensors").exists()
