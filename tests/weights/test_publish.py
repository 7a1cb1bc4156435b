"""Publishing: a save_pretrained folder, uploaded through create_repo/upload_folder."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from deeplabv2.publish import publish
from deeplabv2.weights import sha256sum


class RecordingApi:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def create_repo(self, repo_id, private=None, exist_ok=False):
        self.calls.append(("create_repo", repo_id, exist_ok))

    def upload_folder(self, folder_path, repo_id, commit_message, create_pr, allow_patterns):
        files = sorted(p.name for p in Path(folder_path).iterdir())
        self.calls.append(("upload_folder", repo_id, files, sorted(allow_patterns)))
        return SimpleNamespace(oid="f" * 40)


def test_upload_with_a_given_api(tmp_path, release_caffemodel):
    api = RecordingApi()
    plan = publish("voc12", release_caffemodel, tmp_path, repo_id="me/voc", upload=True, api=api)
    files = ["README.md", "config.json", "model.safetensors"]
    assert api.calls == [("create_repo", "me/voc", True), ("upload_folder", "me/voc", files, files)]
    assert plan["uploaded"] and plan["revision"] == "f" * 40
    assert plan["sha256"] == sha256sum(tmp_path / "model.safetensors")
    card = (tmp_path / "README.md").read_text()
    assert plan["sha256"] in card and "library_name: deeplabv2" in card
    # the folder is a save_pretrained folder: from_pretrained reads it
    from deeplabv2.models import DeepLabV2

    model = DeepLabV2.from_pretrained(tmp_path)
    assert model.num_classes == 21 and model.class_names[15] == "person"


def test_dry_run_touches_no_api_and_never_overwrites(tmp_path, release_caffemodel):
    plan = publish("voc12", release_caffemodel, tmp_path, api=object())
    assert not plan["uploaded"] and plan["repo_id"] == "deeplabv2/deeplab_v2_resnet101.voc12"
    with pytest.raises(FileExistsError):
        publish("voc12", release_caffemodel, tmp_path)


def test_a_failed_conversion_leaves_no_folder(tmp_path):
    src = tmp_path / "broken.caffemodel"
    src.write_bytes(b"\x0a\x05hello not a net")
    out = tmp_path / "new" / "folder"
    with pytest.raises(ValueError):
        publish("voc12", src, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.caffemodel"]


def test_a_missing_source_is_refused_before_the_folder_is_made(tmp_path):
    with pytest.raises(FileNotFoundError, match="no weights file"):
        publish("voc12", tmp_path / "missing.caffemodel", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("repo_id", ["not valid", "a/b/c", "me/--x", "me/x.git"])
def test_a_bad_repo_id_is_refused_before_the_conversion(tmp_path, monkeypatch, repo_id):
    import deeplabv2.publish as verb

    def refuse(*args, **kwargs):
        raise AssertionError("converted before the repository id was checked")

    monkeypatch.setattr(verb, "convert", refuse)
    api = RecordingApi()
    with pytest.raises(ValueError, match="repo_id"):
        publish("voc12", tmp_path / "x.caffemodel", tmp_path / "out", repo_id, True, api=api)
    assert api.calls == [] and list(tmp_path.iterdir()) == []


def test_cli_names_the_out_folder_that_cannot_be_written(tmp_path, monkeypatch, capsys):
    import deeplabv2.publish as verb
    from deeplabv2.cli import main

    def refuse(*args, **kwargs):
        raise AssertionError("converted before --out was checked")

    monkeypatch.setattr(verb, "convert", refuse)
    src = tmp_path / "x.caffemodel"
    src.write_bytes(b"")
    (tmp_path / "file.txt").write_text("mine")
    out = tmp_path / "file.txt" / "out"
    assert main(["publish", "voc12", str(src), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(out) in err and "file.txt is a file" in err and "converted before" not in err
    assert main(["publish", "voc12", str(src), "--out", str(tmp_path / "file.txt")]) == 1
    assert "--out" in capsys.readouterr().err
