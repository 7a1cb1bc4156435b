"""torchrun: two ranks (gloo, CPU) give the scores and files of one process, each image once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from .voc_fixture import write_voc

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def run(args: list[str], ranks: int) -> subprocess.CompletedProcess:
    if ranks == 1:
        command = [sys.executable, "-m", "deeplabv2", *args]
    else:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(ranks), "-m", "deeplabv2", *args,
        ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return write_voc(tmp_path_factory.mktemp("voc") / "voc")  # 3 images: 2 ranks do not divide


def test_two_ranks_eval_equals_one_process(tmp_path, voc, voc_safetensors):
    args = ["eval", "--data", str(voc), "--weights", str(voc_safetensors), "--quiet"]
    run([*args, "--out", str(tmp_path / "one.json")], ranks=1)
    two = run([*args, "--out", str(tmp_path / "two.json")], ranks=2)
    one_scores = json.loads((tmp_path / "one.json").read_text())
    two_scores = json.loads((tmp_path / "two.json").read_text())
    assert one_scores == two_scores
    assert two_scores["num_pixels"] == 3 * 65 * 78  # every image scored once (3 columns ignored)
    assert two.stdout.count("mean_iou") == 1  # rank 0 alone prints


def test_two_ranks_predict_write_the_files_of_one_process(tmp_path, voc_safetensors):
    images = tmp_path / "in"
    images.mkdir()
    photo = skdata.coffee()
    for i in range(5):
        tile = np.ascontiguousarray(photo[40 * i : 40 * i + 57, 60 * i : 60 * i + 73])
        Image.fromarray(tile).save(images / f"{i}.png")
    args = ["predict", str(images), "--weights", str(voc_safetensors), "--quiet", "--overlay"]
    args += ["--pad-to", "none", "--msc"]
    run([*args, "--out", str(tmp_path / "one")], ranks=1)
    two = run([*args, "--out", str(tmp_path / "two")], ranks=2)
    one_files = sorted(p.name for p in (tmp_path / "one").iterdir())
    two_files = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert one_files == two_files and len(one_files) == 10  # no temporaries, nothing twice
    for name in one_files:
        if name.endswith(".png"):
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert two.stdout.count("wrote 5 of 5") == 1
