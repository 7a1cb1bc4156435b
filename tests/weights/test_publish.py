"""Publishing: a save_pretrained folder, uploaded through create_repo/upload_folder."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from deeplabv2.cli.publish import publish
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
