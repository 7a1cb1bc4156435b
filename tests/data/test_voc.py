"""VOCSegmentation: the VOC 2012 layout and the release's list-file layout."""

from __future__ import annotations

import numpy as np
import pytest

from deeplabv2.data.voc import VOCSegmentation

from ..voc_fixture import NAMES, write_voc


def test_voc_layout(tmp_path) -> None:
    root = write_voc(tmp_path / "voc")
    dataset = VOCSegmentation(root, "val")
    assert len(dataset) == 3
    image, label, name = dataset[1]
    assert name == NAMES[1]
    assert image.shape == (65, 81, 3) and image.dtype == np.uint8
    assert label.shape == (65, 81) and label.dtype == np.int64
    assert set(np.unique(label)) <= set(range(21)) | {255} and (label[:, :3] == 255).all()
    assert len(VOCSegmentation(root, "val", limit=2)) == 2


def test_list_file_layout(tmp_path) -> None:
    root = write_voc(tmp_path / "voc")
    (root / "list").mkdir()
    lines = [f"/JPEGImages/{n}.jpg /SegmentationClass/{n}.png" for n in NAMES[:2]]
    (root / "list" / "trainaug.txt").write_text("\n".join(lines))
    dataset = VOCSegmentation(root, "trainaug")
    assert [item[0] for item in dataset.items] == list(NAMES[:2])
    assert dataset[0][1].shape == (65, 81)


def test_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        VOCSegmentation(tmp_path / "nowhere")
    root = write_voc(tmp_path / "voc")
    with pytest.raises(FileNotFoundError, match="no split 'test'"):
        VOCSegmentation(root, "test")
    (root / "bad.txt").write_text("only-one-column\n")
    with pytest.raises(ValueError, match="expected '<image> <label>'"):
        VOCSegmentation(root, str(root / "bad.txt"))
