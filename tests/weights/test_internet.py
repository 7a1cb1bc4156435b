"""Every network call has a connect and a read timeout, fails in one clear line, and leaves
nothing behind: uploads (``upload_folder`` / ``push_to_hub``), ``hf-hub:`` downloads and
release-URL downloads, each against local servers on 127.0.0.1 started by the test (threads that
stop themselves): one that accepts and never answers, one that sends a byte per second, one that
answers 401, and a closed port.

The limit is ``DEEPLABV2_NETWORK_TIMEOUT`` (or ``timeout=``), 1 s here, so that every test ends
within a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import torch

from deeplabv2.errors import WeightsUnavailableError
from deeplabv2.models.hub_mixin import upload_folder
from deeplabv2.weights import Weights, registry, resolve_weights

from .local_server import COMMIT, closed_port_url

VARIABLE = "DEEPLABV2_NETWORK_TIMEOUT"
# The most a test may take: the helper process starts (about 0.5 s), then a second or two of
# limits (huggingface_hub may ask the same server for its agent registry first); with room for
# a busy machine.
FEW_SECONDS = 8.0


@pytest.fixture
def unreachable():
    """The address of a host that does not answer connection attempts (a dropped SYN, as from a
    host that is down or firewalled): a port whose accept queue is full."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    filler, probe = socket.socket(), socket.socket()
    try:
        filler.connect(address)  # fills the queue: nothing accepts it
        probe.settimeout(0.3)
        try:
            probe.connect(address)
        except socket.timeout:
            yield f"http://127.0.0.1:{address[1]}"
        else:
            pytest.skip("this system does not leave a connection to a full queue pending")
    finally:
        for sock in (probe, filler, listener):
            sock.close()


def child_processes() -> set[int]:
    """The running children of this process (Linux; an empty set where /proc cannot say)."""
    pids: set[int] = set()
    try:
        for task in Path(f"/proc/{os.getpid()}/task").iterdir():
            pids.update(int(pid) for pid in (task / "children").read_text().split())
    except OSError:
        pass
    return pids


