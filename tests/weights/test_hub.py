"""Loading by name, path and hf-hub spec: caches, offline mode, checksums, torch.hub."""

from __future__ import annotations

import dataclasses
import runpy
import shutil
import socket
import zipfile
from pathlib import Path

import pytest
import torch

from deeplabv2.data.classes import VOC_CLASSES
from deeplabv2.errors import WeightsFormatError, WeightsUnavailableError
from deeplabv2.models import deeplab_v2_resnet101
from deeplabv2.weights import Weights, registry, sha256sum

REVISION = "0123456789abcdef0123456789abcdef01234567"
HUB_NAME = "deeplab_v2_resnet101.test-hub"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test on any attempt to open a connection or resolve a host name."""

    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch-home"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(home / "hub"))
    return home / "hub" / "checkpoints"


def hub_entry(sha256: str | None = None) -> Weights:
    return Weights(
        architecture="deeplab_v2_resnet101",
        tag="test-hub",
        num_classes=21,
        categories=VOC_CLASSES,
        description="test entry",
        hf_repo="deeplabv2-tests/voc",
        hf_filename="model.safetensors",
        hf_revision=REVISION,
        url="https://example.invalid/voc.zip",
        url_member="train_iter_20000.caffemodel",
        sha256=sha256,
    )


def populate_hf_cache(cache: Path, source: Path, repo: str = "deeplabv2-tests/voc") -> Path:
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo_dir / "blobs").mkdir()
    blob = repo_dir / "blobs" / ("e" * 64)
    shutil.copy(source, blob)
    (snapshot / "model.safetensors").symlink_to(blob)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(REVISION)
    return snapshot / "model.safetensors"


def test_offline_with_an_empty_cache_gives_one_clear_error(torch_home, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as error:
        deeplab_v2_resnet101(pretrained="voc12")
    message = str(error.value)
    assert "'deeplab_v2_resnet101.voc12'" in message and "offline mode is on" in message
    assert "deeplab_aspp_resnet101/prototxt_and_model.zip and extract train_iter_20000" in message
    assert "--weights deeplab_v2_resnet101.voc12.safetensors" in message


def test_offline_hub_entry_names_the_repository(tmp_path, monkeypatch, no_network):
    monkeypatch.setitem(registry._REGISTRY, HUB_NAME, hub_entry())
    with pytest.raises(WeightsUnavailableError, match="deeplabv2-tests/voc at revision 0123"):
        deeplab_v2_resnet101(pretrained="test-hub", cache_dir=tmp_path, local_files_only=True)


def test_prepopulated_hub_cache_loads_without_network(
    tmp_path, monkeypatch, no_network, voc_safetensors
):
    monkeypatch.setitem(registry._REGISTRY, HUB_NAME, hub_entry(sha256sum(voc_safetensors)))
    populate_hf_cache(tmp_path, voc_safetensors)
    model = deeplab_v2_resnet101(pretrained="test-hub", cache_dir=tmp_path)
    reference = deeplab_v2_resnet101(pretrained=voc_safetensors)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert model.class_names == VOC_CLASSES
    assert model.pretrained_info.name == HUB_NAME
    # An unpinned hf-hub: spec asks the Hub for the newest revision unless told to stay offline.
    spec = deeplab_v2_resnet101(
        pretrained="hf-hub:deeplabv2-tests/voc", cache_dir=tmp_path, local_files_only=True
    )
    assert torch.equal(spec.aspp.convs[0].bias, reference.aspp.convs[0].bias)


def test_checksum_mismatch_is_refused_and_uncached(tmp_path, monkeypatch, voc_safetensors):
    monkeypatch.setitem(registry._REGISTRY, HUB_NAME, hub_entry("0" * 64))
    cached = populate_hf_cache(tmp_path, voc_safetensors)
    with pytest.raises(WeightsFormatError, match="SHA-256 .* does not match"):
        deeplab_v2_resnet101(pretrained="test-hub", cache_dir=tmp_path, local_files_only=True)
    assert not cached.exists() and not cached.is_symlink()
    assert list((cached.parents[2] / "blobs").iterdir()) == []


def test_corrupt_cache_entry_is_not_trusted(tmp_path, monkeypatch, voc_safetensors):
    monkeypatch.setitem(registry._REGISTRY, HUB_NAME, hub_entry())
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(voc_safetensors.read_bytes()[:100_000])
    cached = populate_hf_cache(tmp_path / "cache", truncated)
    with pytest.raises(WeightsFormatError, match="corrupt or truncated.*cached copy was removed"):
        deeplab_v2_resnet101(pretrained="test-hub", cache_dir=tmp_path / "cache")
    assert not cached.exists()
    assert truncated.exists(), "a user's own file is never deleted"
    with pytest.raises(ValueError, match="corrupt or truncated"):
        deeplab_v2_resnet101(pretrained=truncated)
    assert truncated.exists()


def test_release_zip_in_the_torch_hub_cache(
    torch_home, monkeypatch, no_network, release_caffemodel
):
    torch_home.mkdir(parents=True)
    # cached under the release's folder name: both releases' archives are prototxt_and_model.zip
    zip_path = torch_home / "deeplab_aspp_resnet101-prototxt_and_model.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("prototxt_and_model/test.prototxt", "name: 'test'")
        archive.write(release_caffemodel, "prototxt_and_model/train_iter_20000.caffemodel")
        archive.write(release_caffemodel, "prototxt_and_model/train2_iter_20000.caffemodel")
    model = deeplab_v2_resnet101(pretrained=True, local_files_only=True)
    assert model.class_names[15] == "person"
    assert model.pretrained_info.name == "deeplab_v2_resnet101.voc12"
    extracted = torch_home / "deeplab_v2_resnet101.voc12.caffemodel"
    assert extracted.stat().st_size == release_caffemodel.stat().st_size
    reference = deeplab_v2_resnet101(pretrained=release_caffemodel)
    assert torch.equal(model.backbone.conv1.weight, reference.backbone.conv1.weight)


def test_num_classes_other_than_the_weights_keeps_the_backbone(voc_safetensors):
    with pytest.warns(UserWarning, match="21 classes but num_classes=5"):
        model = deeplab_v2_resnet101(pretrained=voc_safetensors, num_classes=5)
    reference = deeplab_v2_resnet101(pretrained=voc_safetensors)
    assert model.aspp.convs[0].weight.shape[0] == 5
    assert torch.equal(
        model.backbone.layer4[2].conv3.weight, reference.backbone.layer4[2].conv3.weight
    )
    assert model.class_names == ()


def test_bad_names_and_paths():
    unknown = "unknown weights .voc2012. for deeplab_v2_resnet101; available: deeplab_v2_resnet101"
    with pytest.raises(ValueError, match=unknown):
        deeplab_v2_resnet101(pretrained="voc2012")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        deeplab_v2_resnet101(pretrained="/nonexistent/model.safetensors")
    with pytest.raises(ValueError, match="hf-hub:<owner>/<repo>"):
        deeplab_v2_resnet101(pretrained="hf-hub:justaname")
    with pytest.raises(TypeError, match="pretrained must be"):
        deeplab_v2_resnet101(pretrained=3)


def test_torch_hub_load_local(voc_safetensors):
    model = torch.hub.load(str(ROOT), "deeplab_v2_resnet101", source="local", pretrained=None)
    assert model.num_classes == 21
    loaded = torch.hub.load(
        str(ROOT), "deeplab_v2_resnet101", source="local", pretrained=str(voc_safetensors)
    )
    assert not loaded.training
    vgg = torch.hub.load(str(ROOT), "deeplab_largefov_vgg16", source="local", num_classes=3)
    assert vgg.architecture == "deeplab_largefov_vgg16" and vgg.num_classes == 3
    entry_points = runpy.run_path(str(ROOT / "hubconf.py"))
    assert {"deeplab_v2_resnet101", "deeplab_v2_vgg16", "deeplab_largefov_vgg16"} <= set(
        entry_points
    )
    hubconf = (ROOT / "hubconf.py").read_text()
    assert 'dependencies = ["torch"' in hubconf


@pytest.fixture
def silent_server():
    """A local TCP server that accepts connections and never answers (a dead network path)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_unreachable_hub_fails_fast_with_one_message(tmp_path, monkeypatch, silent_server, capfd):
    import time

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", silent_server)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("DEEPLABV2_NETWORK_TIMEOUT", "1")
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="owner/repo.*pass its path instead") as error:
        deeplab_v2_resnet101(pretrained="hf-hub:owner/repo", cache_dir=tmp_path)
    elapsed = time.perf_counter() - start
    assert elapsed < 6.0, f"took {elapsed:.1f} s"
    assert "within 1 s; set DEEPLABV2_NETWORK_TIMEOUT" in str(error.value)
    assert "Retry" not in capfd.readouterr().err  # no retry storm on stderr


