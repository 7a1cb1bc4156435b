"""SegmentationFolder, COCO-Stuff (164k and 10k) and Cityscapes read their released layouts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deeplabv2.data import CITYSCAPES_CLASSES, Cityscapes, COCOStuff, SegmentationFolder
from deeplabv2.data.classes import COCOSTUFF_CLASSES
from deeplabv2.errors import DatasetError


def rgb(h: int = 6, w: int = 8) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8))


def test_folder_pairs_with_a_list(tmp_path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    rgb().save(tmp_path / "images" / "a.jpg")
    rgb().save(tmp_path / "images" / "b.png")
    for name, value in (("a", 1), ("b", 2)):
        Image.fromarray(np.full((6, 8), value, np.uint8), mode="L").save(
            tmp_path / "labels" / f"{name}.png"
        )
    (tmp_path / "train.txt").write_text("a\nb\n")
    data = SegmentationFolder(tmp_path, "train", class_names=["bg", "x", "y"])
    assert len(data) == 2 and data.class_names == ("bg", "x", "y")
    image, label, name = data[1]
    assert name == "b" and image.shape == (6, 8, 3) and (label == 2).all()
    (tmp_path / "bad.txt").write_text("c\n")
    with pytest.raises(DatasetError, match="no image for 'c'"):
        SegmentationFolder(tmp_path, "bad")


def test_cocostuff_164k_and_10k(tmp_path) -> None:
    root = tmp_path / "164k"
    (root / "images" / "val2017").mkdir(parents=True)
    (root / "annotations" / "val2017").mkdir(parents=True)
    rgb().save(root / "images" / "val2017" / "000000000139.jpg")
    label = np.array([[0, 181, 255, 5]] * 6 + [], np.uint8).repeat(2, axis=1)
    Image.fromarray(label, mode="L").save(root / "annotations" / "val2017" / "000000000139.png")
    data = COCOStuff(root, "val")
    assert data.class_names == COCOSTUFF_CLASSES and len(COCOSTUFF_CLASSES) == 182
    _, read, name = data[0]
    assert name == "000000000139" and set(np.unique(read)) == {0, 5, 181, 255}

    scipy_io = pytest.importorskip("scipy.io")
    root = tmp_path / "10k"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    (root / "imageLists").mkdir()
    rgb().save(root / "images" / "COCO_train2014_000000000077.jpg")
    mat = np.array([[0, 1, 182, 7]] * 6, np.uint8).repeat(2, axis=1)
    scipy_io.savemat(root / "annotations" / "COCO_train2014_000000000077.mat", {"S": mat})
    (root / "imageLists" / "train.txt").write_text("COCO_train2014_000000000077\n")
    _, read, _ = COCOStuff(root, "train", version="10k")[0]
    # 0 = unlabeled -> 255, classes 1..182 -> 0..181 (the port's convention)
    assert read[0, :8].tolist() == [255, 255, 0, 0, 181, 181, 6, 6]


def test_cityscapes_train_ids(tmp_path) -> None:
    images = tmp_path / "leftImg8bit" / "val" / "frankfurt"
    labels = tmp_path / "gtFine" / "val" / "frankfurt"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    rgb(2, 6).save(images / "frankfurt_000000_000294_leftImg8bit.png")
    ids = np.array([[7, 8, 26, 33, 0, 9], [24, 23, 11, 31, 3, 21]], np.uint8)
    Image.fromarray(ids, mode="L").save(labels / "frankfurt_000000_000294_gtFine_labelIds.png")
    data = Cityscapes(tmp_path, "val")
    _, read, name = data[0]
    assert name == "frankfurt_000000_000294" and len(CITYSCAPES_CLASSES) == 19
    # road 0, sidewalk 1, car 13, bicycle 18, unlabeled/parking/out of roi ignored, ...
    assert read.tolist() == [[0, 1, 13, 18, 255, 255], [11, 10, 2, 16, 255, 8]]