@pytest.fixture
def one_second(monkeypatch):
    """Every network limit at 1 s; the Hub reachable (not offline); no helper process left."""
    monkeypatch.setenv(VARIABLE, "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = child_processes()
    yield
    assert child_processes() <= before, "a helper process was left running"


def timed(call: Callable[[], object], expected: type[BaseException]) -> tuple[str, float]:
    """Run ``call``, which must raise ``expected``; its message (one line) and the seconds."""
    start = time.perf_counter()
    with pytest.raises(expected) as error:
        call()
    elapsed = time.perf_counter() - start
    message = str(error.value)
    assert "\n" not in message, message
    return message, elapsed


# -- hf-hub: downloads ------------------------------------------------------------------------


@pytest.fixture
def hub_at(monkeypatch, tmp_path):
    """Point the Hub at a server; returns a function that loads ``hf-hub:owner/repo``."""
    import huggingface_hub.constants

    def load(url: str) -> Callable[[], object]:
        # what HF_ENDPOINT=url sets when huggingface_hub is imported
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", url)
        template = f"{url}/{{repo_id}}/resolve/{{revision}}/{{filename}}"
        monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        return lambda: resolve_weights("hf-hub:owner/repo", cache_dir=tmp_path / "cache")

    return load


def no_partial_download(cache: Path) -> None:
    leftovers = [p for p in cache.rglob("*") if p.is_file() and "incomplete" in p.name]
    assert leftovers == [], leftovers
    blobs = [p for p in cache.rglob("blobs/*") if p.is_file()]
    assert blobs == [], f"a partial file was kept: {blobs}"


def test_hub_download_from_a_server_that_answers_in_time(one_second, serve, hub_at, monkeypatch):
    monkeypatch.setenv(VARIABLE, "5")  # nothing is slow here: no need to be strict
    content = b"weights" * 10_000
    server = serve("ok", content)
    path = hub_at(server.url)()[0]
    assert path.read_bytes() == content
    assert path.parent.name == COMMIT and path.name == "model.safetensors"


@pytest.mark.parametrize("mode", ["silent", "drip"])
def test_hub_download_from_a_server_that_never_answers_ends_after_the_timeout(
    one_second, serve, hub_at, tmp_path, mode
):
    server = serve(mode)
    message, elapsed = timed(hub_at(server.url), WeightsUnavailableError)
    assert elapsed < FEW_SECONDS, f"took {elapsed:.1f} s"
    assert server.requests, "the server was asked"
    assert server.host in message and "1 s" in message and VARIABLE in message, message
    assert "owner/repo" in message and "pass its path instead" in message
    no_partial_download(tmp_path / "cache")


def test_hub_download_whose_body_drips_stops_and_keeps_no_partial_file(
    one_second, serve, hub_at, tmp_path
):
    server = serve("body-drip")
    message, elapsed = timed(hub_at(server.url), WeightsUnavailableError)
    assert elapsed < FEW_SECONDS, f"took {elapsed:.1f} s"
    assert any(line.startswith("GET ") for line in server.requests), server.requests
    assert server.host in message and VARIABLE in message, message
    assert "less than" in message  # the stall rule, not a read timeout
    no_partial_download(tmp_path / "cache")


def test_hub_download_answered_401_says_to_log_in(one_second, serve, hub_at, tmp_path):
    server = serve("401")
    message, elapsed = timed(hub_at(server.url), WeightsUnavailableError)
    assert elapsed < FEW_SECONDS
    assert server.host in message and "HTTP 401" in message, message
    assert "hf auth login" in message and "HF_TOKEN" in message, message


def test_hub_download_from_a_closed_port_names_the_host(one_second, hub_at, tmp_path):
    url = closed_port_url()
    message, elapsed = timed(hub_at(url), WeightsUnavailableError)
    assert elapsed < FEW_SECONDS
    assert url.removeprefix("http://") in message and "refused" in message.lower(), message


def test_hub_download_from_an_unreachable_host_ends_after_the_timeout(
    one_second, unreachable, hub_at
):
    message, elapsed = timed(hub_at(unreachable), WeightsUnavailableError)
    assert elapsed < FEW_SECONDS, f"took {elapsed:.1f} s"
    host = unreachable.removeprefix("http://")
    assert f"could not connect to {host} within 1 s; set {VARIABLE}" in message, message


# -- release-URL downloads --------------------------------------------------------------------


@pytest.fixture
def release_at(monkeypatch, tmp_path):
    """A registry entry whose release file is on a server; returns a function that loads it and
    the torch.hub checkpoint folder."""
    home = tmp_path / "torch-home"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(home / "hub"))

    def load(url: str) -> Callable[[], object]:
        entry = Weights(
            architecture="deeplab_v2_resnet101",
            tag="test-network",
            num_classes=21,
            categories=(),
            description="test entry",
            url=f"{url}/release/prototxt_and_model.zip",
            url_member="train_iter_20000.caffemodel",
        )
        monkeypatch.setitem(registry._REGISTRY, entry.name, entry)
        return lambda: resolve_weights(entry.name, progress=False)

    load.checkpoints = home / "hub" / "checkpoints"
    return load


def nothing_in(folder: Path) -> None:
    assert not folder.exists() or list(folder.iterdir()) == [], list(folder.iterdir())


def test_release_download_from_a_server_that_answers_in_time(
    one_second, serve, release_at, monkeypatch
):
    import io
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("prototxt_and_model/train_iter_20000.caffemodel", b"caffe" * 1000)
    server = serve("ok", archive.getvalue())
    monkeypatch.setenv(VARIABLE, "5")
    path = release_at(server.url)()[0]
    assert path.read_bytes() == b"caffe" * 1000
    assert path.parent == release_at.checkpoints