def test_unreachable_release_url_fails_fast(torch_home, monkeypatch, silent_server):
    import time

    url = f"{silent_server}/prototxt_and_model.zip"
    entry = dataclasses.replace(hub_entry(), tag="test-url", hf_revision=None, url=url)
    monkeypatch.setitem(registry._REGISTRY, entry.name, entry)
    monkeypatch.setenv("DEEPLABV2_NETWORK_TIMEOUT", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="prototxt_and_model.zip"):
        deeplab_v2_resnet101(pretrained="test-url")
    assert time.perf_counter() - start < 4.0
    assert not torch_home.exists() or list(torch_home.iterdir()) == []  # no partial download


def test_a_planted_link_never_deletes_its_target(tmp_path, monkeypatch, voc_safetensors):
    """A cache entry that is a link to a file outside the cache (anyone who can write into a
    shared cache can plant one) and fails to load: the link goes, the file it points to stays."""
    monkeypatch.setitem(registry._REGISTRY, HUB_NAME, hub_entry())
    cached = populate_hf_cache(tmp_path / "cache", voc_safetensors)
    victim = tmp_path / "home" / "thesis.safetensors"
    victim.parent.mkdir()
    victim.write_bytes(b"not weights, but precious")
    cached.unlink()
    cached.symlink_to(victim)
    with pytest.raises(WeightsFormatError, match="cached copy was removed"):
        deeplab_v2_resnet101(pretrained="test-hub", cache_dir=tmp_path / "cache")
    assert victim.read_bytes() == b"not weights, but precious"
    assert not cached.is_symlink()
    # the same through a link to another repository's blob: only this repository's own blobs go
    other = populate_hf_cache(tmp_path / "cache", victim, repo="someone/else")
    cached.symlink_to(other.resolve())
    with pytest.raises(WeightsFormatError):
        deeplab_v2_resnet101(pretrained="test-hub", cache_dir=tmp_path / "cache")
    assert other.resolve().exists()


