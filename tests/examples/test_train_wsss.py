"""examples/train.py for weakly supervised segmentation: pseudo-labels, class-balanced loss,
the weak-supervision guard, and the recipes' sources."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from deeplabv2.data import VOC_CLASSES
from deeplabv2.models import DeepLabV2, save_weights
from deeplabv2.protocol import PretrainedInfo
from deeplabv2.weights import get_weights

from ..voc_fixture import NAMES, write_voc
from .test_train import EXAMPLES, QUICK, TINY, train


def hand_ce(logits: np.ndarray, labels: np.ndarray, weight: np.ndarray) -> float:
    """sum_i w_{y_i} * -log softmax(z_i)[y_i] / sum_i w_{y_i} over the labelled pixels."""
    top = bottom = 0.0
    for y in range(labels.shape[0]):
        for x in range(labels.shape[1]):
            target = int(labels[y, x])
            if target == 255:
                continue
            z = logits[:, y, x].astype(np.float64)
            log_p = z[target] - math.log(sum(math.exp(v) for v in z))
            top += weight[target] * -log_p
            bottom += weight[target]
    return top / bottom


def test_class_balanced_loss_equals_a_hand_computation() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 4, 5))
    labels[0, 0] = 255
    weight = np.array([0.5, 2.0, 1.25])
    w = torch.tensor(weight, dtype=torch.float32)
    got = train.per_image_ce(torch.from_numpy(logits), torch.from_numpy(labels), 255, w)
    expected = [hand_ce(logits[i], labels[i], weight) for i in range(2)]
    assert got.tolist() == pytest.approx(expected, rel=1e-5)
    # the port's loss (one batch mean), through branch_losses, without MSC
    config = train.Config(**{**TINY, "loss": "nearest", "num_classes": 3, "class_names": None})
    terms = train.branch_losses(
        torch.from_numpy(logits), torch.from_numpy(labels), config, (1.0,), w
    )
    tops = sum(hand_ce(logits[i], labels[i], weight) * sum(
        weight[t] for t in labels[i].ravel() if t != 255) for i in range(2))  # fmt: skip
    bottoms = sum(weight[t] for t in labels.ravel() if t != 255)
    assert float(terms["logits"]) == pytest.approx(tops / bottoms, rel=1e-5)


class Labels:
    """A dataset's ``items`` and ``label`` (what class_pixel_counts reads)."""

    def __init__(self, maps: list) -> None:
        self.items = [(str(i), None, i) for i in range(len(maps))]
        self.maps = maps

    def label(self, index: int) -> np.ndarray:
        return self.maps[index]


def test_median_frequency_weights_equal_a_hand_computation() -> None:
    maps = [np.array([[0, 0, 1], [1, 255, 255]]), np.array([[0, 2, 2], [2, 2, 2]])]
    pixels, present_in = train.class_pixel_counts(Labels(maps), 4, 255)
    # class 0: 2 + 1 pixels in images of 4 and 6 labelled pixels; class 1: 2 of 4; class 2: 5 of 6
    assert pixels.tolist() == [3, 2, 5, 0] and present_in.tolist() == [10, 4, 6, 0]
    freq = {0: 3 / 10, 1: 2 / 4, 2: 5 / 6}
    median = sorted(freq.values())[1]
    expected = [median / freq[0], median / freq[1], median / freq[2], 0.0]
    assert train.median_frequency(pixels, present_in).tolist() == pytest.approx(expected)


