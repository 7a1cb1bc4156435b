"""The deeplabv2 command line: convert, weights, publish; exit codes and error lines."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from safetensors import safe_open

from deeplabv2.cli import main


def test_convert(tmp_path, release_caffemodel, capsys):
    dst = tmp_path / "out.safetensors"
    assert main(["convert", str(release_caffemodel), str(dst)]) == 0
    assert "21 classes" in capsys.readouterr().out
    with safe_open(dst, framework="pt") as handle:
        assert handle.metadata()["num_classes"] == "21"
    assert main(["convert", str(release_caffemodel), str(dst)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists" in err and "--force" in err
    assert main(["convert", str(release_caffemodel), str(dst), "--force"]) == 0


def test_errors_are_one_line_unless_verbose(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.caffemodel"), str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("deeplabv2 convert: error: no weights file") and "Traceback" not in err
    with pytest.raises(FileNotFoundError):
        main(["--verbose", "convert", str(tmp_path / "missing.caffemodel"), str(tmp_path / "o")])


def test_usage_errors_exit_2():
    result = subprocess.run(
        [sys.executable, "-m", "deeplabv2.cli", "frobnicate"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "Traceback" not in result.stderr


def test_weights_listing(capsys):
    assert main(["weights", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["voc12"]["classes"] == 21
    assert rows["voc12"]["source"] == "train_iter_20000.caffemodel"
    assert "mIoU 76.35" in rows["voc12"]["metrics"]
    assert rows["coco-init"]["classes"] == "backbone"


def test_publish_is_a_dry_run_by_default(tmp_path, release_caffemodel, capsys):
    out = tmp_path / "publish"
    assert main(["publish", "voc12", str(release_caffemodel), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dry run" in printed and "deeplabv2/deeplab_v2_resnet101.voc12" in printed
    card = (out / "README.md").read_text()
    assert "76.35" in card and "library_name: deeplabv2" in card
    assert "train_iter_20000.caffemodel" in card
    assert (out / "model.safetensors").stat().st_size > 170e6
