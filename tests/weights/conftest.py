"""Fixtures of the weights tests: local HTTP servers, and a registry entry served by one."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import pytest
import torch

from deeplabv2.weights import Weights, registry, resolve_weights

from .local_server import LocalServer

#: The member of a release archive a test entry names, as the registry names members.
PATTERN = "train_iter_*.caffemodel"


@pytest.fixture
def serve():
    """``serve(mode)`` starts a :class:`LocalServer`; all are stopped after the test."""
    servers: list[LocalServer] = []

    def start(mode: str, content: bytes = b"") -> LocalServer:
        servers.append(LocalServer(mode, content))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def release(serve, tmp_path, monkeypatch):
    """``release(archive, sha256=None, member=PATTERN, name="prototxt_and_model.zip")``: a
    server with ``archive`` (served as ``/release/<name>``) and a registry entry for its member
    (``member=None``: for the whole file); returns the server and a function that loads the
    entry. ``release.checkpoints`` is torch.hub's cache folder of the test."""
    checkpoints = tmp_path / "torch-home" / "hub" / "checkpoints"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(checkpoints.parent))
    monkeypatch.setenv("DEEPLABV2_NETWORK_TIMEOUT", "5")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def start(
        archive: bytes,
        sha256: Optional[str] = None,
        member: Optional[str] = PATTERN,
        name: str = "prototxt_and_model.zip",
    ) -> tuple[LocalServer, Callable[..., Path]]:
        server = serve("ok", archive)
        entry = Weights(
            architecture="deeplab_v2_resnet101",
            tag="test-range",
            num_classes=21,
            categories=(),
            description="test entry",
            url=f"{server.url}/release/{name}",
            url_member=member,
            sha256=sha256,
            file_size=0.001,  # members up to 64 MB
        )
        monkeypatch.setitem(registry._REGISTRY, entry.name, entry)
        return server, lambda **options: resolve_weights(entry.name, progress=False, **options)[0]

    start.checkpoints = checkpoints
    return start
