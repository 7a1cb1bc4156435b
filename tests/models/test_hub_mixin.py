"""save_pretrained / from_pretrained / push_to_hub: round trips via a folder and the HF cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from deeplabv2.errors import OutputExistsError, WeightsMismatchError
from deeplabv2.models import (
    DeepLabV2,
    DeepLabVGG16,
    deeplab_largefov_vgg16,
    deeplab_v2_resnet101,
    load_model,
)
from deeplabv2.protocol import EvalProtocol, PretrainedInfo

CLASSES = ("background", "road", "car")
PROTOCOL = {"msc_mode": "pytorch", "scales": [0.5, 0.75], "pad_to": None, "crf": "vgg16-voc"}


@pytest.fixture(scope="module")
def tuned() -> DeepLabVGG16:
    """A 'fine-tuned' LargeFOV: its own classes and protocol."""
    torch.manual_seed(0)
    model = deeplab_largefov_vgg16(num_classes=3).eval()
    model.class_names = CLASSES
    model.pretrained_info = PretrainedInfo(
        source="my-training-run", classes=CLASSES, protocol=EvalProtocol.from_dict(PROTOCOL)
    )
    return model


def same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.randn(2, 3, 73, 97, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a(x), b(x))


def test_folder_round_trip(tuned, tmp_path: Path) -> None:
    folder = tuned.save_pretrained(
        tmp_path / "m", license="mit", metrics={"Cityscapes val": {"mIoU": 61.2, "source": "me"}}
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "deeplab_largefov_vgg16" and config["num_classes"] == 3
    assert config["class_names"] == list(CLASSES)
    assert config["protocol"] == {**PROTOCOL, "mean_bgr": [104.008, 116.669, 122.675]}
    card = (folder / "README.md").read_text()
    for line in ("library_name: deeplabv2", "license: mit", "- image-segmentation", "value: 61.2"):
        assert line in card
    loaded = DeepLabVGG16.from_pretrained(folder)
    assert loaded.class_names == CLASSES and not loaded.training
    assert loaded.pretrained_info.protocol.as_dict() == config["protocol"]
    assert same_outputs(tuned, loaded)


def test_resnet_round_trip_and_class_check(tmp_path: Path) -> None:
    model = deeplab_v2_resnet101(num_classes=2).eval()
    model.class_names = ("sky", "not sky")
    model.save_pretrained(tmp_path)
    loaded = DeepLabV2.from_pretrained(tmp_path)
    assert loaded.class_names == ("sky", "not sky") and same_outputs(model, loaded)
    with pytest.raises(WeightsMismatchError, match="not a DeepLabVGG16"):
        DeepLabVGG16.from_pretrained(tmp_path)


def hub_cache(folder: Path, cache: Path, repo_id: str) -> Path:
    """Lay ``folder`` out as huggingface_hub's cache does after a download of ``repo_id``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        shutil.copy(file, snapshot / file.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return cache


def test_hub_cache_round_trip_offline(tuned, tmp_path: Path, monkeypatch) -> None:
    cache = hub_cache(tuned.save_pretrained(tmp_path / "m"), tmp_path / "cache", "me/roads")
    loaded = DeepLabVGG16.from_pretrained("me/roads", cache_dir=cache, local_files_only=True)
    assert loaded.class_names == CLASSES and same_outputs(tuned, loaded)
    # HF_HUB_OFFLINE alone also keeps it off the network; hf-hub: names keep working
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = load_model("hf-hub:me/roads", cache_dir=cache)
    assert isinstance(again, DeepLabVGG16) and same_outputs(tuned, again)
    assert DeepLabVGG16.from_pretrained("me/roads", cache_dir=cache).class_names == CLASSES


def test_push_to_hub_uploads_one_folder(tuned) -> None:
    calls = []

    class Api:
        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls.append(("create", repo_id, private, exist_ok))

        def upload_folder(self, folder_path, repo_id, commit_message, create_pr, allow_patterns):
            files = sorted(p.name for p in Path(folder_path).iterdir())
            calls.append(("upload", repo_id, files, commit_message, create_pr))
            config = json.loads((Path(folder_path) / "config.json").read_text())
            assert config["class_names"] == list(CLASSES)
            return SimpleNamespace(oid="a" * 40)

    sha = tuned.push_to_hub("me/roads", private=True, api=Api(), commit_message="v1")
    assert sha == "a" * 40
    files = ["README.md", "config.json", "model.safetensors"]
    assert calls == [("create", "me/roads", True, True), ("upload", "me/roads", files, "v1", False)]


