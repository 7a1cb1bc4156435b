"""The seen-data guard: weights are not scored on a split their lineage says they trained on."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest
import torch

from deeplabv2 import Segmenter
from deeplabv2.cli.main import main
from deeplabv2.data import VOC_CLASSES, VOCSegmentation
from deeplabv2.errors import SeenDataError
from deeplabv2.evaluate import evaluate
from deeplabv2.models import DeepLabV2
from deeplabv2.protocol import RELEASE_PROTOCOL, PretrainedInfo, pixel_label_stages, stages_that_saw
from deeplabv2.weights import get_weights

from .voc_fixture import write_voc


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return write_voc(tmp_path_factory.mktemp("seen") / "voc")


def tiny(name: str) -> DeepLabV2:
    """A small network carrying the registry entry ``name``'s record (built without
    downloading anything): its lineage is the registry's."""
    torch.manual_seed(0)
    model = DeepLabV2(num_classes=21, blocks=(1, 1, 1, 1)).eval()
    entry = get_weights(name)
    model.class_names = VOC_CLASSES
    model.pretrained_info = PretrainedInfo(
        name=entry.name,
        classes=VOC_CLASSES,
        protocol=RELEASE_PROTOCOL,
        lineage=entry.lineage,
        warning=entry.warning,
    )
    return model


def test_lineage_stages_are_read_by_data_split_and_labels() -> None:
    trainval = get_weights("voc12-trainval").lineage
    assert stages_that_saw(trainval, "VOC 2012", "val") == (
        "VOC 2012 trainaug + val (pixel labels)",
    )
    assert stages_that_saw(trainval, "VOC 2012", "train")  # trainaug holds VOC train
    assert stages_that_saw(get_weights("voc12").lineage, "VOC 2012", "val") == ()
    assert stages_that_saw(trainval, "MS-COCO 2014", "val") == ()  # "MS-COCO" names no split
    # splits that share images, not only one inside the other
    train = ("VOC 2012 train (pixel labels)",)
    assert stages_that_saw(train, "VOC 2012", "trainval") == train
    assert stages_that_saw(train, "VOC 2012", "trainaug") == train
    assert stages_that_saw(get_weights("voc12").lineage, "VOC 2012", "trainval")  # trainaug
    assert stages_that_saw(("VOC 2012 val (pixel labels)",), "VOC 2012", "trainaug") == ()
    assert pixel_label_stages(get_weights("coco-init").lineage) == ("MS-COCO (pixel labels)",)
    assert pixel_label_stages(get_weights("imagenet").lineage) == ()


def test_uda_lineage_saw_all_of_gta5_and_cityscapes_train_but_not_val() -> None:
    lineage = get_weights("gta5-adaptsegnet").lineage
    assert stages_that_saw(lineage, "Cityscapes", "train") == (
        "Cityscapes train (images without labels)",
    )
    assert stages_that_saw(lineage, "Cityscapes", "val") == ()
    for split in ("train", "val", "test", "all"):  # "GTA5 all": every split of GTA5
        assert stages_that_saw(lineage, "GTA5", split) == ("GTA5 all (pixel labels)",)
    assert stages_that_saw(lineage, "SYNTHIA", "train") == ()


def test_trainval_weights_on_voc_val_are_refused(voc: Path) -> None:
    data = VOCSegmentation(voc, "val", limit=1)
    segmenter = Segmenter(tiny("voc12-trainval"), scales=())
    with pytest.raises(SeenDataError, match="voc12-trainval were trained on the images of VOC"):
        evaluate(segmenter, data, progress=False)
    with pytest.warns(UserWarning, match="scored anyway"):
        scores = evaluate(segmenter, data, progress=False, allow_seen_data=True)
    assert scores["num_images"] == 1
    assert scores["seen_data"] == ["VOC 2012 trainaug + val (pixel labels)"]  # on the record
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # trainaug weights on val: nothing to say
        clean = evaluate(Segmenter(tiny("voc12"), scales=()), data, progress=False)
    assert "seen_data" not in clean


def test_eval_cli_refuses_then_allows_seen_data(voc, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(
        "deeplabv2.models.load_model", lambda weights, model, dialect=None: tiny("voc12-trainval")
    )
    command = ["eval", "--data", str(voc), "--limit", "1", "--single-scale", "--quiet"]
    assert main(command) == 1
    assert "--allow-seen-data" in capsys.readouterr().err
    out = tmp_path / "scores.json"
    with pytest.warns(UserWarning, match="scored anyway"):
        assert main([*command, "--allow-seen-data", "--out", str(out)]) == 0
    assert out.is_file()


def test_a_saved_warning_travels_with_the_weights(tmp_path: Path, voc_safetensors) -> None:
    from deeplabv2.models import deeplab_v2_resnet101, save_weights

    model = deeplab_v2_resnet101(pretrained=voc_safetensors)
    model.pretrained_info = dataclasses.replace(
        model.pretrained_info, lineage=("A (pixel labels)",), warning="not for X"
    )
    path = save_weights(model, tmp_path / "w.safetensors")
    loaded = deeplab_v2_resnet101(pretrained=path).pretrained_info
    assert (loaded.lineage, loaded.warning) == (("A (pixel labels)",), "not for X")
