"""Publishing: the upload goes through huggingface_hub's create_repo/upload_file."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from deeplabv2.publish import publish
from deeplabv2.weights.hub import sha256sum


class RecordingApi:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def create_repo(self, repo_id, exist_ok=False):
        self.calls.append(("create_repo", repo_id, exist_ok))

    def upload_file(self, path_or_fileobj, path_in_repo, repo_id, commit_message):
        self.calls.append(("upload_file", path_in_repo, repo_id))
        return SimpleNamespace(oid="f" * 40)


def test_upload_with_a_given_api(tmp_path, release_caffemodel):
    api = RecordingApi()
    plan = publish("voc12", release_caffemodel, tmp_path, repo_id="me/voc", upload=True, api=api)
    assert api.calls == [
        ("create_repo", "me/voc", True),
        ("upload_file", "model.safetensors", "me/voc"),
        ("upload_file", "README.md", "me/voc"),
    ]
    assert plan["uploaded"] and plan["revision"] == "f" * 40
    assert plan["sha256"] == sha256sum(tmp_path / "model.safetensors")
    assert plan["sha256"] in (tmp_path / "README.md").read_text()


def test_dry_run_touches_no_api_and_never_overwrites(tmp_path, release_caffemodel):
    plan = publish("voc12", release_caffemodel, tmp_path, api=object())
    assert not plan["uploaded"] and plan["repo_id"] == "deeplabv2/deeplab_v2_resnet101.voc12"
    with pytest.raises(FileExistsError):
        publish("voc12", release_caffemodel, tmp_path)