@pytest.fixture(scope="module")
def pseudo(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny VOC dataset and a pseudo-label folder for it, with 255s (ignored pixels)."""
    root = tmp_path_factory.mktemp("wsss")
    voc = write_voc(root / "voc")
    labels = root / "pseudo"
    labels.mkdir()
    for index, name in enumerate(NAMES):
        label = np.zeros((65, 81), np.uint8)
        label[20:50, 20:60] = index + 1
        label[:, 70:] = 255  # unsure: ignored
        Image.fromarray(label).save(labels / f"{name}.png")
    return voc, labels


def test_training_on_pseudo_labels_end_to_end(pseudo, tmp_path) -> None:
    voc, labels = pseudo
    config = train.Config(
        **QUICK,
        label_dir=str(labels),
        supervision="weak",
        class_weights="median_frequency",
    )
    result = train.train(config, str(voc), tmp_path / "run")
    assert result["lineage"][-1] == "VOC 2012 val (pseudo-labels, weak supervision)"
    assert result["warning"] is None  # no initialisation, no pixel labels seen before
    # the weights come from the pseudo-labels (not the dataset's own labels): hand computation
    maps = [np.asarray(Image.open(labels / f"{n}.png")) for n in NAMES]
    labelled = [int((m != 255).sum()) for m in maps]
    freq = {c: sum(int((m == c).sum()) for m in maps) / sum(labelled) for c in (0,)}
    for c in (1, 2, 3):
        freq[c] = int((maps[c - 1] == c).sum()) / labelled[c - 1]
    median = float(np.median(list(freq.values())))
    expected = [median / freq[c] if c in freq else 0.0 for c in range(21)]
    assert result["class_weights"] == pytest.approx(expected, rel=1e-6)
    with safe_open(str(tmp_path / "run" / "final.safetensors"), framework="pt") as handle:
        lineage = json.loads(handle.metadata()["lineage"])
    assert lineage == result["lineage"]


def tiny_from(name: str):
    """What ``get_model(..., pretrained=name)`` gives, small and without a download: a network
    carrying the registry entry's record (its lineage)."""

    def get_model(model: str, pretrained: str, num_classes: int) -> DeepLabV2:
        torch.manual_seed(0)
        net = DeepLabV2(num_classes=num_classes, blocks=(1, 1, 1, 1))
        entry = get_weights(pretrained)
        net.pretrained_info = PretrainedInfo(
            name=entry.name, has_head=False, lineage=entry.lineage, warning=entry.warning
        )
        return net

    return get_model


def test_weak_supervision_from_coco_init_warns_and_is_recorded(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(train, "get_model", tiny_from("coco-init"))
    weak = train.Config(init="coco-init", supervision="weak")
    with pytest.warns(UserWarning, match="weakly supervised run started from weights that saw"):
        model = train.build_model(weak)
    info = model.pretrained_info
    assert "coco-init" in info.warning and "MS-COCO (pixel labels)" in info.warning
    assert info.lineage[:2] == get_weights("coco-init").lineage
    path = save_weights(model, tmp_path / "weak.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata()["warning"] == info.warning  # recorded in the file
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = train.build_model(train.Config(init="coco-init", supervision="full"))
        monkeypatch.setattr(train, "get_model", tiny_from("imagenet"))
        imagenet = train.build_model(train.Config(init="imagenet", supervision="weak"))
    assert full.pretrained_info.warning is None and imagenet.pretrained_info.warning is None


def test_recipes_name_their_sources(tmp_path) -> None:
    for path in sorted((EXAMPLES / "configs").glob("*.json")):
        config = train.Config.load(str(path), {})  # every shipped config is valid
        if path.stem.endswith("_wsss"):
            assert config.supervision == "weak" and config.init == "imagenet"
            assert {"recipe", "init", "max_iter", "batch_size", "crop_size"} <= set(
                config.sources
            ) or "NOT confirmed" in config.sources["recipe"]
    coco = train.Config.load(str(EXAMPLES / "configs" / "coco14_wsss.json"), {})
    assert coco.num_classes == 81 and len(coco.names()) == 81
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"sources": {"learning_rate": "a paper"}}))
    with pytest.raises(ValueError, match="sources names unknown config keys"):
        train.Config.load(str(bad), {})
    with pytest.raises(ValueError, match="supervision must be one of"):
        train.Config(supervision="semi")
    with pytest.raises(ValueError, match="class_weights must be"):
        train.Config(class_weights=[1.0, 2.0])
    assert train.Config(class_weights="median_frequency", supervision="weak").label_dir is None
    assert VOC_CLASSES[0] == "background"
