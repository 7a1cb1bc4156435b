"""MS-COCO 2014 with 81 classes, in the layouts of the weakly supervised segmentation setups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplabv2.data import COCO2014, COCO_CLASSES, COCOSTUFF_CLASSES, open_dataset
from deeplabv2.data.classes import resolve_class_names
from deeplabv2.errors import DatasetError

IDS = {"train": (9, 25), "val": (42,)}
# COCO's 91 thing ids leave 11 unused (COCO-Stuff keeps their names; WSSS drops them)
UNUSED = {"street sign", "hat", "shoe", "eye glasses", "plate", "mirror", "window", "desk",
          "door", "blender", "hair brush"}  # fmt: skip


def write_coco(root: Path) -> Path:
    """train2014/val2014 images named as COCO names them, labels named by 12-digit id (train)
    and by COCO name (val), CLIMS-style list files of 12-digit ids."""
    rng = np.random.default_rng(0)
    (root / "SegmentationClass").mkdir(parents=True)
    for split, ids in IDS.items():
        (root / f"{split}2014").mkdir()
        for number in ids:
            stem = f"COCO_{split}2014_{number:012d}"
            pixels = rng.integers(0, 255, (33, 41, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"{split}2014" / f"{stem}.jpg")
            label = rng.integers(0, 81, (33, 41)).astype(np.uint8)
            label[0] = 255
            name = f"{number:012d}" if split == "train" else stem
            Image.fromarray(label).save(root / "SegmentationClass" / f"{name}.png")
        (root / f"{split}14.txt").write_text("".join(f"{n:012d}\n" for n in ids))
    return root


def test_coco_classes_are_background_and_the_80_things() -> None:
    things = [name for name in COCOSTUFF_CLASSES[:91] if name not in UNUSED]
    assert COCO_CLASSES == ("background", *things) and len(COCO_CLASSES) == 81
    assert resolve_class_names("coco") is COCO_CLASSES


def test_reads_the_lists_images_and_labels(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "coco")
    train = COCO2014(root, "train")
    assert [name for name, _, _ in train.items] == [
        "COCO_train2014_000000000009",
        "COCO_train2014_000000000025",
    ]
    image, label, name = train[1]
    assert image.shape == (33, 41, 3) and label.shape == (33, 41) and label.dtype == np.int64
    expected = np.asarray(Image.open(root / "SegmentationClass" / "000000000025.png"))
    assert np.array_equal(label, expected) and label.max() <= 255
    val = open_dataset("coco", root, "val")
    assert isinstance(val, COCO2014) and val[0][2] == "COCO_val2014_000000000042"
    assert (val.data_name, val.split_name) == ("MS-COCO 2014", "val")
    assert train.class_names is COCO_CLASSES


def test_without_a_list_every_image_of_the_folder(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "coco")
    (root / "val14.txt").unlink()
    assert len(COCO2014(root, "val")) == 1


def test_pseudo_labels_from_another_folder_named_by_integer_id(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "coco")
    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    Image.fromarray(np.full((33, 41), 7, np.uint8)).save(pseudo / "9.png")  # CLIMS' naming
    Image.fromarray(np.full((33, 41), 255, np.uint8)).save(pseudo / "25.png")
    data = open_dataset("coco", root, str(root / "train14.txt"), label_dir=pseudo)
    assert data.split_name == "train"
    assert (data[0][1] == 7).all() and (data[1][1] == 255).all()


def test_bad_lines_and_missing_images_name_the_problem(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "coco")
    (root / "train14.txt").write_text("not-an-id\n")
    with pytest.raises(DatasetError, match="'not-an-id' is not a COCO 2014 image id"):
        COCO2014(root, "train")
    (root / "train14.txt").write_text("123\n")
    with pytest.raises(DatasetError, match="no image for '123'"):
        COCO2014(root, "train")
    with pytest.raises(FileNotFoundError, match="no label folder"):
        COCO2014(root, "val", label_dir=tmp_path / "missing")
    with pytest.raises(ValueError, match="not of cityscapes"):
        open_dataset("cityscapes", root, "val", label_dir=root)


def test_a_missing_label_and_list_file_are_named(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "coco")
    for png in (root / "SegmentationClass").glob("*.png"):
        png.unlink()
    with pytest.raises(DatasetError, match=r"no label PNG for COCO_train2014_\d+ \(looked for"):
        COCO2014(root, "train")
    with pytest.raises(FileNotFoundError, match=r"no list file .*nosuch\.txt \(one COCO"):
        COCO2014(root, str(tmp_path / "nosuch.txt"))


def test_class_list_files_are_read_strictly(tmp_path: Path) -> None:
    names = tmp_path / "classes.txt"
    names.write_text("bg\na\nb\n\n")  # a trailing blank line is fine
    assert resolve_class_names(str(names)) == ("bg", "a", "b")
    names.write_text("bg\n\na\n")
    with pytest.raises(ValueError, match="line 2 is empty"):
        resolve_class_names(str(names))
    names.write_text("bg\na\na\n")
    with pytest.raises(ValueError, match="a named more than once"):
        resolve_class_names(str(names))
