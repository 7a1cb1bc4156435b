"""The sample photo shipped with the package and ``deeplabv2 sample``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from PIL import Image

from deeplabv2.cli import main
from deeplabv2.data import sample_image

SAMPLE_VERB = Path(__file__).resolve().parents[2] / "deeplabv2" / "cli" / "sample.py"


def test_the_sample_photo_is_a_small_rgb_jpeg() -> None:
    path = sample_image()
    assert path.name == "astronaut.jpg" and path.is_file()
    assert path.stat().st_size <= 60_000
    with Image.open(path) as photo:
        assert (photo.format, photo.mode, photo.size) == ("JPEG", "RGB", (320, 320))
    with pytest.raises(ValueError, match="astronaut.jpg"):
        sample_image("lena.png")


def test_sample_writes_the_photo_and_keeps_an_existing_one(tmp_path, capsys) -> None:
    target = tmp_path / "new folder"
    assert main(["sample", str(target)]) == 0
    written = target / "astronaut.jpg"
    assert capsys.readouterr().out.strip() == str(written)
    assert written.read_bytes() == sample_image().read_bytes()
    assert [p.name for p in target.iterdir()] == ["astronaut.jpg"]  # no temporary file left
    written.write_bytes(b"mine")
    assert main(["sample", str(target)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert written.read_bytes() == b"mine"
    assert main(["sample", str(target), "--force"]) == 0
    assert written.read_bytes() == sample_image().read_bytes()


def test_sample_defaults_to_the_current_folder(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["sample"]) == 0
    assert (tmp_path / "astronaut.jpg").is_file()


def test_the_verb_module_imports_no_torch_at_its_top_level() -> None:
    """Its module-level imports are the standard library's and the file helpers (which import
    no torch); the sample's module is imported when the verb runs."""
    tree = ast.parse(SAMPLE_VERB.read_text(encoding="utf-8"))
    modules = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules.append("." * node.level + (node.module or ""))
    assert "..data.samples" not in modules  # the lazy import inside run() is not at the top
    package = [m for m in modules if m.startswith(".")]
    assert package == [".._files", ".vocabulary"], package  # both import no torch
    others = {m.split(".")[0] for m in modules if not m.startswith(".")}
    assert others <= {"__future__", "argparse", "shutil", "pathlib", "os", "sys"}, others
