"""``score``'s conventions against the papers' scripts (IRN's ``step/eval_sem_seg.py``), and the
lists and files it refuses: names outside the folders, a PNG declaring too many pixels, option
values out of range."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

import deeplabv2
from deeplabv2.cli.main import main
from deeplabv2.errors import DatasetError, ImageError

from ..test_label_eval import NAMES, folders, save_png  # noqa: F401 - the fixture

__all__ = ["folders"]


def irn_eval_sem_seg(pred_dir: Path, gt_maps: dict[str, np.ndarray]) -> float:
    """IRN's ``step/eval_sem_seg.py`` (jiwoon-ahn/irn @057cea6e2e29), as it computes: each
    pseudo-label read with imageio as uint8, 255 set to 0, the ground truth's 255 as -1 and left
    out (chainercv's VOC dataset and ``calc_semantic_segmentation_confusion``), the confusion
    cut to 21 x 21, IoU = diag / (rows + columns - diag), ``np.nanmean``."""
    confusion = np.zeros((256, 256), np.int64)
    for name, truth in gt_maps.items():
        labels = imageio.imread(pred_dir / f"{name}.png").astype(np.uint8)
        labels[labels == 255] = 0
        gt = np.where(truth == 255, -1, truth)
        mask = gt >= 0
        np.add.at(confusion, (gt[mask], labels[mask].astype(np.int64)), 1)
    confusion = confusion[:21, :21]
    gtj, resj, both = confusion.sum(axis=1), confusion.sum(axis=0), np.diag(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = both / (gtj + resj - both)
    return float(np.nanmean(iou))


def test_background_convention_equals_irn_eval_sem_seg(folders, tmp_path):  # noqa: F811
    pred, gt, maps = folders
    gray = tmp_path / "gray"  # IRN reads grayscale PNGs (imageio turns palette ones into RGB)
    gray.mkdir()
    for name, (prediction, _) in maps.items():
        save_png(gray / f"{name}.png", prediction, palette=False)
    result = deeplabv2.score_folder(gray, gt, workers=1, convention="ignored_as_background")
    want = irn_eval_sem_seg(gray, {name: truth for name, (_, truth) in maps.items()})
    assert result.mean_iou == pytest.approx(want, rel=1e-12)
    strict = result.scores["ignored_as_wrong"]["mean_iou"]
    assert abs(strict - want) > 1e-3  # the 255s make the conventions differ here
    # the same maps as palette PNGs score the same (score reads both)
    assert deeplabv2.score_folder(pred, gt, workers=1).scores["ignored_as_background"][
        "mean_iou"
    ] == pytest.approx(want, rel=1e-12)


def test_convention_is_printed_first_and_saved_as_mean_iou(folders, tmp_path, capsys):  # noqa: F811
    pred, gt, maps = folders
    out = tmp_path / "scores.json"
    args = ["score", str(pred), "--labels", str(gt), "--workers", "1", "--out", str(out)]
    assert main([*args, "--convention", "ignored_as_background"]) == 0
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("   "))
    assert header.split() == ["ignored_as_background", "ignored_as_wrong", "confident_only"]
    data = json.loads(out.read_text())
    assert data["convention"] == "ignored_as_background"
    assert data["mean_iou"] == data["scores"]["ignored_as_background"]["mean_iou"]
    assert data["mean_iou"] != data["scores"]["ignored_as_wrong"]["mean_iou"]
    assert f"mean IoU (ignored_as_background): {100 * data['mean_iou']:.2f} %" in printed
    assert main([*args[:-2], "--convention", "ignored_as_wrong"]) == 0  # the default's order
    printed = capsys.readouterr().out
    assert next(line for line in printed.splitlines() if line.startswith("   ")).split()[0] == (
        "ignored_as_wrong"
    )
    with pytest.raises(ValueError, match="convention 'irn' is not one of"):
        deeplabv2.score_folder(pred, gt, convention="irn")


@pytest.mark.parametrize("line", ["../outside", "/etc/passwd", "sub/../../x", "..", "a\\b"])
def test_split_names_outside_the_folders_are_refused(folders, tmp_path, line):  # noqa: F811
    pred, gt, _ = folders
    outside = tmp_path / "outside.png"  # a label map outside both folders, as bait
    save_png(outside, np.zeros((65, 65), np.uint8), palette=False)
    split = tmp_path / "list.txt"
    split.write_text(f"{NAMES[0]}\n{line}\n")
    with pytest.raises(DatasetError, match=r"line 2: .* is not a file name"):
        deeplabv2.score_folder(pred, gt, split=split, workers=1)


def _png_declaring(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header declares ``width`` x ``height`` grayscale pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    idat = zlib.compress(b"\0" * 16)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_a_png_declaring_a_bomb_is_named(folders):  # noqa: F811
    pred, gt, _ = folders
    _png_declaring(pred / f"{NAMES[1]}.png", 30000, 30000)
    with pytest.raises(ImageError, match=rf"cannot read label image .*{NAMES[1]}\.png: .*pixels"):
        deeplabv2.score_folder(pred, gt, workers=1)


@pytest.mark.parametrize(
    ("option", "value", "rule"),
    [("--workers", "-1", ">= 0"), ("--ignore", "-1", "in [0, 65535]"),
     ("--ignore", "70000", "in [0, 65535]")],
)  # fmt: skip
def test_out_of_range_values_are_usage_errors(folders, capsys, option, value, rule):  # noqa: F811
    pred, gt, _ = folders
    with pytest.raises(SystemExit) as usage:
        main(["score", str(pred), "--labels", str(gt), option, value])
    assert usage.value.code == 2
    assert f"argument {option}: must be {rule}, got {value}" in capsys.readouterr().err
