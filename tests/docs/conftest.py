"""A working folder where the documentation's examples run offline, as they would for a user
who has downloaded the weights: the registry's names resolve from a filled torch.hub cache."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from ..voc_fixture import write_voc
from .counts import COUNTS

REPO = Path(__file__).resolve().parents[2]


def _place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # the same bytes, no copy of a 170 MB file
    except OSError:
        shutil.copyfile(source, target)


def _photos(root: Path) -> None:
    astronaut = skdata.astronaut()
    Image.fromarray(np.ascontiguousarray(astronaut[:97, :129])).save(root / "photo.jpg")
    (root / "photos").mkdir()
    for name, photo in (("coffee", skdata.coffee()), ("cat", skdata.chelsea())):
        Image.fromarray(np.ascontiguousarray(photo[:81, :97])).save(root / "photos" / f"{name}.jpg")


@pytest.fixture(scope="session")
def docs_sandbox(tmp_path_factory, release_caffemodel, voc_safetensors) -> tuple[Path, dict]:
    """``(folder, environment)``: photos, a tiny VOC 2012, release-style files under their
    release names, and a torch.hub cache that holds the ``voc12`` weights."""
    import torch

    from deeplabv2.weights import get_weights
    from deeplabv2.weights.release import cache_files

    root = tmp_path_factory.mktemp("docs")
    _photos(root)
    write_voc(root / "VOCdevkit" / "VOC2012")
    _place(release_caffemodel, root / "train_iter_20000.caffemodel")
    _place(voc_safetensors, root / "voc12.safetensors")
    (root / "examples").symlink_to(REPO / "examples")
    env = {
        "TORCH_HOME": str(root / ".torch"),
        "HF_HOME": str(root / ".hf"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "2",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    previous = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
        _place(release_caffemodel, cache_files(get_weights("voc12"), checkpoints)[1])
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
    return root, env


def pytest_terminal_summary(terminalreporter) -> None:
    if COUNTS["executed"] or COUNTS["skipped"]:
        terminalreporter.write_line(
            f"documentation examples: {COUNTS['executed']} blocks executed, "
            f"{len(COUNTS['skipped'])} skipped with a reason"
        )
