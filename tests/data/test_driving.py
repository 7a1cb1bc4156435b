"""The domain adaptation datasets (GTA5, SYNTHIA) and Cityscapes' class sets (19, 16, 13),
checked against the mappings of the papers' code, typed here from their files (not from ours):

* AdaptSegNet, wasidennis/AdaptSegNet ``dataset/gta5_dataset.py``
  (f80d115a443a227568213a6de40c13fa91c270b9): GTA5's Cityscapes label id -> train id;
* DADA, valeoai/DADA ``dada/dataset/synthia.py`` (9d0f015bdad3e561e42016b907777816a9853234):
  SYNTHIA id -> the 16 train ids; ``dada/dataset/cityscapes_list/info16class.json``
  (d657af66ee3e18a052f3fba6c34707e46ed6ea96): Cityscapes label id -> the 16 train ids;
* ADVENT, valeoai/ADVENT ``advent/utils/func.py`` (7d6f78db5e90980b262243fa4a78f0092b209b97):
  per-class IoU ``diag / (rows + columns - diag)`` of one confusion, then ``nanmean``.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplabv2.data import (
    CITYSCAPES13_CLASSES,
    CITYSCAPES16_CLASSES,
    CITYSCAPES_CLASSES,
    GTA5,
    SYNTHIA,
    Cityscapes,
    open_dataset,
)
from deeplabv2.data.classes import CLASS_LISTS, resolve_class_names
from deeplabv2.data.images import read_png16_channel
from deeplabv2.errors import DatasetError, ImageError
from deeplabv2.metrics import ConfusionMatrix

#: AdaptSegNet dataset/gta5_dataset.py, ``id_to_trainid``
GTA5_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip
#: DADA dada/dataset/synthia.py, ``id_to_trainid`` for ``num_classes == 16``
SYNTHIA_TO_16 = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 9, 10: 10, 17: 11,
                 8: 12, 19: 13, 12: 14, 11: 15}  # fmt: skip
#: DADA info16class.json, ``label2train`` (the pairs that are not 255) and ``label``
CITYSCAPES_TO_16 = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 23: 9, 24: 10,
                    25: 11, 26: 12, 28: 13, 32: 14, 33: 15}  # fmt: skip
INFO16_LABELS = ["road", "sidewalk", "building", "wall", "fence", "pole", "light", "sign",
                 "vegetation", "sky", "person", "rider", "car", "bus", "motocycle",
                 "bicycle"]  # fmt: skip
#: the 13 classes: the 16 without wall, fence and pole (ADVENT's table 2, mIoU*)
THIRTEEN_OF_16 = [0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]

SIZE = 65


def png16(path: Path, samples: np.ndarray) -> None:
    """A 16-bit RGB (``(H, W, 3)``) or RGBA PNG written by hand (zlib + struct, no imaging
    library), each row with another of the five PNG filters, so that the reader must undo them
    all with the 6 (or 8) bytes per pixel of 16-bit samples."""
    height, width, channels = samples.shape
    raw = samples.astype(">u2").tobytes()
    stride, bpp = width * channels * 2, channels * 2
    rows = [np.frombuffer(raw[r * stride : (r + 1) * stride], np.uint8).astype(np.int64)
            for r in range(height)]  # fmt: skip
    out = bytearray()
    for r, row in enumerate(rows):
        up = rows[r - 1] if r else np.zeros(stride, np.int64)
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, np.int64), up[:-bpp]])
        kind = r % 5
        if kind == 0:
            predictor = np.zeros(stride, np.int64)
        elif kind == 1:
            predictor = left
        elif kind == 2:
            predictor = up
        elif kind == 3:
            predictor = (left + up) // 2
        else:  # Paeth
            p = left + up - up_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
            predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
        out.append(kind)
        out += ((row - predictor) % 256).astype(np.uint8).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    colour = {3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0)
    data = zlib.compress(bytes(out))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data[:50])
                     + chunk(b"IDAT", data[50:]) + chunk(b"IEND", b""))  # fmt: skip


def photo(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), np.uint8)).save(path)


@pytest.mark.parametrize("channels", [3, 4])
def test_a_16_bit_png_is_read_with_all_its_bits_from_the_channel_asked(tmp_path, channels):
    rng = np.random.default_rng(channels)
    samples = rng.integers(0, 65536, (SIZE, SIZE, channels))
    samples[0, :4, 0] = [0, 255, 256, 65535]  # high byte only, low byte only, both
    png16(tmp_path / "a.png", samples)
    for channel in range(channels):
        read = read_png16_channel(tmp_path / "a.png", channel)
        assert read.dtype == np.int64 and np.array_equal(read, samples[:, :, channel]), channel
    # Pillow alone keeps the high bytes: what the reader must not return
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "a.png"))[..., 0], samples[..., 0])


def test_other_pngs_are_refused_with_the_file_named(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb8.png")
    with pytest.raises(
        ImageError, match=r"rgb8.png: expected a 16-bit RGB or RGBA PNG, got bit depth 8"
    ):
        read_png16_channel(tmp_path / "rgb8.png")
    png16(tmp_path / "bad.png", np.ones((4, 4, 3), np.int64))
    data = bytearray((tmp_path / "bad.png").read_bytes())
    data[45] ^= 0xFF  # inside the first IDAT chunk's data
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(ImageError, match="bad.png: the PNG chunk 'IDAT' is truncated or corrupt"):
        read_png16_channel(tmp_path / "bad.png")
    (tmp_path / "no.png").write_bytes(b"GIF89a")
    with pytest.raises(ImageError, match="not a PNG"):
        read_png16_channel(tmp_path / "no.png")


def write_synthia(root: Path, names=("0000000", "0000001")) -> dict[str, np.ndarray]:
    """RAND_CITYSCAPES layout; every SYNTHIA id 0..22 in the first channel, instance ids (and
    values above 255) in the others. Returns the class id maps by name."""
    (root / "RGB").mkdir(parents=True)
    (root / "GT" / "LABELS").mkdir(parents=True)
    rng = np.random.default_rng(1)
    ids = {}
    for seed, name in enumerate(names):
        photo(root / "RGB" / f"{name}.png", seed)
        classes = rng.integers(0, 23, (SIZE, SIZE))
        classes.flat[:23] = np.arange(23)
        instances = rng.integers(0, 4000, (SIZE, SIZE, 2))
        png16(root / "GT" / "LABELS" / f"{name}.png", np.dstack([classes, instances]))
        ids[name] = classes
    return ids


def expected(ids: np.ndarray, table: dict[int, int]) -> np.ndarray:
    out = np.full(ids.shape, 255, np.int64)
    for value, train in table.items():
        out[ids == value] = train
    return out


def test_synthia_maps_its_first_channel_to_the_16_classes_as_dada(tmp_path):
    ids = write_synthia(tmp_path)
    data = SYNTHIA(tmp_path)  # split "all", 16 classes
    assert len(data) == 2 and data.data_name == "SYNTHIA" and data.split_name == "all"
    assert data.class_names == CITYSCAPES16_CLASSES and data.mean_over is None
    image, label, name = data[1]
    assert name == "0000001" and image.shape == (SIZE, SIZE, 3)
    assert np.array_equal(label, expected(ids[name], SYNTHIA_TO_16))
    thirteen = SYNTHIA(tmp_path, classes=13)
    assert thirteen.class_names == CITYSCAPES16_CLASSES  # the 16 labels, averaged over 13
    assert list(thirteen.mean_over) == THIRTEEN_OF_16
    assert np.array_equal(thirteen[1][1], label)
    (tmp_path / "one.txt").write_text("0000001.png\n")
    assert [item[0] for item in SYNTHIA(tmp_path, "one").items] == ["0000001"]
    with pytest.raises(ValueError, match="scored with 16 or 13 Cityscapes classes"):
        SYNTHIA(tmp_path, classes=19)


def test_gta5_maps_cityscapes_label_ids_as_adaptsegnet(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    ids = np.random.default_rng(2).integers(0, 35, (SIZE, SIZE)).astype(np.uint8)
    ids.flat[:35] = np.arange(35)
    for seed, name in enumerate(("00001", "00002", "00003")):
        photo(tmp_path / "images" / f"{name}.png", seed)
        label = Image.fromarray(ids, mode="P")  # GTA5's labels are palette PNGs
        label.putpalette(list(range(256)) * 3)
        label.save(tmp_path / "labels" / f"{name}.png")
    # AdaptSegNet's gta5_list/train.txt holds names with their suffix: 00001.png
    (tmp_path / "train.txt").write_text("00001.png\n00003.png\n")
    data = GTA5(tmp_path, "train")
    assert data.data_name == "GTA5" and data.split_name == "train"
    assert [item[0] for item in data.items] == ["00001", "00003"]
    assert data.class_names == CITYSCAPES_CLASSES
    assert np.array_equal(data[0][1], expected(ids.astype(np.int64), GTA5_TO_TRAIN))
    assert len(GTA5(tmp_path)) == 3  # "all": every image
    (tmp_path / "gone.txt").write_text("00004\n")
    with pytest.raises(DatasetError, match=r"missing from .*images, e.g. 00004.png"):
        GTA5(tmp_path, "gone")
    with pytest.raises(FileNotFoundError, match=r"no GTA5 split 'val'.*val.txt"):
        GTA5(tmp_path, "val")


@pytest.mark.parametrize(
    ("dataset", "folder"), [(GTA5, "labels"), (SYNTHIA, "GT/LABELS"), (SYNTHIA, "RGB")]
)
def test_a_missing_folder_is_named(tmp_path, dataset, folder):
    write_synthia(tmp_path)
    (tmp_path / "images").mkdir()
    if dataset is SYNTHIA:
        (tmp_path / folder).rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match=f"no {dataset.data_name} {folder}/ folder under"):
        dataset(tmp_path)


def write_cityscapes(root: Path, ids: np.ndarray, names=("frankfurt_000000_000294",)) -> Path:
    images = root / "leftImg8bit" / "val" / "frankfurt"
    labels = root / "gtFine" / "val" / "frankfurt"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for seed, name in enumerate(names):
        photo(images / f"{name}_leftImg8bit.png", seed)
        Image.fromarray(ids.astype(np.uint8), mode="L").save(labels / f"{name}_gtFine_labelIds.png")
    return root


def test_cityscapes_class_sets_map_as_the_papers(tmp_path):
    ids = np.random.default_rng(3).integers(0, 35, (SIZE, SIZE))
    ids.flat[:35] = np.arange(35)
    write_cityscapes(tmp_path, ids)
    assert np.array_equal(Cityscapes(tmp_path, "val")[0][1], expected(ids, GTA5_TO_TRAIN))
    sixteen = Cityscapes(tmp_path, "val", classes=16)
    assert np.array_equal(sixteen[0][1], expected(ids, CITYSCAPES_TO_16))
    short = {"traffic light": "light", "traffic sign": "sign", "motorcycle": "motocycle"}
    assert [short.get(n, n) for n in sixteen.class_names] == INFO16_LABELS
    thirteen = Cityscapes(tmp_path, "val", classes=13)
    assert (
        np.array_equal(thirteen[0][1], sixteen[0][1])
        and thirteen.class_names == sixteen.class_names
    )
    assert [sixteen.class_names[i] for i in thirteen.mean_over] == list(CITYSCAPES13_CLASSES)
    assert list(thirteen.mean_over) == THIRTEEN_OF_16
    # a labelTrainIds PNG (19 train ids) maps to the 16 too
    train_ids = expected(ids, GTA5_TO_TRAIN).astype(np.uint8)
    folder = tmp_path / "gtFine" / "val" / "frankfurt"
    Image.fromarray(train_ids, mode="L").save(
        folder / "frankfurt_000000_000294_gtFine_labelTrainIds.png"
    )
    assert np.array_equal(Cityscapes(tmp_path, "val", classes=16)[0][1], sixteen[0][1])


def test_the_class_lists_by_name():
    assert resolve_class_names("cityscapes") == CITYSCAPES_CLASSES and len(CITYSCAPES_CLASSES) == 19
    assert CLASS_LISTS["cityscapes16"] == CITYSCAPES16_CLASSES and len(CITYSCAPES16_CLASSES) == 16
    assert CLASS_LISTS["cityscapes13"] == CITYSCAPES13_CLASSES
    assert set(CITYSCAPES16_CLASSES) - set(CITYSCAPES13_CLASSES) == {"wall", "fence", "pole"}


def independent_iou13(truth: np.ndarray, prediction: np.ndarray) -> float:
    """ADVENT's scoring of the 16 classes (fast_hist, per_class_iu), nanmean over 13."""
    keep = truth < 16
    hist = np.bincount(16 * truth[keep] + prediction[keep], minlength=256).reshape(16, 16)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    return float(np.nanmean(iou[THIRTEEN_OF_16]))


