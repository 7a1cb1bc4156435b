"""ConfusionMatrix against an independent numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeplabv2.errors import LabelError
from deeplabv2.metrics import ConfusionMatrix


def numpy_scores(preds: list[np.ndarray], targets: list[np.ndarray], n: int) -> dict:
    """Scores written out with numpy loops (the DeepLab / FCN definitions)."""
    hist = np.zeros((n, n), np.int64)
    for p, t in zip(preds, targets):
        for a, b in zip(t.ravel(), p.ravel()):
            if a != 255 and 0 <= a < n:
                hist[a, b] += 1
    tp = np.diag(hist).astype(float)
    gt, pr = hist.sum(1), hist.sum(0)
    union = gt + pr - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / union
        acc = tp / gt
    freq = gt / hist.sum()
    return {
        "pixel_accuracy": tp.sum() / hist.sum(),
        "mean_accuracy": np.nanmean(acc),
        "mean_iou": np.nanmean(iou),
        "fw_iou": (freq[union > 0] * iou[union > 0]).sum(),
        "iou": iou,
    }


def random_maps(seed: int, n: int = 5, shape=(13, 17)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.integers(0, n - 1, shape)  # class n-1 never in the ground truth
    target[rng.random(shape) < 0.1] = 255
    pred = np.where(
        rng.random(shape) < 0.6, np.where(target == 255, 0, target), rng.integers(0, n, shape)
    )
    return pred, target


def test_scores_match_numpy() -> None:
    maps = [random_maps(s) for s in range(3)]
    cm = ConfusionMatrix(5)
    for pred, target in maps:
        cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    got = cm.scores(["a", "b", "c", "d", "e"])
    want = numpy_scores([p for p, _ in maps], [t for _, t in maps], 5)
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
        assert got[key] == pytest.approx(want[key], rel=1e-12)
    ious = [v if v is not None else np.nan for v in got["per_class_iou"].values()]
    np.testing.assert_allclose(ious, want["iou"], rtol=1e-12)
    assert got["num_pixels"] == sum(int((t != 255).sum()) for _, t in maps)


def test_merge_equals_single_accumulation() -> None:
    maps = [random_maps(s) for s in range(4)]
    whole, a, b = ConfusionMatrix(5), ConfusionMatrix(5), ConfusionMatrix(5)
    for i, (pred, target) in enumerate(maps):
        whole.update(pred, target)  # numpy works too
        (a if i % 2 else b).update(pred, target)
    assert torch.equal(a.merge(b).matrix, whole.matrix)
    with pytest.raises(ValueError, match="cannot merge 3 classes into 5"):
        a.merge(ConfusionMatrix(3))


def test_absent_class_is_none_and_ignored_in_means() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 1]]), np.array([[0, 1]]))
    scores = cm.scores()
    assert scores["per_class_iou"]["2"] is None
    assert scores["mean_iou"] == 1.0


def test_bad_updates() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="differ in shape"):
        cm.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="integer label maps"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match=r"predicted labels must be in 0..2"):
        cm.update(np.full((2, 2), 7), np.zeros((2, 2), int))


def test_invalid_labels_are_counted_or_refused() -> None:
    target = np.array([[0, 1, 255, 7], [7, 9, 1, 0]])
    prediction = np.zeros_like(target)
    matrix = ConfusionMatrix(3)
    matrix.update(prediction, target)
    assert dict(matrix.invalid_labels) == {7: 2, 9: 1}
    assert int(matrix.matrix.sum()) == 4  # only 0, 1, 1, 0 are scored; 255 is ignored silently
    assert "3 label pixels hold values outside 0..2 and 255 (ignore) (values: 7, 9)" in (
        matrix.invalid_label_message()
    )
    assert matrix.scores()["invalid_label_pixels"] == {"7": 2, "9": 1}
    with pytest.raises(LabelError, match="values: 7, 9"):
        ConfusionMatrix(3, strict=True).update(prediction, target)
    clean = ConfusionMatrix(3)
    clean.update(np.zeros((1, 2), np.int64), np.array([[0, 255]]))
    assert clean.invalid_label_message() is None


def test_scores_are_json_without_nan() -> None:
    import json

    empty = ConfusionMatrix(3).scores()
    assert empty["pixel_accuracy"] is None and empty["mean_iou"] is None
    assert empty["fw_iou"] is None and empty["mean_accuracy"] is None
    json.dumps(empty, allow_nan=False)
    matrix = ConfusionMatrix(3)
    matrix.update(np.array([0, 0, 1]), np.array([0, 1, 1]))  # class 2 never occurs
    scores = matrix.scores()
    assert scores["per_class_iou"]["2"] is None
    assert scores["mean_iou"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    json.dumps(scores, allow_nan=False)


def test_precision_recall_and_unsure_predictions() -> None:
    target = np.array([[0, 0, 1, 1, 2, 255]])
    prediction = np.array([[0, 255, 1, 0, 255, 255]])
    with pytest.raises(ValueError, match=r"predicted labels must be in 0..2"):
        ConfusionMatrix(3).update(prediction, target)  # 255 predicted: opt-in only
    matrix = ConfusionMatrix(3, allow_unsure=True)
    matrix.update(prediction, target)
    assert matrix.unsure.tolist() == [1, 0, 1]  # per ground-truth class; GT 255 not counted
    strict = matrix.scores(["a", "b", "c"])
    assert strict["per_class_recall"] == {"a": 0.5, "b": 0.5, "c": 0.0}  # unsure are misses
    assert strict["per_class_precision"] == {"a": 0.5, "b": 1.0, "c": None}  # c never predicted
    assert strict["per_class_iou"] == {"a": 1 / 3, "b": 0.5, "c": 0.0}
    assert strict["num_pixels"] == 5 and strict["unsure_pixels"] == 2
    confident = matrix.scores(["a", "b", "c"], confident_only=True)
    assert confident["per_class_recall"] == {"a": 1.0, "b": 0.5, "c": None}
    assert confident["per_class_iou"] == {"a": 0.5, "b": 0.5, "c": None}
    assert confident["num_pixels"] == 3 and confident["pixel_accuracy"] == pytest.approx(2 / 3)
    other = ConfusionMatrix(3, allow_unsure=True)
    other.update(np.array([255]), np.array([2]))
    assert matrix.merge(other).unsure.tolist() == [1, 0, 2]


@pytest.mark.parametrize("allow_unsure", [False, True])
def test_deferred_counts_equal_immediate_ones(allow_unsure: bool) -> None:
    rng = np.random.default_rng(0)
    now = ConfusionMatrix(3, allow_unsure=allow_unsure)
    later = ConfusionMatrix(3, allow_unsure=allow_unsure)
    for _ in range(4):
        target = rng.integers(0, 6, (7, 9)).astype(np.uint8)  # 3..5 are invalid labels
        target[0] = 255
        prediction = rng.integers(0, 3, (7, 9))
        if allow_unsure:
            prediction[1] = 255
        now.update(prediction, target)
        later.update(torch.from_numpy(prediction), torch.from_numpy(target), defer=True)
    assert len(later._pending) == 4  # nothing counted yet
    assert torch.equal(later.matrix, now.matrix) and not later._pending
    assert torch.equal(later.unsure, now.unsure)
    assert later.invalid_labels == now.invalid_labels and sum(now.invalid_labels.values()) > 0
    assert later.scores() == now.scores()


def test_deferred_errors_name_the_label_map() -> None:
    strict = ConfusionMatrix(3, strict=True)
    strict.update(np.zeros((2, 2), int), np.zeros((2, 2), np.uint8), defer=True, name="a")
    strict.update(np.zeros((2, 2), int), np.full((2, 2), 7, np.uint8), defer=True, name="b")
    with pytest.raises(LabelError, match=r"^b: 4 label pixels hold values outside 0\.\.2"):
        strict.flush()
    assert int(strict.matrix.sum()) == 4  # "a", before the bad map, is counted
    wrong = ConfusionMatrix(3)
    wrong.update(np.full((2, 2), 5), np.zeros((2, 2), np.uint8), defer=True, name="c")
    with pytest.raises(ValueError, match=r"^c: predicted labels must be in 0\.\.2"):
        wrong.scores()
