"""``deeplabv2 score`` and :func:`deeplabv2.score_folder` against an independent numpy
confusion matrix, on generated folders of palette and grayscale label PNGs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import deeplabv2
from deeplabv2.cli.main import main
from deeplabv2.data.classes import VOC_CLASSES, voc_palette
from deeplabv2.errors import DatasetError, LabelError

NAMES = ("a_000", "a_001", "b_002", "b_003", "c_004", "c_005")
SHAPES = ((65, 65), (40, 65), (65, 33), (65, 65), (17, 29), (65, 48))
K = len(VOC_CLASSES)


def save_png(path: Path, labels: np.ndarray, palette: bool) -> None:
    image = Image.fromarray(labels.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        image.putpalette(voc_palette().reshape(-1).tolist())
    image.save(path)


def make_maps(seed: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A prediction (with 255 = not sure) and a ground truth (with 255 = ignored)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, K - 2, shape)  # the last two classes never in the ground truth
    truth[rng.random(shape) < 0.1] = 255
    right = np.where(truth == 255, 0, truth)
    prediction = np.where(rng.random(shape) < 0.6, right, rng.integers(0, K - 1, shape))
    prediction[rng.random(shape) < 0.15] = 255
    return prediction, truth


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, dict]:
    """``pred/`` and ``gt/``: palette and grayscale PNGs mixed; the maps by name."""
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    maps = {}
    for i, (name, shape) in enumerate(zip(NAMES, SHAPES)):
        prediction, truth = make_maps(i, shape)
        save_png(pred / f"{name}.png", prediction, palette=i % 2 == 0)
        save_png(gt / f"{name}.png", truth, palette=i % 3 != 0)
        maps[name] = (prediction, truth)
    return pred, gt, maps


def numpy_expected(maps: list[tuple[np.ndarray, np.ndarray]], confident_only: bool) -> dict:
    """Scores from a (K, K + 1) histogram written with numpy: the last column counts the
    pixels predicted 255, misses unless ``confident_only`` drops them."""
    hist = np.zeros((K, K + 1), np.int64)
    for prediction, truth in maps:
        keep = truth != 255
        columns = np.where(prediction == 255, K, prediction)[keep]
        np.add.at(hist, (truth[keep], columns), 1)
    if confident_only:
        hist = hist[:, :K]
    tp = np.diag(hist[:, :K]).astype(float)
    gt, pr = hist.sum(1), hist[:, :K].sum(0)
    union = gt + pr - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, precision, recall = tp / union, tp / pr, tp / gt
    freq = gt / hist.sum()
    return {
        "pixel_accuracy": tp.sum() / hist.sum(),
        "mean_accuracy": np.nanmean(recall),
        "mean_iou": np.nanmean(iou),
        "fw_iou": (freq[union > 0] * iou[union > 0]).sum(),
        "per_class_iou": iou,
        "per_class_precision": precision,
        "per_class_recall": recall,
        "unsure": hist.sum() - hist[:, :K].sum(),
        "total": hist.sum(),
    }


def assert_matches(result: deeplabv2.ScoreResult, maps: list) -> None:
    for scoring, confident in (("ignored_as_wrong", False), ("confident_only", True)):
        got, want = result.scores[scoring], numpy_expected(maps, confident)
        for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
            assert got[key] == pytest.approx(want[key], rel=1e-12), (scoring, key)
        for key in ("per_class_iou", "per_class_precision", "per_class_recall"):
            values = [np.nan if v is None else v for v in got[key].values()]
            np.testing.assert_allclose(values, want[key], rtol=1e-12, err_msg=key)
            assert list(got[key]) == list(VOC_CLASSES)
        assert got["num_pixels"] == want["total"]
    strict = numpy_expected(maps, False)
    assert result.ignored_share == pytest.approx(strict["unsure"] / strict["total"])
    every = sum(int((p == 255).sum()) for p, _ in maps) / sum(p.size for p, _ in maps)
    assert result.ignored_share_all == pytest.approx(every)


def test_api_matches_numpy_both_scorings(folders):
    pred, gt, maps = folders
    result = deeplabv2.score_folder(pred, gt, workers=1)
    assert result.num_images == len(NAMES) and result.missing == ()
    assert_matches(result, list(maps.values()))
    strict, confident = result.scores["ignored_as_wrong"], result.scores["confident_only"]
    assert strict["mean_iou"] < confident["mean_iou"]  # the 255s cost the strict score
    assert result.mean_iou == strict["mean_iou"]
    assert strict["per_class_iou"]["tvmonitor"] is None  # never in GT, never predicted


def test_two_workers_equal_one(folders):
    pred, gt, _ = folders
    one = deeplabv2.score_folder(pred, gt, workers=1)
    two = deeplabv2.score_folder(pred, gt, workers=2)
    assert one.matrix.matrix.equal(two.matrix.matrix) and one.matrix.unsure.equal(two.matrix.unsure)
    assert one.to_dict() == two.to_dict()


def test_cli_table_names_classes_and_json_is_written_once(folders, capsys, tmp_path):
    pred, gt, maps = folders
    out = tmp_path / "results" / "scores.json"
    args = ["score", str(pred), "--labels", str(gt), "--out", str(out), "--workers", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "ignored_as_wrong" in printed and "confident_only" in printed
    rows = {line.split()[0]: line.split()[1:] for line in printed.splitlines() if line}
    for name in ("background", "aeroplane", "diningtable", "tvmonitor"):
        assert name in rows
    strict = numpy_expected(list(maps.values()), False)["per_class_iou"]
    assert float(rows["aeroplane"][0]) == pytest.approx(100 * strict[1], abs=0.006)
    data = json.loads(out.read_text())
    assert data["scores"]["ignored_as_wrong"]["mean_iou"] == pytest.approx(
        numpy_expected(list(maps.values()), False)["mean_iou"]
    )
    assert set(data["scores"]) == {"ignored_as_wrong", "confident_only", "ignored_as_background"}
    assert {"ignored_share", "ignored_share_all_pixels", "missing", "num_images"} <= set(data)
    assert sorted(p.name for p in out.parent.iterdir()) == ["scores.json"]  # no temporary left
    before = out.read_text()
    assert main(args) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == before
    assert main([*args, "--force"]) == 0


def test_missing_prediction_is_named_or_skipped(folders, capsys):
    pred, gt, maps = folders
    (pred / "b_003.png").unlink()
    assert main(["score", str(pred), "--labels", str(gt)]) == 1
    err = capsys.readouterr().err
    assert "b_003" in err and "--skip-missing" in err
    with pytest.raises(FileNotFoundError, match="1 of 6 predictions are missing"):
        deeplabv2.score_folder(pred, gt)
    assert main(["score", str(pred), "--labels", str(gt), "--skip-missing"]) == 0
    assert "skipped 1 images without a prediction (--skip-missing): b_003" in (
        capsys.readouterr().err
    )
    result = deeplabv2.score_folder(pred, gt, skip_missing=True, workers=2)
    assert result.missing == ("b_003",) and result.num_images == 5
    assert_matches(result, [m for name, m in maps.items() if name != "b_003"])


def test_size_mismatch_names_the_file(folders, capsys):
    pred, gt, _ = folders
    save_png(pred / "c_004.png", np.zeros((18, 29), np.uint8), palette=True)
    with pytest.raises(DatasetError, match=r"c_004\.png is 29x18 \(WxH\) but its ground truth"):
        deeplabv2.score_folder(pred, gt, workers=2)
    assert main(["score", str(pred), "--labels", str(gt)]) == 1
    assert "c_004.png is 29x18" in capsys.readouterr().err


def test_values_outside_the_classes_name_the_file(folders):
    pred, gt, maps = folders
    prediction, truth = maps["a_001"]
    bad = prediction.copy()
    bad[0, :3] = 30
    save_png(pred / "a_001.png", bad, palette=False)
    with pytest.raises(LabelError, match=r"pred/a_001\.png: the prediction holds 3 pixels .*: 30"):
        deeplabv2.score_folder(pred, gt, workers=1)
    save_png(pred / "a_001.png", prediction, palette=False)
    truth = truth.copy()
    truth[1, 1] = 40
    save_png(gt / "a_001.png", truth, palette=True)
    with pytest.raises(LabelError, match=r"gt/a_001\.png: the ground truth holds 1 pixels"):
        deeplabv2.score_folder(pred, gt, workers=1)


def test_split_list_and_voc_root(folders, tmp_path):
    pred, gt, maps = folders
    listed = tmp_path / "list.txt"
    listed.write_text("/JPEGImages/a_000.jpg /SegmentationClassAug/a_000.png\nc_005\n")
    result = deeplabv2.score_folder(pred, gt, split=str(listed), workers=1)
    assert result.num_images == 2
    assert_matches(result, [maps["a_000"], maps["c_005"]])
    listed.write_text("a_000\nz_999\n")
    with pytest.raises(FileNotFoundError, match=r"1 ground-truth files are missing \(.*z_999"):
        deeplabv2.score_folder(pred, gt, split=str(listed))
    root = tmp_path / "VOC2012"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    gt.rename(root / "SegmentationClass")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("b_002\nb_003\n")
    result = deeplabv2.score_folder(pred, data=root, split="train", workers=1)
    assert_matches(result, [maps["b_002"], maps["b_003"]])
    with pytest.raises(ValueError, match="a VOC root needs a split"):
        deeplabv2.score_folder(pred, data=root)


def test_class_lists_file_and_cocostuff(folders, tmp_path, capsys):
    pred, gt, _ = folders
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(f"thing{i}" for i in range(K)) + "\n")
    assert main(["score", str(pred), "--labels", str(gt), "--classes", str(names)]) == 0
    printed = capsys.readouterr().out
    assert "thing0" in printed and "thing20" in printed and "aeroplane" not in printed
    assert main(["score", str(pred), "--labels", str(gt), "--classes", "cocostuff"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line]
    assert "person" in rows and "wood" in rows  # COCO-Stuff's first and last names
    few = tmp_path / "five.txt"
    few.write_text("a\nb\nc\nd\ne\n")
    with pytest.raises(LabelError, match="outside the 5 classes"):
        deeplabv2.score_folder(pred, gt, classes=str(few), workers=1)


def test_bad_options(folders, capsys):
    pred, gt, _ = folders
    with pytest.raises(ValueError, match="ignore index 3 must be a label value"):
        deeplabv2.score_folder(pred, gt, ignore_index=3)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        deeplabv2.score_folder(pred, gt, workers=0)
    with pytest.raises(SystemExit) as usage:  # neither --labels nor --data
        main(["score", str(pred)])
    assert usage.value.code == 2
    assert "one of the arguments --labels --data is required" in capsys.readouterr().err


def test_split_lines_names_with_spaces_and_repeats(tmp_path):
    from deeplabv2.errors import DatasetError
    from deeplabv2.label_eval import _names_in_split

    split = tmp_path / "split.txt"
    split.write_text("my im\nim0.png\n/JPEGImages/a.jpg /SegmentationClassAug/a.png\n")
    assert _names_in_split(split) == ["my im", "im0", "a"]
    split.write_text("im0\nim1\nim0\n")
    with pytest.raises(DatasetError, match=r"1 name\(s\) \(im0\) more than once"):
        _names_in_split(split)


def test_a_truncated_label_png_is_named(tmp_path):
    from deeplabv2.data.images import read_label
    from deeplabv2.errors import ImageError

    path = tmp_path / "cut.png"
    Image.fromarray(np.zeros((65, 81), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ImageError, match="cut.png"):
        read_label(path)


def test_more_workers_than_cores_are_lowered(tmp_path, monkeypatch):
    from deeplabv2 import label_eval

    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    Image.fromarray(np.zeros((65, 81), np.uint8)).save(pred / "a.png")
    Image.fromarray(np.zeros((65, 81), np.uint8)).save(gt / "a.png")
    monkeypatch.setattr(label_eval, "_usable_cores", lambda: 1)
    with pytest.warns(UserWarning, match="workers=1000 lowered to the 1 usable cores"):
        result = label_eval.score_folder(pred, gt, workers=1000)
    assert result.num_images == 1


def test_all_ignored_ground_truth_warns_in_one_line(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    Image.fromarray(np.zeros((65, 81), np.uint8)).save(pred / "a.png")
    Image.fromarray(np.full((65, 81), 255, np.uint8)).save(gt / "a.png")
    command = [sys.executable, "-m", "deeplabv2", "score", str(pred), "--labels", str(gt)]
    result = subprocess.run([*command, "--workers", "1"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "deeplabv2: warning: no labelled pixel in the 1 ground-truth image(s)" in err
    assert "label_eval.py" not in err  # no source line
