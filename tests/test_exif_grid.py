"""One pixel grid: JPEGs with EXIF orientation 3 (turned by 180 degrees, same size) and 6 (by
90 degrees, sides swapped) are read in their stored pixel grid by ``crf`` (IRN and PSA
recipes), ``score``, the datasets, ``eval`` and training, the grid their labels and CAMs are
made on, so every result equals that of the same pixels saved without the tag. Only
``predict`` and :class:`~deeplabv2.Segmenter` turn them, by default (``--no-exif``,
``exif=False``: the stored grid). A label or score file made on the turned image is refused
with an error that names the orientation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from safetensors.torch import load_file
from skimage import data as skdata

import deeplabv2
from deeplabv2 import Segmenter
from deeplabv2.cli import main
from deeplabv2.crf.synthetic import coarse_probs
from deeplabv2.data import COCO2014, VOCSegmentation
from deeplabv2.data.images import read_label
from deeplabv2.errors import DatasetError

from .data.test_coco import write_coco
from .examples.test_train import TINY, train
from .voc_fixture import NAMES, write_voc

#: each image of a tagged folder and its EXIF orientation (None: no tag)
ORIENTATION = {"up": 3, "side": 6, "plain": None}
FAST = ["--single-scale", "--pad-to", "none", "--quiet"]


def photo(index: int, size: tuple[int, int] = (60, 80)) -> np.ndarray:
    """A real photo resized to ``size`` (H, W): ``(H, W, 3) uint8``."""
    full = (skdata.astronaut(), skdata.coffee(), skdata.chelsea())[index]
    return np.asarray(Image.fromarray(full).resize(size[::-1], Image.Resampling.BILINEAR))


def save_jpeg(path: Path, rgb: np.ndarray, orientation: Optional[int]) -> None:
    """``rgb`` as a JPEG, with the EXIF orientation tag (0x0112) unless None; the same pixels
    give the same stored pixels with or without the tag."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, quality=95, exif=exif)


def stored(path: Path) -> np.ndarray:
    """The stored pixel grid, as PIL decodes it (what the CAMs of PSA and IRN are made on)."""
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))


def turned(path: Path) -> np.ndarray:
    """The image as a viewer shows it (EXIF orientation applied)."""
    with Image.open(path) as image:
        return np.array(ImageOps.exif_transpose(image).convert("RGB"))


def retag(root: Path, orientations: dict[str, Optional[int]]) -> tuple[Path, Path]:
    """Two copies of the dataset folder ``root``: ``plain`` (no tags) and ``tagged`` (each
    JPEG whose stem is a key of ``orientations`` carries that orientation), the same pixels."""
    copies = root.parent / f"{root.name}-plain", root.parent / f"{root.name}-tagged"
    for copy in copies:
        shutil.copytree(root, copy)
    for jpg in root.rglob("*.jpg"):
        rgb = stored(jpg)
        relative = jpg.relative_to(root)
        save_jpeg(copies[0] / relative, rgb, None)
        save_jpeg(copies[1] / relative, rgb, orientations.get(jpg.stem))
    return copies


def assert_labels_see_a_turn(labels: np.ndarray) -> None:
    """The labels are not their own 180-degree turn (so a turned read would change them) and
    hold more than one value."""
    assert len(np.unique(labels)) > 1
    assert not np.array_equal(labels, labels[::-1, ::-1])


# -- crf and score -----------------------------------------------------------------------------


def cams_of(image: np.ndarray, keys: tuple[int, ...], seed: int) -> np.ndarray:
    """``(K, H, W) float32`` CAMs in [0, 1] on the grid of ``image``, each normalised by its
    maximum as IRN's make_cam.py does."""
    probs = coarse_probs(image, len(keys) + 3, seed=seed, temperature=20)[3:]
    return (probs / (probs.max(axis=(1, 2), keepdims=True) + 1e-5)).astype(np.float32)


@pytest.fixture(scope="module")
def crf_inputs(tmp_path_factory) -> Path:
    """``plain/`` and ``tagged/`` image folders (``up``: orientation 3, ``side``: 6, ``plain``:
    none) and ``cams/``, IRN-layout CAMs made on the stored grid."""
    root = tmp_path_factory.mktemp("crf")
    for folder in ("plain", "tagged", "cams"):
        (root / folder).mkdir()
    for index, (name, orientation) in enumerate(ORIENTATION.items()):
        rgb = photo(index)
        save_jpeg(root / "plain" / f"{name}.jpg", rgb, None)
        save_jpeg(root / "tagged" / f"{name}.jpg", rgb, orientation)
        keys = (0, 14)
        cams = cams_of(stored(root / "plain" / f"{name}.jpg"), keys, seed=index)
        np.savez(root / "cams" / f"{name}.npz", high_res=cams, keys=np.array(keys))
    return root