def test_refusals(tuned, tmp_path: Path) -> None:
    folder = tuned.save_pretrained(tmp_path / "m")
    with pytest.raises(OutputExistsError, match="pass --force"):
        tuned.save_pretrained(folder)
    tuned.save_pretrained(folder, force=True)
    custom = DeepLabV2(num_classes=2, blocks=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="made by a builder"):
        custom.save_pretrained(tmp_path / "custom")
    assert not (tmp_path / "custom").exists()
    wrong = {"architecture": "deeplab_largefov_vgg16", "num_classes": 4, "class_names": []}
    (folder / "config.json").write_text(json.dumps(wrong))
    with pytest.raises(WeightsMismatchError, match="says 4 classes"):
        DeepLabVGG16.from_pretrained(folder)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a folder written by save_pretrained"):
        DeepLabVGG16.from_pretrained(folder)
    with pytest.raises(ValueError, match="neither a directory nor a Hub repository id"):
        DeepLabVGG16.from_pretrained(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("error", [RuntimeError("the Hub is down"), KeyboardInterrupt()])
def test_push_to_hub_removes_its_temporary_folder_whatever_happens(tuned, private_tmp, error):
    written = []

    class Api:
        def create_repo(self, repo_id, private=None, exist_ok=False):
            pass

        def upload_folder(self, folder_path, **kwargs):
            written.append(sorted(p.name for p in Path(folder_path).iterdir()))
            raise error

    with pytest.raises(type(error)):
        tuned.push_to_hub("me/roads", api=Api())
    assert written == [["README.md", "config.json", "model.safetensors"]]
    assert list(private_tmp.iterdir()) == []


def test_push_to_hub_takes_a_network_time_limit(tuned, private_tmp, monkeypatch) -> None:
    class Api:  # the caller's own client: used as it is
        def create_repo(self, repo_id, private=None, exist_ok=False):
            pass

        def upload_folder(self, folder_path, repo_id, commit_message, create_pr, allow_patterns):
            return SimpleNamespace(oid="b" * 40)

    assert tuned.push_to_hub("me/roads", api=Api(), timeout=3) == "b" * 40
    # a bad limit is refused before anything is written or sent
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="timeout= must be a number of seconds"):
        tuned.push_to_hub("me/roads", timeout=0)
    monkeypatch.setenv("DEEPLABV2_NETWORK_TIMEOUT", "ten")
    with pytest.raises(ValueError, match="DEEPLABV2_NETWORK_TIMEOUT must be .*got 'ten'"):
        tuned.push_to_hub("me/roads")
    assert list(private_tmp.iterdir()) == []


def test_from_pretrained_passes_the_hub_options_to_the_download(tuned, tmp_path, monkeypatch):
    """``revision``, ``token`` and ``force_download`` reach the download of both files, with
    ``huggingface_hub.hf_hub_download``'s meaning (no network: the download is replaced)."""
    from deeplabv2.models import hub_mixin

    folder = tuned.save_pretrained(tmp_path / "m")
    received = []

    def download(repo_id, filename, revision, cache_dir, local_files_only, **options):
        received.append((repo_id, filename, revision, cache_dir, local_files_only, options))
        return str(folder / filename)

    monkeypatch.setattr(hub_mixin, "hf_download", download)
    loaded = DeepLabVGG16.from_pretrained(
        "me/roads", revision="v1.0", token="hf_secret", force_download=True, cache_dir=tmp_path
    )
    assert loaded.class_names == CLASSES and same_outputs(tuned, loaded)
    options = {"token": "hf_secret", "force_download": True}
    assert received == [
        ("me/roads", "config.json", "v1.0", tmp_path, False, options),
        ("me/roads", "model.safetensors", "v1.0", tmp_path, False, options),
    ]
    received.clear()
    DeepLabVGG16.from_pretrained("me/roads")  # the defaults: the main branch, the stored login
    defaults = {"token": None, "force_download": False}
    assert [r[2:] for r in received] == [(None, None, False, defaults)] * 2


def test_from_pretrained_refuses_a_revision_for_a_local_folder(tuned, tmp_path):
    folder = tuned.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match=r"revision='v1' selects a version of a Hub repository"):
        DeepLabVGG16.from_pretrained(folder, revision="v1")
    # token and force_download concern downloads only: a folder is read as it is
    loaded = DeepLabVGG16.from_pretrained(folder, token="hf_secret", force_download=True)
    assert loaded.class_names == CLASSES
