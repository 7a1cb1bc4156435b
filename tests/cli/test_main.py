"""The deeplabv2 command line (cli/main.py and the small verbs): convert, weights, publish,
predict, eval; exit codes and error lines."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    assert (
        main(["convert", str(tmp_path / "missing.caffemodel"), str(tmp_path / "o.safetensors")])
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("deeplabv2 convert: error: no weights file") and "Traceback" not in err
    with pytest.raises(FileNotFoundError):
        main(
            [
                "--verbose",
                "convert",
                str(tmp_path / "missing.caffemodel"),
                str(tmp_path / "o.safetensors"),
            ]
        )


def test_usage_errors_exit_2():
    result = subprocess.run(
        [sys.executable, "-m", "deeplabv2.cli", "frobnicate"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "Traceback" not in result.stderr


def test_weights_listing(capsys):
    assert main(["weights", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    voc = rows["deeplab_v2_resnet101.voc12"]
    assert voc["classes"] == 21 and voc["tag"] == "voc12"
    assert voc["source"] == "train_iter_20000.caffemodel"
    assert "mIoU 76.35" in voc["metrics"]
    assert rows["deeplab_v2_resnet101.coco-init"]["classes"] == "backbone"
    assert "mIoU 68.96" in rows["deeplab_v2_vgg16.voc12"]["metrics"]
    assert rows["deeplab_v2_resnet101.voc12-trainval"]["warning"]
    assert main(["weights", "--model", "deeplab_largefov_vgg16"]) == 0
    printed = capsys.readouterr().out.splitlines()[1:]  # under the header
    assert len(printed) == 2 and all(p.startswith("deeplab_largefov_vgg16.") for p in printed)


def test_publish_is_a_dry_run_by_default(tmp_path, release_caffemodel, capsys):
    out = tmp_path / "publish"
    assert main(["publish", "voc12", str(release_caffemodel), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dry run" in printed and "deeplabv2/deeplab_v2_resnet101.voc12" in printed
    card = (out / "README.md").read_text()
    assert "76.35" in card and "library_name: deeplabv2" in card
    assert "train_iter_20000.caffemodel" in card
    assert (out / "model.safetensors").stat().st_size > 170e6


# -- predict and eval ----------------------------------------------------------------------------


def _photos(folder: Path) -> list[str]:
    from PIL import Image
    from skimage import data as skdata

    folder.mkdir()
    Image.fromarray(np.ascontiguousarray(skdata.coffee()[:65, :81])).save(folder / "coffee.jpg")
    Image.fromarray(np.ascontiguousarray(skdata.chelsea()[:57, :49])).save(folder / "cat.png")
    return ["coffee", "cat"]


def test_predict_writes_indexed_voc_pngs(tmp_path, voc_safetensors, capsys) -> None:
    from PIL import Image

    from deeplabv2.data.classes import voc_palette

    _photos(tmp_path / "in")
    out = tmp_path / "out"
    argv = ["predict", str(tmp_path / "in"), "--weights", str(voc_safetensors), "--out", str(out)]
    assert main([*argv, "--overlay", "--probs", "--quiet"]) == 0
    for stem, size in (("coffee", (81, 65)), ("cat", (49, 57))):
        with Image.open(out / f"{stem}.png") as png:
            assert png.mode == "P" and png.size == size
            assert png.getpalette()[: 3 * 21] == voc_palette()[:21].reshape(-1).tolist()
            assert np.asarray(png).max() < 21
        assert (out / f"{stem}_overlay.jpg").is_file()
        probs = np.load(out / f"{stem}_probs.npy")
        assert probs.shape == (21, size[1], size[0])
        np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1.0, atol=2e-2)
    assert "wrote 2 of 2" in capsys.readouterr().out
    # existing outputs are never overwritten without --force
    before = (out / "cat.png").read_bytes()
    assert main([*argv, "--quiet"]) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert (out / "cat.png").read_bytes() == before
    assert main([*argv, "--quiet", "--force"]) == 0


def test_predict_skips_corrupt_files_and_fails(tmp_path, voc_safetensors, capsys) -> None:
    _photos(tmp_path / "in")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(tmp_path / "in"),
            "--weights",
            str(voc_safetensors),
            "--out",
            str(out),
            "--quiet",
            "--msc",
            "--flip",
            "--crf",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "broken.jpg" in captured.err and "Traceback" not in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["cat.png", "coffee.png"]


def test_eval_scores_equal_numpy(tmp_path, voc_safetensors, capsys) -> None:
    from deeplabv2.data.voc import VOCSegmentation
    from deeplabv2.models import deeplab_v2_resnet101
    from deeplabv2.segmenter import Segmenter

    from ..test_metrics import numpy_scores
    from ..voc_fixture import write_voc

    root = write_voc(tmp_path / "voc")
    out = tmp_path / "results.json"
    argv = ["eval", "--data", str(root), "--weights", str(voc_safetensors), "--out", str(out)]
    argv += ["--single-scale"]
    assert main([*argv, "--quiet"]) == 0
    results = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "mean_iou" in printed and "aeroplane" in printed

    seg = Segmenter(deeplab_v2_resnet101(pretrained=str(voc_safetensors)), scales=())
    preds, targets = [], []
    for image, label, _ in VOCSegmentation(root, "val"):
        preds.append(seg.predict(image).labels.numpy())
        targets.append(label)
    want = numpy_scores(preds, targets, 21)
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
        assert results[key] == pytest.approx(want[key], rel=1e-9)
    assert results["num_images"] == 3
    assert main([*argv, "--quiet"]) == 1  # no overwrite without --force


def test_eval_with_crf_and_decoding_workers_equals_inline(tmp_path, voc_safetensors) -> None:
    from ..voc_fixture import write_voc

    root = write_voc(tmp_path / "voc")
    scores = []
    for crf_workers, workers in (("0", "0"), ("2", "2")):
        out = tmp_path / f"r{crf_workers}.json"
        argv = ["eval", "--data", str(root), "--weights", str(voc_safetensors), "--crf"]
        argv += ["--crf-workers", crf_workers, "--workers", workers, "--crf-backend", "torch"]
        argv += ["--single-scale"]
        assert main([*argv, "--limit", "2", "--out", str(out), "--quiet"]) == 0
        scores.append(json.loads(out.read_text()))
    assert scores[0]["mean_iou"] == pytest.approx(scores[1]["mean_iou"], abs=1e-6)
    assert scores[0]["settings"]["crf"]["bi_xy_std"] == 67
    assert scores[0]["settings"]["crf"]["backend"] == "torch"


def test_eval_follows_the_weights_protocol(tmp_path, release_layers, capsys) -> None:
    """Weights of the PyTorch port run with the port's MSC resizing and unpadded."""
    import torch

    from ..voc_fixture import write_voc
    from ..weights.test_convert import peer_checkpoint

    torch.save(peer_checkpoint(release_layers), tmp_path / "port.pth")
    root = write_voc(tmp_path / "voc")
    out = tmp_path / "r.json"
    argv = ["eval", "--data", str(root), "--weights", str(tmp_path / "port.pth"), "--quiet"]
    assert main([*argv, "--msc", "--limit", "1", "--out", str(out)]) == 0
    settings = json.loads(out.read_text())["settings"]
    assert settings["msc_mode"] == "pytorch" and settings["pad_to"] is None
    assert settings["scales"] == [1.0, 0.75, 0.5]
    assert main([*argv, "--limit", "1", "--pad-to", "513", "--msc-mode", "caffe", "--force",
                 "--out", str(out)]) == 0  # fmt: skip
    settings = json.loads(out.read_text())["settings"]
    assert settings["msc_mode"] == "caffe" and settings["pad_to"] == 513  # explicit wins


def test_a_reader_that_leaves_the_pipe_ends_the_run_quietly(monkeypatch, capsys):
    """``deeplabv2 weights | head -1``: the closed pipe is no error message and no traceback."""

    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self) -> int:
            raise io.UnsupportedOperation("fileno")  # as pytest's captured stdout

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["weights"]) == 141
    assert capsys.readouterr().err == ""