@pytest.mark.parametrize("mode", ["silent", "drip", "body-drip"])
def test_release_download_from_a_stalled_server_ends_and_keeps_no_partial_file(
    one_second, serve, release_at, mode
):
    server = serve(mode)
    message, elapsed = timed(release_at(server.url), WeightsUnavailableError)
    assert elapsed < FEW_SECONDS, f"took {elapsed:.1f} s"
    assert server.requests, "the server was asked"
    assert server.host in message and "1 s" in message and VARIABLE in message, message
    assert "prototxt_and_model.zip" in message and "pass its path instead" in message
    nothing_in(release_at.checkpoints)


def test_release_download_answered_401_says_so(one_second, serve, release_at):
    server = serve("401")
    message, _ = timed(release_at(server.url), WeightsUnavailableError)
    assert f"{server.host} answered HTTP 401" in message, message
    nothing_in(release_at.checkpoints)


def test_release_download_from_a_closed_port_names_the_host(one_second, release_at):
    url = closed_port_url()
    message, elapsed = timed(release_at(url), WeightsUnavailableError)
    assert elapsed < FEW_SECONDS
    assert f"cannot connect to {url.removeprefix('http://')}" in message, message
    nothing_in(release_at.checkpoints)


def test_release_download_from_an_unreachable_host_ends_after_the_timeout(
    one_second, unreachable, release_at
):
    message, elapsed = timed(release_at(unreachable), WeightsUnavailableError)
    assert elapsed < FEW_SECONDS, f"took {elapsed:.1f} s"
    host = unreachable.removeprefix("http://")
    assert f"could not connect to {host} within 1 s; set {VARIABLE}" in message, message
    nothing_in(release_at.checkpoints)


# -- uploads ----------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path) -> Path:
    """A small model folder (the three files ``upload_folder`` sends)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 4096)
    (folder / "config.json").write_text("{}")
    (folder / "README.md").write_text("# test\n")
    return folder


def upload_to(url: str, folder: Path, **options) -> Callable[[], object]:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=url, token="hf_test_token")
    return lambda: upload_folder(folder, "me/roads", api=api, **options)


def test_upload_to_a_server_that_answers_in_time_returns_the_commit(
    one_second, serve, folder, monkeypatch
):
    monkeypatch.setenv(VARIABLE, "5")
    server = serve("ok")
    assert upload_to(server.url, folder)() == "c" * 40
    posts = [line.split(" ")[1] for line in server.requests if line.startswith("POST")]
    assert posts[0] == "/api/repos/create" and posts[-1] == "/api/models/me/roads/commit/main"
    assert "/api/models/me/roads/preupload/main" in posts


@pytest.mark.parametrize("mode", ["silent", "drip"])
def test_upload_to_a_server_that_never_answers_times_out(one_second, serve, folder, mode):
    server = serve(mode)
    message, elapsed = timed(upload_to(server.url, folder), TimeoutError)
    assert elapsed < FEW_SECONDS, f"took {elapsed:.1f} s"
    assert any(line.startswith("POST /api/repos/create") for line in server.requests)
    assert "me/roads" in message and server.host in message, message
    assert "1 s" in message and VARIABLE in message and "timeout=" in message, message


def test_upload_answered_401_says_how_to_log_in(one_second, serve, folder):
    server = serve("401")
    message, _ = timed(upload_to(server.url, folder), PermissionError)
    assert "no token or no write access; run `hf auth login` or pass a token" in message
    assert "me/roads" in message and server.host in message, message


def test_upload_to_a_closed_port_is_a_connection_error(one_second, folder):
    url = closed_port_url()
    message, elapsed = timed(upload_to(url, folder), ConnectionError)
    assert elapsed < FEW_SECONDS
    assert f"cannot connect to {url.removeprefix('http://')}" in message, message


def test_upload_to_an_unreachable_host_ends_after_the_timeout(one_second, unreachable, folder):
    message, elapsed = timed(upload_to(unreachable, folder), TimeoutError)
    assert elapsed < FEW_SECONDS, f"took {elapsed:.1f} s"
    host = unreachable.removeprefix("http://")
    assert f"could not connect to {host} within 1 s; set {VARIABLE}" in message, message


def test_upload_timeout_option_overrides_the_variable(serve, folder, monkeypatch):
    monkeypatch.setenv(VARIABLE, "30")
    server = serve("silent")
    message, elapsed = timed(upload_to(server.url, folder, timeout=1), TimeoutError)
    assert elapsed < FEW_SECONDS, f"took {elapsed:.1f} s"
    assert "1 s" in message and "timeout=" in message, message


@pytest.fixture(scope="module")
def small_model():
    from deeplabv2.models import deeplab_largefov_vgg16

    return deeplab_largefov_vgg16(num_classes=2).eval()


@pytest.mark.parametrize("mode", ["silent", "401", "closed"])
def test_push_to_hub_removes_its_temporary_folder_when_the_upload_fails(
    one_second, serve, small_model, private_tmp, mode
):
    from huggingface_hub import HfApi

    url = closed_port_url() if mode == "closed" else serve(mode).url
    api = HfApi(endpoint=url, token="hf_test_token")
    expected = {"silent": TimeoutError, "401": PermissionError, "closed": ConnectionError}
    timed(lambda: small_model.push_to_hub("me/roads", api=api), expected[mode])
    assert list(private_tmp.iterdir()) == []


# Run in a fresh interpreter: a Ctrl-C test must not depend on what earlier tests left in this
# process (threads, signal state of libraries); it prints what happened as JSON.
CTRL_C_UPLOAD = """
import json, os, signal, sys, tempfile, threading, time
from pathlib import Path
from huggingface_hub import HfApi
from deeplabv2.models import deeplab_largefov_vgg16

