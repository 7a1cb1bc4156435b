"""docs/weights.md's tables, written by hand, against the registry they describe: the model zoo
(names, defaults, classes, data, files, reported numbers, licences), the lineage table and the
licence table. Every failure names the table row."""

from __future__ import annotations

import re

import pytest

import deeplabv2.models  # noqa: F401 - importing the families registers their weights
from deeplabv2.data.classes import CITYSCAPES_CLASSES, COCOSTUFF_CLASSES, VOC_CLASSES
from deeplabv2.weights import Weights, get_weights, list_weights
from deeplabv2.weights.registry import DEFAULT_WEIGHTS

from .conftest import REPO

PAGE = REPO / "docs" / "weights.md"
#: The zoo's licence column -> how the registry's licence text starts.
LICENCES = {
    "release": "as released by the DeepLab authors",
    "MIT (port)": "MIT (the kazuto1011/deeplab-pytorch repository's licence)",
    "MIT (MSRA)": "MIT (KaimingHe/deep-residual-networks)",
    "BSD-3-Clause (torchvision)": "BSD-3-Clause (torchvision)",
    "non-commercial (AdaptSegNet)": "non-commercial research purposes only (wasidennis/",
    "Apache-2.0 (ADVENT)": "Apache-2.0 (valeoai/ADVENT",
}
CLASSES = {
    "21 (VOC)": VOC_CLASSES,
    "182 (COCO-Stuff)": COCOSTUFF_CLASSES,
    "19 (Cityscapes)": CITYSCAPES_CLASSES,
    "backbone": (),
}


def table(header: str) -> list[tuple[int, list[str]]]:
    """``(line number, cells)`` of each row of the table whose header row is ``header``."""
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    start = lines.index(header)  # a ValueError if the table is gone
    rows = []
    for number, line in enumerate(lines[start + 2 :], start + 3):
        if not line.startswith("|"):
            break
        rows.append((number, [cell.strip() for cell in line.strip().strip("|").split(" | ")]))
    return rows


def names_in(cell: str) -> list[Weights]:
    """The entries a cell names in backticks (a bare tag is the ResNet-101's)."""
    return [get_weights(name) for name in re.findall(r"`([^`]+)`", cell)]


def decimals(text: str) -> set[float]:
    return {float(number) for number in re.findall(r"\d+\.\d+", text)}


ZOO = table("| name | classes | trained on | original file (URL) | reported (source) | licence |")


def test_the_zoo_names_every_entry_once() -> None:
    named = [names_in(cells[0])[0].name for _, cells in ZOO]
    assert sorted(named) == list_weights(), "rows: " + ", ".join(named)


@pytest.mark.parametrize("row", ZOO, ids=lambda row: f"line {row[0]}")
def test_a_zoo_row_matches_its_entry(row) -> None:
    line, (name, classes, trained_on, original, reported, licence) = row
    where = f"docs/weights.md:{line} ({name})"
    entry = names_in(name)[0]
    default = DEFAULT_WEIGHTS.get(entry.architecture) == entry.tag
    assert name.endswith("(default)") == default, f"{where}: '(default)' is {default} here"
    assert classes in CLASSES, f"{where}: classes {classes!r}, expected one of {list(CLASSES)}"
    assert entry.categories == CLASSES[classes], f"{where}: the entry has {entry.num_classes}"
    assert (entry.num_classes is None) == (classes == "backbone"), f"{where}: {classes}"
    last_stage = entry.lineage[-1].rpartition(" (")[0]
    assert last_stage in trained_on.replace("**", ""), f"{where}: trained on {last_stage}?"
    file = entry.url_member or entry.url.rpartition("/")[2]
    assert f"`{file}`" in original or entry.url in original, f"{where}: names no {file}"
    if entry.url_member is not None:  # the archive: its address, or the row above's
        assert entry.url in original or "the same zip as" in original, f"{where}: {entry.url}"
    numbers = {v for m in entry.metrics.values() for v in m.values() if isinstance(v, float)}
    assert decimals(reported) == numbers, f"{where}: reported {reported!r}, registry {numbers}"
    assert reported.startswith("-") == (not entry.metrics), f"{where}: {entry.metrics}"
    assert licence in LICENCES, f"{where}: licence {licence!r}, known: {list(LICENCES)}"
    assert entry.license.startswith(LICENCES[licence]), f"{where}: the entry: {entry.license}"


def test_the_same_zip_names_an_entry_of_that_zip() -> None:
    shared = 0
    for line, cells in ZOO:
        other = re.search(r"the same zip as `([^`]+)`", cells[3])
        if other:
            entry, named = names_in(cells[0])[0], get_weights(other[1])
            assert entry.url == named.url, f"docs/weights.md:{line}: {entry.url}, {named.url}"
            shared += 1
    assert shared >= 3  # voc12-trainval, coco-init, the VGG-16 ImageNet initialisation


@pytest.mark.parametrize(
    ("header", "field"),
    [("| name | lineage |", "lineage"), ("| weights | licence |", "license")],
    ids=["lineage", "licences"],
)
def test_every_entry_has_one_row_with_its_own_text(header: str, field: str) -> None:
    seen: list[str] = []
    for line, (names, text) in table(header):
        for entry in names_in(names):
            recorded = getattr(entry, field)
            expected = " -> ".join(recorded) if field == "lineage" else recorded
            assert text == expected, f"docs/weights.md:{line} ({entry.name}): {expected!r}"
            seen.append(entry.name)
    assert sorted(seen) == list_weights(), f"each entry once: {sorted(seen)}"
