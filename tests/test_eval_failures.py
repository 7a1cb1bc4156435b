"""`evaluate` / `deeplabv2 eval` in one process: an unreadable image is skipped and reported,
and labels with no class pixel warn that the scores are undefined."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from skimage import data as skdata

from deeplabv2.cli import main
from deeplabv2.evaluate import evaluate
from deeplabv2.segmenter import Segmenter

from .voc_fixture import write_voc

FAST = ["--single-scale", "--pad-to", "none", "--quiet"]


def test_eval_skips_an_unreadable_image_and_scores_the_rest(tmp_path, voc_safetensors, capsys):
    root = write_voc(tmp_path / "voc")
    (root / "JPEGImages" / "2007_000002.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "r.json"
    argv = ["eval", "--data", str(root), "--weights", str(voc_safetensors), *FAST]
    assert main([*argv, "--out", str(out)]) == 1  # as predict: the rest done, and failed
    err = capsys.readouterr().err
    assert err.count("deeplabv2 eval: skipped cannot read image") == 1
    assert "2007_000002.jpg" in err and "Traceback" not in err
    scores = json.loads(out.read_text())
    assert scores["num_images"] == 2 and scores["num_pixels"] == 2 * 65 * 78
    assert len(scores["failed_images"]) == 1 and "2007_000002.jpg" in scores["failed_images"][0]


def tiny_voc_network():
    """A one-block-per-stage DeepLab v2 with VOC's 21 classes."""
    from deeplabv2.models import DeepLabV2

    torch.manual_seed(0)
    return DeepLabV2(num_classes=21, blocks=(1, 1, 1, 1)).eval()


def test_evaluate_raises_on_an_unreadable_image_unless_asked_to_skip(tmp_path):
    root = write_voc(tmp_path / "voc")
    (root / "JPEGImages" / "2007_000002.jpg").write_bytes(b"not a jpeg")
    from deeplabv2.data.voc import VOCSegmentation
    from deeplabv2.errors import ImageError

    data = VOCSegmentation(root, "val")
    segmenter = Segmenter(tiny_voc_network(), scales=(), pad_to=None)
    with pytest.raises(ImageError, match="2007_000002.jpg"):
        evaluate(segmenter, data, progress=False, ignore_index=255)
    scores = evaluate(segmenter, data, progress=False, skip_unreadable=True)
    assert scores["num_images"] == 2 and len(scores["failed_images"]) == 1


def test_labels_without_a_class_pixel_warn_once(tiny_deeplab):
    photo = np.ascontiguousarray(skdata.coffee()[:65, :81])
    ignored = np.full((65, 81), 255, np.int64)
    dataset = [(photo, ignored, "a"), (photo, ignored, "b")]
    segmenter = Segmenter(tiny_deeplab, scales=(), pad_to=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = evaluate(segmenter, dataset, progress=False)
    messages = [str(w.message) for w in caught if "no labelled pixel" in str(w.message)]
    assert messages == [
        "no labelled pixel in the 2 scored image(s): every label pixel is 255 (ignored), so "
        "the scores are undefined (null)"
    ]
    assert scores["mean_iou"] is None and scores["pixel_accuracy"] is None
    assert scores["num_pixels"] == 0
    labelled = ignored.copy()
    labelled[0, 0] = 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate(segmenter, [(photo, labelled, "c")], progress=False)
    assert not [w for w in caught if "no labelled pixel" in str(w.message)]


def test_eval_warns_when_every_label_is_ignored(tmp_path, voc_safetensors, capsys):
    from PIL import Image

    from deeplabv2.data.classes import voc_palette

    root = write_voc(tmp_path / "voc")
    for path in (root / "SegmentationClass").iterdir():
        blank = Image.fromarray(np.full((65, 81), 255, np.uint8), mode="P")
        blank.putpalette(voc_palette().reshape(-1).tolist())
        blank.save(path)
    argv = ["eval", "--data", str(root), "--weights", str(voc_safetensors), *FAST, "--limit", "1"]
    with pytest.warns(UserWarning, match="no labelled pixel") as warned:
        assert main([*argv, "--out", str(tmp_path / "r.json")]) == 0
    assert len([w for w in warned if "no labelled pixel" in str(w.message)]) == 1
    assert "mean_iou" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["mean_iou"] is None


def test_a_network_for_other_classes_is_refused(tmp_path, tiny_deeplab):
    from deeplabv2.data.voc import VOCSegmentation

    data = VOCSegmentation(write_voc(tmp_path / "voc"), "val")
    segmenter = Segmenter(tiny_deeplab, scales=(), pad_to=None)  # 5 classes, VOC has 21
    with pytest.raises(ValueError, match="predicts 5 classes but the dataset has 21"):
        evaluate(segmenter, data, progress=False)