def test_the_13_class_miou_is_the_16_class_confusion_averaged_over_13():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 16, 5000)
    truth[rng.random(5000) < 0.1] = 255
    truth[truth == 7] = 6  # a class of the 13 absent from the truth...
    prediction = np.where(rng.random(5000) < 0.6, truth, rng.integers(0, 16, 5000)) % 256
    prediction[prediction == 255] = 3
    prediction[prediction == 7] = 8  # ...and from the predictions: NaN, left out of the mean
    matrix = ConfusionMatrix(16)
    matrix.update(prediction, truth)
    scores = matrix.scores(CITYSCAPES16_CLASSES, mean_over=THIRTEEN_OF_16)
    assert scores["mean_iou"] == pytest.approx(independent_iou13(truth, prediction), abs=1e-12)
    assert scores["per_class_iou"]["traffic sign"] is None
    every = matrix.scores(CITYSCAPES16_CLASSES)
    assert scores["mean_iou"] != pytest.approx(every["mean_iou"])
    assert scores["pixel_accuracy"] == every["pixel_accuracy"]
    with pytest.raises(ValueError, match="mean_over must name classes in 0..15"):
        matrix.scores(mean_over=[16])


def test_open_dataset_takes_a_class_set_where_the_dataset_has_one(tmp_path):
    write_cityscapes(tmp_path / "cs", np.full((SIZE, SIZE), 7))
    data = open_dataset("cityscapes", tmp_path / "cs", "val", class_names=CITYSCAPES13_CLASSES)
    assert isinstance(data, Cityscapes) and data.classes == 13
    with pytest.raises(
        ValueError, match="the voc dataset is scored with its own classes, voc, not cityscapes16"
    ):
        open_dataset("voc", tmp_path / "nowhere", "val", class_names=CITYSCAPES16_CLASSES)
    with pytest.raises(
        ValueError,
        match="synthia dataset is scored with the classes cityscapes16, cityscapes13, not "
        "cityscapes ",
    ):
        open_dataset("synthia", tmp_path, "all", class_names=CITYSCAPES_CLASSES)
    with pytest.raises(ValueError, match="cityscapes dataset is scored .* not voc"):
        open_dataset("cityscapes", tmp_path / "cs", "val", class_names=resolve_class_names("voc"))


