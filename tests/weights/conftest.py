"""Fixtures of the weights tests: local HTTP servers."""

from __future__ import annotations

import pytest

from .local_server import LocalServer


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