def zip_entry(tag: str, file_size: float) -> Weights:
    return dataclasses.replace(
        hub_entry(),
        tag=tag,
        hf_revision=None,
        url="http://example.invalid/release/prototxt_and_model.zip",
        url_member="train_iter_20000.caffemodel",
        file_size=file_size,
    )


def test_an_archive_member_larger_than_the_weights_can_be_is_refused(torch_home, monkeypatch):
    """A small zip that would extract to far more than the weights can take (a zip bomb in the
    download cache) is refused before anything is extracted, and removed from the cache."""
    import zipfile

    entry = zip_entry("test-bomb", file_size=1.0)  # at most 64 MB extracted
    monkeypatch.setitem(registry._REGISTRY, entry.name, entry)
    torch_home.mkdir(parents=True)
    archive = torch_home / "release-prototxt_and_model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        with zipped.open("model/train_iter_20000.caffemodel", "w") as member:
            zero = bytes(1 << 20)
            for _ in range(80):  # 80 MB of zeros: about 80 kB compressed
                member.write(zero)
    assert archive.stat().st_size < 1_000_000
    with pytest.raises(WeightsFormatError, match="declares 83,886,080 bytes, more than"):
        deeplab_v2_resnet101(pretrained="test-bomb")
    assert list(torch_home.iterdir()) == [], "the archive is removed, nothing was extracted"