@pytest.fixture
def tiny_network(monkeypatch):
    """``deeplabv2 eval`` loads a one-block-per-stage 16-class network, whatever --weights."""
    import torch

    import deeplabv2.models
    from deeplabv2.models import DeepLabV2

    def load(weights, model=None, dialect=None):
        torch.manual_seed(0)
        return DeepLabV2(num_classes=load.classes, blocks=(1, 1, 1, 1)).eval()

    load.classes = 16
    monkeypatch.setattr(deeplabv2.models, "load_model", load)
    return load


def test_eval_scores_cityscapes_with_16_and_13_classes(tmp_path, tiny_network, capsys):
    from deeplabv2.cli import main

    ids = np.random.default_rng(5).choice([7, 8, 11, 12, 13, 17, 21, 23, 26, 0], (SIZE, SIZE))
    root = write_cityscapes(tmp_path / "cs", ids, names=("a_000000_000001", "a_000000_000002"))
    argv = ["eval", "--data", str(root), "--dataset", "cityscapes", "--weights", "any",
            "--single-scale", "--pad-to", "none", "--quiet"]  # fmt: skip
    results = {}
    for name in ("cityscapes16", "cityscapes13"):
        out = tmp_path / f"{name}.json"
        assert main([*argv, "--classes", name, "--out", str(out)]) == 0
        results[name] = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "wall" in printed and "(not in the means)" in printed
    sixteen, thirteen = results["cityscapes16"], results["cityscapes13"]
    assert list(sixteen["per_class_iou"]) == list(CITYSCAPES16_CLASSES)
    assert thirteen["per_class_iou"] == sixteen["per_class_iou"]
    assert thirteen["mean_over"] == list(CITYSCAPES13_CLASSES) and "mean_over" not in sixteen
    ious = [sixteen["per_class_iou"][n] for n in CITYSCAPES13_CLASSES]
    assert thirteen["mean_iou"] == pytest.approx(np.mean([v for v in ious if v is not None]))
    assert thirteen["mean_iou"] != pytest.approx(sixteen["mean_iou"])

    tiny_network.classes = 13  # a 13-output network: not how the papers score 13 classes
    assert main([*argv, "--classes", "cityscapes13"]) == 1
    err = capsys.readouterr().err
    assert "predicts 13 classes but the dataset has 16" in err
    assert "averaged over 13 of the classes" in err and "13 outputs is not scored" in err


