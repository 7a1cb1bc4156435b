"""Where the documentation's examples run offline, as they would for a user who has the
release's files and has downloaded the weights: the registry's names resolve from a filled
torch.hub cache, the release files lie under their release names."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from ..voc_fixture import write_voc
from ..weights.caffe_files import write_caffemodel
from ..weights.vgg_reference import synthetic_vgg_blobs
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


def _fill_cache(torch_home: Path, files: dict[str, Path]) -> None:
    """Put ``files`` (registry name -> file) where the loader looks after a download."""
    from deeplabv2.weights import get_weights
    from deeplabv2.weights.release import cache_files

    checkpoints = torch_home / "hub" / "checkpoints"
    for name, source in files.items():
        _place(source, cache_files(get_weights(name), checkpoints)[1])


@pytest.fixture(scope="session")
def docs_files(tmp_path_factory, release_caffemodel) -> tuple[Path, dict]:
    """``(folder, environment)``: photos, a tiny VOC 2012, release-style files under their
    release names, and a torch.hub cache holding the ``voc12`` and VGG ``voc12`` weights."""
    root = tmp_path_factory.mktemp("docs")
    _photos(root)
    write_voc(root / "VOCdevkit" / "VOC2012")
    _place(release_caffemodel, root / "train_iter_20000.caffemodel")
    vgg = write_caffemodel(root / "train_iter_6000.caffemodel", synthetic_vgg_blobs(False))
    _fill_cache(root / ".torch", {"voc12": release_caffemodel, "deeplab_v2_vgg16.voc12": vgg})
    env = {
        "TORCH_HOME": str(root / ".torch"),
        "HF_HOME": str(root / ".hf"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return root, env


@pytest.fixture
def docs_sandbox(docs_files, tmp_path, monkeypatch) -> tuple[Path, dict]:
    """A fresh working folder for one page (links to the shared files, the examples), with the
    environment set for this process too."""
    files, env = docs_files
    for entry in files.iterdir():
        (tmp_path / entry.name).symlink_to(entry)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return tmp_path, env


def pytest_terminal_summary(terminalreporter) -> None:
    if COUNTS["executed"] or COUNTS["skipped"]:
        slow = sum(reason.startswith("slow") for _, reason in COUNTS["skipped"])
        terminalreporter.write_line(
            f"documentation examples: {COUNTS['executed']} blocks executed, "
            f"{len(COUNTS['skipped']) - slow} skipped with a reason, {slow} slow ones left to "
            "`-m slow`"
        )
