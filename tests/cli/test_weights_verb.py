"""``deeplabv2 weights``: the table (a header, under 100 columns), and ``--details`` on a local
weights file (the metadata of a converted ``.safetensors``; a plain note for other files)."""

from __future__ import annotations

import json

from deeplabv2.cli.main import main
from deeplabv2.weights import list_weights


def test_the_table_has_a_header_and_fits_100_columns(capsys):
    assert main(["weights"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["NAME", "CLASSES"]
    assert len(lines) == 1 + len(list_weights())
    assert max(len(line) for line in lines) <= 100
    voc = next(line for line in lines if line.startswith("deeplab_v2_resnet101.voc12 "))
    assert "76.35 / 77.69" in voc and "VOC2012-val" in voc
    # the columns line up: each row's classes start where the header's do
    column = lines[0].index("CLASSES")
    assert all(line[column - 2 : column] == "  " and line[column] != " " for line in lines[1:])
    vgg = next(line for line in lines if line.startswith("deeplab_v2_vgg16.voc12 "))
    assert "*" not in vgg  # the archive member's pattern is in --details, said plainly


def test_details_say_what_an_archive_pattern_is(capsys):
    assert main(["weights", "--details", "deeplab_v2_vgg16.voc12"]) == 0
    text = capsys.readouterr().out
    assert "matching train_iter_*.caffemodel (its exact name is decided at download)" in text


def test_details_of_a_converted_safetensors_file(voc_safetensors, capsys):
    assert main(["weights", "--details", str(voc_safetensors)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == str(voc_safetensors)
    lines = [line.strip() for line in text.splitlines()]
    assert lines[3:5] == ["architecture: deeplab_v2_resnet101", "num_classes: 21"]
    assert "source: train_iter_20000.caffemodel" in lines
    assert any(line.startswith("conversion_version: ") for line in lines)
    assert main(["weights", "--details", str(voc_safetensors), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["metadata"]["architecture"] == "deeplab_v2_resnet101"
    assert record["metadata"]["protocol"]["pad_to"] == 513 and record["tensors"] > 100


def test_details_of_other_files_say_what_can_be_shown(tmp_path, capsys):
    pth = tmp_path / "model.pth"
    pth.write_bytes(b"\0" * 10)
    assert main(["weights", "--details", str(pth)]) == 0
    assert "holds no metadata this library can read without loading it" in capsys.readouterr().out
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\xff" * 16)
    assert main(["weights", "--details", str(broken)]) == 1
    assert "is not a safetensors file" in capsys.readouterr().err