tmp = Path(sys.argv[2])
tempfile.tempdir = str(tmp)
model = deeplab_largefov_vgg16(num_classes=2).eval()
api = HfApi(endpoint=sys.argv[1], token="hf_test_token")
timer = threading.Timer(3.0, signal.pthread_kill, args=(threading.get_ident(), signal.SIGINT))
start = time.perf_counter()
timer.start()
try:
    model.push_to_hub("me/roads", api=api)
    outcome = "returned"
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
except Exception as error:
    outcome = f"{type(error).__name__}: {error}"
finally:
    timer.cancel()
children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
print(json.dumps({"outcome": outcome, "seconds": time.perf_counter() - start,
                  "left": sorted(os.listdir(tmp)), "children": children}))
"""


# Slow suite: in earlier full default runs (after ~700 other tests) the Ctrl-C did not end the
# upload even in this fresh interpreter (the server's lifetime did, at ~28 s), while the test
# passed alone and with its file. On 2026-11-29 it passed at the very end of a full default run,
# and the pytest process's SIGINT handler, ignored and blocked signals never changed between
# tests (the child inherits those); the cause is not found.
@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_ctrl_c_during_an_upload_stops_it_and_removes_the_temporary_folder(serve, tmp_path):
    """Ctrl-C while the upload waits for a server that never answers (limit 30 s): the wait
    ends at once, the helper process is gone and so is the temporary folder."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, VARIABLE: "30"}
    result = subprocess.run(
        [sys.executable, "-c", CTRL_C_UPLOAD, serve("silent").url, str(tmp)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["outcome"] == "KeyboardInterrupt", report
    assert report["seconds"] < 3.0 + FEW_SECONDS, report
    assert report["left"] == [] and report["children"] == [], report


# -- the setting --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["soon", "0", "-3", "nan", "inf"])
def test_a_bad_value_of_the_variable_is_a_clear_error(monkeypatch, hub_at, folder, value):
    monkeypatch.setenv(VARIABLE, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    url = closed_port_url()
    for call in (hub_at(url), upload_to(url, folder)):
        with pytest.raises(ValueError, match=f"{VARIABLE}.*seconds") as error:
            call()
        assert repr(value) in str(error.value)


def test_the_default_is_ten_seconds(monkeypatch):
    from deeplabv2.weights import internet

    monkeypatch.delenv(VARIABLE, raising=False)
    assert internet.network_timeout() == 10.0
    monkeypatch.setenv(VARIABLE, "2.5")
    assert internet.network_timeout() == 2.5
    assert internet.network_timeout(7) == 7.0  # an explicit option wins