def test_a_registry_entry_is_a_pretrained_value(tmp_path, monkeypatch, no_network, voc_safetensors):
    """torchvision's style: ``pretrained=<Weights>``. The entry object itself is used (here it
    is not even registered); ``load_model`` builds its network."""
    from deeplabv2.models import deeplab_v2_vgg16, load_model
    from deeplabv2.weights import get_weights

    entry = hub_entry(sha256sum(voc_safetensors))
    populate_hf_cache(tmp_path, voc_safetensors)
    model = deeplab_v2_resnet101(pretrained=entry, cache_dir=tmp_path, local_files_only=True)
    reference = deeplab_v2_resnet101(pretrained=voc_safetensors)
    assert torch.equal(model.aspp.convs[3].weight, reference.aspp.convs[3].weight)
    assert model.pretrained_info.name == HUB_NAME and model.class_names == VOC_CLASSES
    found = load_model(entry, cache_dir=tmp_path, local_files_only=True)
    assert found.architecture == "deeplab_v2_resnet101"
    assert torch.equal(found.aspp.convs[0].bias, reference.aspp.convs[0].bias)
    # another network's entry is refused before anything is read, naming both networks
    both = "deeplab_v2_resnet101.voc12 are for deeplab_v2_resnet101, not deeplab_v2_vgg16"
    with pytest.raises(ValueError, match=both):
        deeplab_v2_vgg16(pretrained=get_weights("voc12"))
    with pytest.raises(ValueError, match=f"{HUB_NAME} are for deeplab_v2_resnet101, not deeplab_l"):
        load_model(entry, model="deeplab_largefov_vgg16")
    vgg_entry = get_weights("voc12", "deeplab_largefov_vgg16")
    with pytest.raises(ValueError, match="not deeplab_v2_resnet101: build deeplab_largefov_vgg16"):
        deeplab_v2_resnet101(pretrained=vgg_entry)


def test_hf_download_hands_revision_token_and_force_download_to_the_helper(
    tmp_path, monkeypatch, voc_safetensors
):
    """The Hub download runs in the time-limited helper process: the options reach it as
    ``hf_hub_download``'s parameters of the same names."""
    import inspect

    import huggingface_hub

    from deeplabv2.weights import hf_download, internet

    sent = []

    def fake_run(operation, params, **limits):
        sent.append((operation, dict(params)))
        raise internet.NetworkFailure("connect", host="huggingface.co", stage="metadata")

    monkeypatch.setattr(internet, "run", fake_run)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cached = populate_hf_cache(tmp_path, voc_safetensors)
    # without force_download a failed request falls back to the cached copy of the branch
    path = hf_download(
        "deeplabv2-tests/voc", "model.safetensors", "main", tmp_path, False, token="hf_secret"
    )
    assert Path(path) == cached
    # with it, never: the copy asked for is a fresh one
    with pytest.raises(WeightsUnavailableError, match="deeplabv2-tests/voc at revision main"):
        hf_download(
            "deeplabv2-tests/voc",
            "model.safetensors",
            "main",
            tmp_path,
            False,
            token=False,
            force_download=True,
        )
    assert [operation for operation, _ in sent] == ["hf_download", "hf_download"]
    assert [(p["revision"], p["token"], p["force_download"]) for _, p in sent] == [
        ("main", "hf_secret", False),
        ("main", False, True),
    ]
    accepted = inspect.signature(huggingface_hub.hf_hub_download).parameters
    assert set(sent[0][1]) - {"progress"} <= set(accepted)  # "progress" is the helper's own
    # offline, force_download cannot be honoured: refused before anything happens
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="force_download=True needs the network"):
        hf_download(
            "deeplabv2-tests/voc", "model.safetensors", None, tmp_path, False, force_download=True
        )
    assert len(sent) == 2


def test_the_helper_passes_the_token_to_both_requests(monkeypatch):
    """In the helper process, the token goes to the metadata request and to the download."""
    import huggingface_hub

    from deeplabv2.weights import internet

    calls = {}

    def metadata(url, **options):
        calls["metadata"] = (url, options)

    def download(*args, **options):
        calls["download"] = (args, options)
        return "/cache/f"

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", metadata)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    params = {
        "repo_id": "me/roads",
        "filename": "config.json",
        "revision": "v1",
        "token": "hf_secret",
        "force_download": True,
        "endpoint": "https://hub.example",
    }
    assert internet._hf_download(params, [""], 7.0) == "/cache/f"
    url, metadata = calls["metadata"]
    assert "me/roads" in url and "v1" in url and metadata == {"token": "hf_secret", "timeout": 7.0}
    args, download = calls["download"]
    assert args == ("me/roads", "config.json")
    assert download["token"] == "hf_secret" and download["force_download"] is True
    assert download["revision"] == "v1" and download["etag_timeout"] == 7.0
