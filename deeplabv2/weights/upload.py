"""Uploads to the Hugging Face Hub under the network limits of :mod:`.network` (the transfer
runs in its helper process)."""

from __future__ import annotations

import os
from typing import Any

from . import internet

__all__ = ["upload"]

_AUTH = "no token or no write access; run `hf auth login` or pass a token"


def upload(
    directory: str, repo_id: str, *, api: Any, token: Any, timeout: Any, **options: Any
) -> Any:
    """``HfApi.create_repo`` and ``upload_folder`` in a helper process (``api``: an ``HfApi``
    whose settings are used, or None); the commit sha, or a one-line ``TimeoutError``,
    ``ConnectionError``, ``PermissionError`` (HTTP 401/403) or ``RuntimeError``."""
    from huggingface_hub import constants
    from huggingface_hub.utils import are_progress_bars_disabled

    from ..version import __version__

    seconds = internet.network_timeout(timeout)
    names = ("endpoint", "token", "library_name", "library_version", "user_agent", "headers")
    hub = dict(endpoint=constants.ENDPOINT, library_name="deeplabv2", library_version=__version__)
    hub.update({name: getattr(api, name) for name in names if getattr(api, name, None) is not None})
    hub.update({"token": token} if token is not None else {})
    endpoint = hub["endpoint"] = str(hub["endpoint"]).rstrip("/")
    progress, where = not are_progress_bars_disabled(), f"cannot upload to {repo_id}"
    folder = os.path.abspath(directory)
    params = dict(folder=folder, repo_id=repo_id, api=hub, progress=progress, **options)
    try:
        env = {"HF_ENDPOINT": endpoint}
        return internet.run(
            "upload", params, seconds=seconds, host=internet.host_of(endpoint), env=env
        )
    except internet.NetworkFailure as failure:
        if failure.kind == "http" and failure.status in (401, 403):
            auth = f"{where} on {failure.host} (HTTP {failure.status}): {_AUTH}"
            raise PermissionError(auth) from None
        if failure.timed_out:
            hint = f"set {internet.ENV_VAR} or pass timeout= to wait longer"
            raise TimeoutError(f"{where}: {failure.describe(hint)}") from None
        error = ConnectionError if failure.kind in ("connect", "dropped") else RuntimeError
        raise error(f"{where}: {failure.describe()}") from None