def test_eval_refuses_a_cityscapes_set_for_another_dataset(tmp_path, capsys):
    from deeplabv2.cli import main

    from ..voc_fixture import write_voc

    root = write_voc(tmp_path / "voc")
    code = main(["eval", "--data", str(root), "--weights", "any", "--classes", "cityscapes16"])
    err = capsys.readouterr().err
    assert code != 0 and "voc dataset is scored with its own classes, voc, not cityscapes16" in err


def test_score_averages_cityscapes13_over_the_16_class_labels(tmp_path):
    """``deeplabv2 score --classes cityscapes13``: label PNGs of the 16 classes, as ``eval``."""
    from deeplabv2.label_eval import score_folder

    rng = np.random.default_rng(6)
    truth = rng.integers(0, 16, (SIZE, SIZE))
    truth[:, :5] = 255
    prediction = np.where(
        rng.random((SIZE, SIZE)) < 0.5, truth % 255, rng.integers(0, 16, (SIZE, SIZE))
    )
    for folder, values in (("truth", truth), ("pred", prediction)):
        (tmp_path / folder).mkdir()
        Image.fromarray(values.astype(np.uint8), mode="L").save(tmp_path / folder / "a.png")
    result = score_folder(tmp_path / "pred", tmp_path / "truth", classes="cityscapes13", workers=1)
    assert result.class_names == CITYSCAPES16_CLASSES
    assert result.mean_iou == pytest.approx(independent_iou13(truth.ravel(), prediction.ravel()))
