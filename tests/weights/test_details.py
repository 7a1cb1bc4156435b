"""What each weights entry has seen: ``deeplabv2 weights --details`` and the port's VOC entry."""

from __future__ import annotations

import json

from deeplabv2.cli.main import main
from deeplabv2.protocol import PORT_PROTOCOL
from deeplabv2.weights import get_weights
from deeplabv2.weights.sources import COCO_PIXELS, IMAGENET, VOC_TRAINAUG


def test_details_print_lineage_protocol_metrics_sources_and_warning(capsys) -> None:
    assert main(["weights", "--details", "voc12-trainval"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == "deeplab_v2_resnet101.voc12-trainval"
    stages = [line.strip()[2:] for line in lines if line.startswith("    - ")]
    assert tuple(stages) == get_weights("voc12-trainval").lineage
    assert "VOC 2012 trainaug + val (pixel labels)" in stages
    assert "train2_iter_20000.caffemodel" in text and '"pad_to": 513' in text
    assert f"warning: {get_weights('voc12-trainval').warning}" in text
    assert main(["weights", "--details", "coco-init", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["lineage"] == [IMAGENET, COCO_PIXELS] and record["protocol"] is None
    assert record["classes"] == "backbone" and record["sources"]["member"] == "init.caffemodel"
    assert main(["weights", "--details", "no-such-weights"]) == 1


def test_the_ports_voc_training_is_its_own_entry(capsys) -> None:
    port = get_weights("voc12-port")
    assert port.url == (
        "https://github.com/kazuto1011/deeplab-pytorch/releases/download/v1.0/"
        "deeplabv2_resnet101_msc-vocaug-20000.pth"
    )
    assert port.protocol == PORT_PROTOCOL and port.lineage == (IMAGENET, COCO_PIXELS, VOC_TRAINAUG)
    assert port.metrics["VOC2012-val"]["mIoU"] == 76.65
    assert port.metrics["VOC2012-val+CRF"]["mIoU"] == 77.93
    # the release's train2 file is another model, and says so
    assert "deeplabv2_resnet101_msc-vocaug-20000.pth" in get_weights("voc12-trainval").description
    assert main(["weights", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    row = rows["deeplab_v2_resnet101.voc12-port"]
    assert row["classes"] == 21 and row["source"] == "deeplabv2_resnet101_msc-vocaug-20000.pth"
    assert "mIoU 76.65" in row["metrics"] and "mIoU 77.93" in row["metrics"]
    assert row["warning"] is None


def test_the_model_card_shows_the_lineage_and_the_warning() -> None:
    from deeplabv2.models.model_card import hub_config, model_card

    entry = get_weights("voc12-trainval")
    config = hub_config(
        entry.architecture,
        entry.num_classes,
        entry.categories,
        entry.protocol.as_dict(),
        "train2_iter_20000.caffemodel",
        lineage=entry.lineage,
        warning=entry.warning,
    )
    card = model_card(config, sha256="0" * 64)
    assert "trained on (oldest first): " + " -> ".join(entry.lineage) in card
    assert f"**warning**: {entry.warning}" in card
    assert "warning" not in model_card({**config, "warning": None}, sha256="0" * 64).lower()
