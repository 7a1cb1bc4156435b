"""COCO 2014 label maps from instances files: equal to pycocotools' ``annToMask`` painted as
ReCAM's ``mscoco/annToMask.py`` paints them, written as the PNGs ``COCO2014`` reads."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplabv2.cli.main import main
from deeplabv2.data import COCO2014, COCO_CLASSES
from deeplabv2.data.coco_masks import (
    COCO_CATEGORY_IDS,
    coco_label_maps,
    label_map,
    load_instances,
    mask_api,
)

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

H, W = 65, 80


def _uncompressed(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a (H, W) 0/1 mask: run lengths in column-major order,
    starting with a run of zeros."""
    flat = mask.astype(np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": list(mask.shape), "counts": counts}


def _compressed(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _box(h: int, w: int, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[top:bottom, left:right] = 1
    return mask


def instances_json() -> dict:
    """Four images: polygons (one of two parts), overlaps (later wins, also a large instance
    after a small one), an uncompressed crowd RLE over instances, non-crowd compressed and
    uncompressed RLEs, an image with only a crowd, an image without annotations."""
    categories = [{"id": i, "name": COCO_CLASSES[k], "supercategory": "thing"}
                  for k, i in enumerate(COCO_CATEGORY_IDS, start=1)]  # fmt: skip
    images = [
        {"id": 42, "file_name": "COCO_val2014_000000000042.jpg", "height": H, "width": W},
        {"id": 73, "file_name": "COCO_val2014_000000000073.jpg", "height": 50, "width": 40},
        {"id": 74, "file_name": "COCO_val2014_000000000074.jpg", "height": H, "width": W},
        {"id": 133, "file_name": "COCO_val2014_000000000133.jpg", "height": 30, "width": 70},
    ]
    anns = [
        # image 42: a person polygon, a dog polygon over its right half (the dog wins there)
        {"id": 1, "image_id": 42, "category_id": 1, "iscrowd": 0,
         "segmentation": [[5.5, 5.0, 40.2, 6.0, 38.0, 50.7, 4.0, 48.0]]},
        {"id": 2, "image_id": 42, "category_id": 18, "iscrowd": 0,
         "segmentation": [[25.0, 20.0, 70.0, 22.5, 60.3, 60.0, 22.0, 55.0]]},
        # a crowd of people over both: not painted (the instances under it stay)
        {"id": 3, "image_id": 42, "category_id": 1, "iscrowd": 1,
         "segmentation": _uncompressed(_box(H, W, 30, 10, 64, 79))},
        # a car of two polygons, a toothbrush (id 90 -> 80) as a compressed RLE over the dog
        {"id": 4, "image_id": 42, "category_id": 3, "iscrowd": 0,
         "segmentation": [[72.0, 2.0, 79.0, 2.0, 79.0, 10.0], [60.0, 1.0, 66.0, 1.0, 63.0, 8.0]]},
        {"id": 5, "image_id": 42, "category_id": 90, "iscrowd": 0,
         "segmentation": _compressed(_box(H, W, 40, 40, 47, 52))},
        # a non-crowd uncompressed RLE (id 13 -> stop sign, 12)
        {"id": 6, "image_id": 42, "category_id": 13, "iscrowd": 0,
         "segmentation": _uncompressed(_box(H, W, 58, 0, 65, 9))},
        # image 74: only a crowd -> all background
        {"id": 7, "image_id": 74, "category_id": 44, "iscrowd": 1,
         "segmentation": _compressed(_box(H, W, 0, 0, 20, 20))},
        # image 133: a small cat, then a large bed over it (file order, not size, decides)
        {"id": 8, "image_id": 133, "category_id": 17, "iscrowd": 0,
         "segmentation": [[10.0, 10.0, 20.0, 10.0, 20.0, 20.0, 10.0, 20.0]]},
        {"id": 9, "image_id": 133, "category_id": 65, "iscrowd": 0,
         "segmentation": [[2.0, 2.0, 60.0, 2.0, 60.0, 28.0, 2.0, 28.0]]},
    ]  # fmt: skip
    for ann in anns:  # the keys pycocotools' COCO() indexes besides these
        ann.setdefault("area", 1.0)
        ann.setdefault("bbox", [0.0, 0.0, 1.0, 1.0])
    return {"images": images, "annotations": anns, "categories": categories}


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def reference_maps(path: Path) -> dict[int, np.ndarray]:
    """Independently of deeplabv2: pycocotools' own ``COCO(...).annToMask`` of each non-crowd
    annotation in file order, painted over the earlier ones with the index of its category
    among the sorted category ids, plus one (ReCAM's annToMask.py, commit 16e34b8)."""
    coco = COCO(str(path))
    order = sorted(coco.getCatIds())
    maps = {}
    for image_id, image in coco.imgs.items():
        labels = np.zeros((image["height"], image["width"]), dtype=np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
            labels[coco.annToMask(ann) == 1] = order.index(ann["category_id"]) + 1
        maps[image_id] = labels
    return maps


@pytest.fixture
def instances(tmp_path: Path) -> Path:
    return write_json(tmp_path / "instances_val2014.json", instances_json())


def test_category_ids_are_recams_order() -> None:
    # ReCAM's category_map: "11": 11, "13": 12, "25": 24, "27": 25, "90": 80; 80 classes
    assert len(COCO_CATEGORY_IDS) == 80 == len(COCO_CLASSES) - 1
    labels = {i: COCO_CATEGORY_IDS.index(i) + 1 for i in (1, 11, 13, 25, 27, 90)}
    assert labels == {1: 1, 11: 11, 13: 12, 25: 24, 27: 25, 90: 80}
    assert list(COCO_CATEGORY_IDS) == sorted(COCO_CATEGORY_IDS)


def test_label_maps_equal_pycocotools_annToMask_painted_in_file_order(instances: Path) -> None:
    loaded = load_instances(instances)
    expected = reference_maps(instances)
    made = {loaded.images[r.index].id: r.labels for r in coco_label_maps(loaded)}
    assert made.keys() == expected.keys() == {42, 73, 74, 133}
    for image_id, labels in made.items():
        assert labels is not None and labels.dtype == np.uint8
        np.testing.assert_array_equal(labels, expected[image_id], err_msg=f"image {image_id}")
    # the cases are all there: overlap (dog over person), crowd unpainted, RLEs, order
    first = made[42]
    names = ["background", "person", "car", "stop sign", "dog", "toothbrush"]
    assert set(np.unique(first)) == {COCO_CLASSES.index(name) for name in names}
    dog, person = COCO_CLASSES.index("dog"), COCO_CLASSES.index("person")
    assert first[30, 30] == dog and first[10, 10] == person  # the later dog wins the overlap
    assert first[62, 70] == 0  # under the crowd of people only: background
    assert not made[74].any() and not made[73].any() and made[73].shape == (50, 40)
    assert made[133][15, 15] == COCO_CLASSES.index("bed")  # the later, larger bed wins


def test_label_map_of_one_image(instances: Path) -> None:
    data = instances_json()
    anns = [a for a in data["annotations"] if a["image_id"] == 133]
    assert label_map(anns, 30, 70)[15, 15] == COCO_CLASSES.index("bed")
    assert label_map(anns[::-1], 30, 70)[15, 15] == COCO_CLASSES.index("cat")


def test_an_undecodable_mask_fails_its_image_only(tmp_path: Path) -> None:
    data = instances_json()
    data["annotations"][5]["segmentation"]["counts"][-1] += 5  # runs beyond the 65x80 pixels
    loaded = load_instances(write_json(tmp_path / "x.json", data))
    results = list(coco_label_maps(loaded))
    assert [r.error is None for r in results] == [False, True, True, True]
    message = str(results[0].error)
    assert "COCO_val2014_000000000042.jpg (image 42): annotation 6:" in message
    assert "pycocotools cannot decode it" in message


def _broken(change) -> dict:
    data = copy.deepcopy(instances_json())
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("annotations"), "no 'annotations' list"),
        (lambda d: d["annotations"][1].update(category_id=12), "annotation 2 has category 12"),
        (lambda d: d["annotations"][0].pop("iscrowd"), "annotation 1 has no iscrowd"),
        (lambda d: d["annotations"][0].update(image_id=7), "of image 7, which 'images' does"),
        (lambda d: d["annotations"][0].update(segmentation=[[1.0, 2.0, 3.0, 4.0]]),
         "annotation 1 (image 42): its segmentation has a polygon of 4 coordinates"),
        (lambda d: d["annotations"][4]["segmentation"].update(size=[64, 80]),
         "is an RLE of size [64, 80], the image is [65, 80]"),
        (lambda d: d["images"][1].update(height=0), "image 73 (COCO_val2014_000000000073.jpg)"),
        (lambda d: d["images"][1].update(file_name="../x.jpg"), "'../x.jpg' is not a plain"),
        (lambda d: d["images"][1].update(file_name="COCO_val2014_000000000042.png"),
         "would both get the label COCO_val2014_000000000042.png"),
        (lambda d: d["categories"][0].update(name="people"), "category 1 is 'people'"),
        (lambda d: d["categories"].append({"id": 91, "name": "x"}), "category id 91 ('x')"),
    ],
)  # fmt: skip
def test_a_file_that_would_spoil_labels_is_refused(tmp_path: Path, change, message) -> None:
    path = write_json(tmp_path / "bad.json", _broken(change))
    with pytest.raises(ValueError, match="bad.json") as error:
        load_instances(path)
    assert message in str(error.value)


def test_not_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{")
    with pytest.raises(ValueError, match=r"x\.json: not JSON"):
        load_instances(path)


def test_missing_pycocotools_says_how_to_install(monkeypatch, instances: Path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # import pycocotools -> ImportError
    with pytest.raises(ImportError, match=r'pip install "deeplabv2\[coco\]"'):
        mask_api()
    with pytest.raises(ImportError, match="pycocotools"):
        next(coco_label_maps(load_instances(instances)))
    assert main(["coco-masks", str(instances), "--out", str(instances.parent / "out")]) == 1
    assert 'pip install "deeplabv2[coco]"' in capsys.readouterr().err
    assert not (instances.parent / "out").exists() or not any((instances.parent / "out").iterdir())


def _images(folder: Path, sizes: dict[str, tuple[int, int]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (h, w) in sizes.items():
        Image.fromarray(np.zeros((h, w, 3), dtype=np.uint8)).save(folder / name)
    return folder


SIZES = {
    "COCO_val2014_000000000042.jpg": (H, W),
    "COCO_val2014_000000000073.jpg": (50, 40),
    "COCO_val2014_000000000074.jpg": (H, W),
    "COCO_val2014_000000000133.jpg": (30, 70),
}


def test_cli_writes_grayscale_pngs_that_coco2014_reads(tmp_path: Path, instances: Path) -> None:
    root = tmp_path / "coco"
    _images(root / "val2014", SIZES)
    out = root / "SegmentationClass"
    code = main(["coco-masks", str(instances), "--images", str(root / "val2014"),
                 "--out", str(out), "--workers", "0", "--quiet"])  # fmt: skip
    assert code == 0
    expected = reference_maps(instances)
    assert sorted(p.name for p in out.iterdir()) == [n.replace(".jpg", ".png") for n in SIZES]
    with Image.open(out / "COCO_val2014_000000000042.png") as png:
        assert png.mode == "L"  # class indices, not a palette
    dataset = COCO2014(root, "val")
    assert len(dataset) == 4 and dataset.class_names is COCO_CLASSES
    for _, label, name in dataset:
        np.testing.assert_array_equal(label, expected[int(name.split("_")[-1])])


def test_cli_resumes_and_force_redoes(tmp_path: Path, instances: Path, capsys) -> None:
    out = tmp_path / "out"
    args = ["coco-masks", str(instances), "--out", str(out), "--workers", "0", "--quiet"]
    assert main(args) == 0
    assert "wrote 4 label PNGs" in capsys.readouterr().out
    done = out / "COCO_val2014_000000000042.png"
    Image.fromarray(np.full((H, W), 7, np.uint8)).save(done)  # stands for an earlier run's
    (out / "COCO_val2014_000000000133.png").unlink()  # an interrupted run's missing one
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 label PNGs" in printed and "(3 already there)" in printed
    assert (np.asarray(Image.open(done)) == 7).all()  # kept
    assert (out / "COCO_val2014_000000000133.png").is_file()
    assert main([*args, "--force"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(done)), reference_maps(instances)[42])
    assert not list(out.glob(".*"))  # no temporary files left


def test_cli_names_each_failed_image_and_exits_1(tmp_path: Path, instances: Path, capsys) -> None:
    sizes = dict(SIZES)
    sizes["COCO_val2014_000000000073.jpg"] = (40, 50)  # transposed: not the JSON's image
    del sizes["COCO_val2014_000000000133.jpg"]
    images = _images(tmp_path / "val2014", sizes)
    out = tmp_path / "out"
    code = main(["coco-masks", str(instances), "--images", str(images), "--out", str(out),
                 "--workers", "0", "--quiet"])  # fmt: skip
    assert code == 1
    captured = capsys.readouterr()
    assert "COCO_val2014_000000000073.jpg (image 73)" in captured.err
    assert "is 50x40 pixels but the JSON says 40x50" in captured.err
    assert "COCO_val2014_000000000133.jpg (image 133): no image file" in captured.err
    assert "wrote 2 label PNGs" in captured.out and "2 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == [
        "COCO_val2014_000000000042.png", "COCO_val2014_000000000074.png"]  # fmt: skip


def test_cli_refuses_a_bad_file_before_writing(tmp_path: Path, capsys) -> None:
    data = _broken(lambda d: d["annotations"][3].update(category_id=0))
    path = write_json(tmp_path / "bad.json", data)
    assert main(["coco-masks", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    assert "annotation 4 has category 0, not one of COCO's 80" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "option", [["--workers", "-1"], ["--max-pixels", "0"], ["--workers", "two"]]
)
def test_cli_option_out_of_range_is_a_usage_error(tmp_path: Path, instances: Path, option,
                                                  capsys) -> None:  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        main(["coco-masks", str(instances), "--out", str(tmp_path / "out"), *option])
    assert stop.value.code == 2 and option[0] in capsys.readouterr().err


def test_cli_max_pixels_fails_the_larger_images(tmp_path: Path, instances: Path, capsys) -> None:
    out = tmp_path / "out"
    args = ["coco-masks", str(instances), "--out", str(out), "--max-pixels", "2100", "--quiet"]
    assert main([*args, "--workers", "0"]) == 1
    err = capsys.readouterr().err
    assert (
        err.count("is over the limit of 2100") == 2 and "(image 42)" in err and "(image 74)" in err
    )


def test_cli_refuses_out_inside_the_images(tmp_path: Path, instances: Path, capsys) -> None:
    images = _images(tmp_path / "val2014", SIZES)
    code = main(["coco-masks", str(instances), "--images", str(images),
                 "--out", str(images / "labels")])  # fmt: skip
    assert code == 1 and "among the images" in capsys.readouterr().err


def test_workers_give_the_same_maps(tmp_path: Path, instances: Path) -> None:
    out = tmp_path / "out"
    assert main(["coco-masks", str(instances), "--out", str(out), "--workers", "2",
                 "--quiet"]) == 0  # fmt: skip
    for image_id, labels in reference_maps(instances).items():
        png = out / f"COCO_val2014_{image_id:012d}.png"
        np.testing.assert_array_equal(np.asarray(Image.open(png)), labels)