def run_crf(root: Path, images: str, out: Path, preset: str) -> None:
    args = ["crf", str(root / images), str(root / "cams"), "--out", str(out)]
    assert main([*args, "--crf-params", preset, "--crf-workers", "0", "--quiet"]) == 0


@pytest.mark.parametrize("preset", ["irn", "psa"])
def test_crf_labels_of_tagged_jpegs_equal_the_untagged(crf_inputs, tmp_path, preset) -> None:
    run_crf(crf_inputs, "plain", tmp_path / "plain", preset)
    run_crf(crf_inputs, "tagged", tmp_path / "tagged", preset)
    for name in ORIENTATION:
        want = read_label(tmp_path / "plain" / f"{name}.png")
        assert_labels_see_a_turn(want)
        np.testing.assert_array_equal(read_label(tmp_path / "tagged" / f"{name}.png"), want)
    # score reads label PNGs only (no image): the tagged images' pseudo-labels score the same
    truth = tmp_path / "truth"
    truth.mkdir()
    rng = np.random.default_rng(0)
    for name in ORIENTATION:
        gt = np.where(rng.random((60, 80)) < 0.7, read_label(tmp_path / "plain" / f"{name}.png"), 0)
        Image.fromarray(gt.astype(np.uint8)).save(truth / f"{name}.png")
    scores = [deeplabv2.score_folder(tmp_path / k, truth, workers=1) for k in ("plain", "tagged")]
    assert scores[0].to_dict() == scores[1].to_dict()


