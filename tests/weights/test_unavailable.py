"""What a WeightsUnavailableError says: offline mode by name, the release file and the member to
extract (a pattern said as such), the conversion and the option that uses its result; never a
cache file for a whole archive (the cache keeps the member, docs/weights.md)."""

from __future__ import annotations

import dataclasses

import pytest

from deeplabv2.errors import WeightsUnavailableError
from deeplabv2.weights import get_weights, registry, resolve_weights
from deeplabv2.weights.release import cache_files

from .conftest import PATTERN


def message_of(name: str, **options) -> str:
    with pytest.raises(WeightsUnavailableError) as error:
        resolve_weights(name, progress=False, **options)
    return str(error.value)


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_mode_is_named_with_the_member_pattern_and_the_conversion(
    release, monkeypatch, variable
):
    server, _ = release(b"never asked for")
    monkeypatch.setenv(variable, "1")
    name = "deeplab_v2_resnet101.test-range"
    message = message_of(name)
    assert f"offline mode is on ({variable}=1)" in message, message
    assert "could not be downloaded" not in message
    assert server.headers == [], "offline: no request"
    assert f"matches the pattern {PATTERN} (its exact name is not recorded here" in message
    assert f"`deeplabv2 convert {PATTERN} {name}.safetensors`" in message, message
    assert f"--weights {name}.safetensors" in message and server.url in message
    archive, member = cache_files(get_weights(name), release.checkpoints)
    assert archive.name not in message, "the whole archive is never what the cache keeps"
    assert f"({member} does not exist)" in message


def test_local_files_only_says_so(release):
    release(b"never asked for")
    message = message_of("deeplab_v2_resnet101.test-range", local_files_only=True)
    assert "local_files_only=True forbids downloads" in message
    assert "offline mode" not in message


def test_a_failed_download_names_the_member_and_the_conversion(serve, monkeypatch, tmp_path):
    """The registry's own ``voc12`` entry, served by a server that refuses: the exact member,
    ``--classes voc`` for its head."""
    monkeypatch.setattr("torch.hub.get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("DEEPLABV2_NETWORK_TIMEOUT", "5")
    server = serve("401")
    url = f"{server.url}/deeplab_aspp_resnet101/prototxt_and_model.zip"
    entry = dataclasses.replace(get_weights("voc12"), tag="test-401", url=url)
    monkeypatch.setitem(registry._REGISTRY, entry.name, entry)
    message = message_of(entry.name)
    assert f"could not be downloaded from {url}" in message and "HTTP 401" in message, message
    assert "extract train_iter_20000.caffemodel from it" in message
    command = f"`deeplabv2 convert train_iter_20000.caffemodel {entry.name}.safetensors "
    assert command + "--classes voc`" in message, message
    assert f"pretrained='{entry.name}.safetensors'" in message


def test_a_whole_release_file_and_a_backbone(release, monkeypatch):
    """An entry whose file is the release file itself (``.pth``), and an initialisation."""
    release(b"never asked for", member=None, name="port-iter-20000.pth")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "deeplab_v2_resnet101.test-range"
    message = message_of(name)
    assert "port-iter-20000.pth; convert it with `deeplabv2 convert port-iter-20000.pth" in message
    backbone = dataclasses.replace(get_weights("coco-init"), tag="test-init")
    monkeypatch.setitem(registry._REGISTRY, backbone.name, backbone)
    message = message_of(backbone.name)
    assert "extract init.caffemodel from it" in message
    assert f"{backbone.name}.safetensors --backbone-only`" in message, message


def test_an_offline_hub_name_says_offline_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = message_of("hf-hub:owner/repo", cache_dir=tmp_path)
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in message, message
    assert "not in the Hugging Face Hub cache" in message
    assert "could not be downloaded" not in message and "--weights PATH" in message