def test_crf_names_the_orientation_of_cams_made_on_the_turned_image(crf_inputs, tmp_path, capsys):
    cams = tmp_path / "cams"
    shutil.copytree(crf_inputs / "cams", cams)
    side = crf_inputs / "tagged" / "side.jpg"
    np.savez(cams / "side.npz", high_res=cams_of(turned(side), (0, 14), 1), keys=[0, 14])
    args = ["crf", str(crf_inputs / "tagged"), str(cams), "--out", str(tmp_path / "out")]
    assert main([*args, "--crf-params", "irn", "--crf-workers", "0", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "side.npz: scores of size (80, 60) (H, W)" in err
    assert "carries EXIF orientation 6" in err and "stored pixel grid" in err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["plain.png", "up.png"]


def test_score_reads_label_pngs_in_their_stored_grid(tmp_path) -> None:
    """PNGs may carry EXIF too (an eXIf chunk): labels are never turned."""
    rng = np.random.default_rng(1)
    truth, plain, tagged = (tmp_path / name for name in ("truth", "plain", "tagged"))
    for folder in (truth, plain, tagged):
        folder.mkdir()
    for name, orientation in (("up", 3), ("side", 6)):
        gt = rng.integers(0, 21, (30, 40)).astype(np.uint8)
        prediction = np.where(rng.random(gt.shape) < 0.8, gt, 0).astype(np.uint8)
        Image.fromarray(gt).save(truth / f"{name}.png")
        Image.fromarray(prediction).save(plain / f"{name}.png")
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(prediction).save(tagged / f"{name}.png", exif=exif)
        with Image.open(tagged / f"{name}.png") as png:
            assert png.getexif()[0x0112] == orientation  # the tag is there
        np.testing.assert_array_equal(read_label(tagged / f"{name}.png"), prediction)
    scores = [deeplabv2.score_folder(folder, truth, workers=1) for folder in (plain, tagged)]
    assert scores[0].to_dict() == scores[1].to_dict()


# -- datasets, eval and training ---------------------------------------------------------------

#: the three VOC fixture images: turned by 180 degrees, by 90 degrees, and untagged
VOC_TAGS = dict(zip(NAMES, (3, 6, None)))


@pytest.fixture(scope="module")
def voc_pair(tmp_path_factory) -> tuple[Path, Path]:
    """The VOC fixture (65x81 images) twice: untagged, and with :data:`VOC_TAGS`."""
    return retag(write_voc(tmp_path_factory.mktemp("voc") / "voc"), VOC_TAGS)


def assert_same_items(tagged, plain, size: tuple[int, int]) -> None:
    """Every ``(image, label, name)`` of the two datasets is equal; the images are ``size``."""
    assert len(tagged) == len(plain)
    for (image, label, name), (want_image, want_label, want_name) in zip(tagged, plain):
        assert image.shape == (*size, 3) and name == want_name
        np.testing.assert_array_equal(image, want_image)
        np.testing.assert_array_equal(label, want_label)


def test_datasets_read_the_stored_grid(voc_pair, tmp_path) -> None:
    plain, tagged = (VOCSegmentation(root, "val") for root in voc_pair)
    assert_same_items(tagged, plain, (65, 81))
    coco = write_coco(tmp_path / "coco")  # COCO 2014 holds EXIF-tagged JPEGs
    stems = {"COCO_train2014_000000000009": 3, "COCO_train2014_000000000025": 6}
    coco_plain, coco_tagged = (COCO2014(root, "train") for root in retag(coco, stems))
    assert_same_items(coco_tagged, coco_plain, (33, 41))


def test_a_label_made_on_the_turned_image_is_refused_with_the_reason(voc_pair, tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(voc_pair[1], root)
    side = NAMES[1]  # orientation 6
    label = read_label(root / "SegmentationClass" / f"{side}.png")
    Image.fromarray(np.rot90(label, k=-1).astype(np.uint8)).save(
        root / "SegmentationClass" / f"{side}.png"
    )
    data = VOCSegmentation(root, "val")
    with pytest.raises(DatasetError, match="label .* is \\(65, 81\\) \\(W, H\\)") as error:
        data[1]
    assert f"{side}.jpg carries EXIF orientation 6" in str(error.value)
    # a label of another size that no orientation explains: no such hint
    Image.fromarray(label[:, :-1].astype(np.uint8)).save(root / "SegmentationClass" / f"{side}.png")
    with pytest.raises(DatasetError) as error:
        data[1]
    assert "EXIF" not in str(error.value)


def test_eval_scores_tagged_jpegs_as_untagged(voc_pair, tmp_path, voc_safetensors) -> None:
    results = []
    for root, name in zip(voc_pair, ("plain", "tagged")):
        out = tmp_path / f"{name}.json"
        argv = ["eval", "--data", str(root), "--weights", str(voc_safetensors), *FAST]
        assert main([*argv, "--out", str(out)]) == 0  # no image fails
        results.append(json.loads(out.read_text()))
    assert results[1]["num_images"] == 3 and results[1]["failed_images"] == []
    assert results[1] == results[0]


def test_training_reads_the_stored_grid(voc_pair, tmp_path) -> None:
    config = train.Config(**{**TINY, "max_iter": 2, "checkpoint_every": 2})
    plain, tagged = (train.dataset(config, str(root), "val", training=True) for root in voc_pair)
    crops = train.TrainSet(tagged, config), train.TrainSet(plain, config)
    for index in range(len(NAMES)):
        for seed in range(3):
            x, y = crops[0][(index, seed)]
            want_x, want_y = crops[1][(index, seed)]
            assert torch.equal(x, want_x) and torch.equal(y, want_y)


@pytest.mark.slow
def test_training_on_tagged_jpegs_gives_the_same_weights(voc_pair, tmp_path) -> None:
    config = train.Config(**{**TINY, "max_iter": 2, "checkpoint_every": 2})
    for root, name in zip(voc_pair, ("plain", "tagged")):
        train.train(config, str(root), tmp_path / name)
    weights = [load_file(tmp_path / k / "final.safetensors") for k in ("plain", "tagged")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# -- predict and Segmenter: a person's photos are turned unless asked not to ------------------


def test_predict_honours_the_tag_unless_no_exif(crf_inputs, tmp_path, voc_safetensors) -> None:
    from deeplabv2.models import deeplab_v2_resnet101

    base = ["predict", "--weights", str(voc_safetensors), *FAST]
    for images, out, options in (
        ("plain", "plain", []),
        ("tagged", "turned", []),
        ("tagged", "stored", ["--no-exif"]),
        ("tagged", "turned-again", ["--exif"]),
    ):
        assert main([*base, str(crf_inputs / images), "--out", str(tmp_path / out), *options]) == 0
    segmenter = Segmenter(deeplab_v2_resnet101(pretrained=str(voc_safetensors)), scales=(),
                          pad_to=None)  # fmt: skip
    for name, orientation in ORIENTATION.items():
        plain = read_label(tmp_path / "plain" / f"{name}.png")
        np.testing.assert_array_equal(read_label(tmp_path / "stored" / f"{name}.png"), plain)
        shown = turned(crf_inputs / "tagged" / f"{name}.jpg")
        want = segmenter.predict(shown).labels.numpy()
        for out in ("turned", "turned-again"):
            np.testing.assert_array_equal(read_label(tmp_path / out / f"{name}.png"), want)
        assert want.shape == ((80, 60) if orientation == 6 else (60, 80))


def test_segmenter_exif_option(crf_inputs, tiny_deeplab) -> None:
    for name in ORIENTATION:
        path = crf_inputs / "tagged" / f"{name}.jpg"
        grid = Segmenter(tiny_deeplab, scales=(), pad_to=None, exif=False)
        want = grid.predict(stored(crf_inputs / "plain" / f"{name}.jpg")).labels
        assert torch.equal(grid.predict(path).labels, want)
        with Image.open(path) as opened:  # a PIL image with the tag: the same choice
            assert torch.equal(grid.predict(opened).labels, want)
        viewer = Segmenter(tiny_deeplab, scales=(), pad_to=None)  # default: exif=True
        assert viewer.exif and not grid.exif
        shown = viewer.predict(path).labels
        assert torch.equal(shown, viewer.predict(turned(path)).labels)
        assert shown.shape == ((80, 60) if ORIENTATION[name] == 6 else (60, 80))
