"""Find, download, cache and verify pretrained weights, then read them into a state dict.

Loading order: an explicit local file > the Hugging Face Hub cache (``HF_HUB_OFFLINE`` and
``local_files_only`` respected; a pinned commit in the cache needs no network) > download. Weights
not yet published on the Hub come from their original release file, cached by torch.hub.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ..errors import WeightsUnavailableError
from .convert import load_weights_file
from .files import atomic_write
from .registry import DEFAULT_WEIGHTS, Weights, get_weights, list_weights

__all__ = ["WeightsUnavailableError", "load_pretrained", "resolve_weights_file", "sha256sum"]

_SUFFIXES = (".safetensors", ".pth", ".pt", ".caffemodel")
# Seconds one network request may take before the weights count as unavailable: one short
# attempt, no retries (HF_HUB_ETAG_TIMEOUT, when set, is used for the Hub instead).
_TIMEOUT = 5.0


def sha256sum(path: Union[str, os.PathLike]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _discard(path: Union[str, os.PathLike]) -> None:
    """Remove a cached file (and the blob a Hub-cache symlink points to) so it is not reused."""
    path = Path(path)
    target = path.resolve()
    for item in {path, target}:
        try:
            item.unlink()
        except FileNotFoundError:
            pass


def _unavailable(what: str, where: str, error: BaseException) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"cannot load {what}: it is not in the local cache and could not be downloaded from "
        f"{where} ({type(error).__name__}: {error}). Download the file on a machine with network "
        "access and pass its path instead: deeplab_v2_resnet101(pretrained='/path/to/file"
        ".safetensors') (.safetensors, .pth and .caffemodel are accepted)."
    )


def _hub_timeout() -> float:
    value = os.environ.get("HF_HUB_ETAG_TIMEOUT", "").strip()
    try:
        return float(value) if value else _TIMEOUT
    except ValueError:
        return _TIMEOUT


def _hf_download(
    repo_id: str,
    filename: str,
    revision: Optional[str],
    cache_dir: Optional[Union[str, os.PathLike]],
    local_files_only: bool,
) -> str:
    """A file of a Hub repository in the Hub cache, fetched if needed.

    Offline (``local_files_only`` or ``HF_HUB_OFFLINE``) only the cache is read. Otherwise one
    short request (no retries) asks the Hub first, so that a machine without network fails in
    seconds; if it fails, a copy already in the cache is used, else WeightsUnavailableError.
    """
    from huggingface_hub import (
        get_hf_file_metadata,
        hf_hub_download,
        hf_hub_url,
        try_to_load_from_cache,
    )

    from .. import __version__

    what = f"{filename} of the Hugging Face Hub repository {repo_id}" + (
        f" at revision {revision}" if revision else ""
    )
    offline = local_files_only or _offline()
    if not offline:
        cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
        if isinstance(cached, str) and revision is not None and len(revision) == 40:
            return cached  # a pinned commit never changes: no request needed
        try:
            get_hf_file_metadata(
                hf_hub_url(repo_id, filename, revision=revision), timeout=_hub_timeout()
            )
        except Exception as error:  # noqa: BLE001 - network, HTTP and auth errors alike
            if isinstance(cached, str):
                return cached
            raise _unavailable(what, f"https://huggingface.co/{repo_id}", error) from None
    try:
        return hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=offline,
            library_name="deeplabv2",
            library_version=__version__,
        )
    except Exception as error:  # huggingface_hub raises many types for the same situation
        raise _unavailable(what, f"https://huggingface.co/{repo_id}", error) from None


def _download(url: str, target: Path, progress: bool) -> None:
    """``url`` -> ``target`` (atomic; one attempt, :data:`_TIMEOUT` seconds per request)."""
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=_TIMEOUT) as response:  # noqa: S310 - http(s) only
        size = int(response.headers.get("Content-Length") or 0) or None

        def write(tmp: str) -> None:
            with (
                open(tmp, "wb") as sink,
                tqdm(
                    total=size, unit="B", unit_scale=True, desc=target.name, disable=not progress
                ) as bar,
            ):
                while chunk := response.read(1 << 20):
                    sink.write(chunk)
                    bar.update(len(chunk))

        atomic_write(target, write, force=True)


def _url_download(weights: Weights, local_files_only: bool, progress: bool) -> Path:
    """The original release file of ``weights`` in torch.hub's cache (downloaded if needed)."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    archive = checkpoints / weights.url.rsplit("/", 1)[-1]
    target = archive if weights.url_member is None else checkpoints / weights.url_member
    if target.is_file():
        return target
    if not archive.is_file():
        if local_files_only or _offline():
            raise _unavailable(
                f"the {weights.name!r} weights",
                weights.url,
                FileNotFoundError(f"{archive} (offline mode)"),
            )
        try:
            _download(weights.url, archive, progress)
        except OSError as error:  # urllib raises URLError, HTTPError, timeouts...
            raise _unavailable(f"the {weights.name!r} weights", weights.url, error) from None
    if weights.url_member is not None:
        try:
            with zipfile.ZipFile(archive) as zipped:
                member = next(
                    n for n in zipped.namelist() if n.rsplit("/", 1)[-1] == weights.url_member
                )

                def extract(tmp: str) -> None:
                    with zipped.open(member) as source, open(tmp, "wb") as sink:
                        shutil.copyfileobj(source, sink, 1 << 20)

                atomic_write(target, extract, force=True)
        except (zipfile.BadZipFile, StopIteration, OSError) as error:
            _discard(archive)
            raise ValueError(
                f"{archive} is not a valid release archive holding {weights.url_member} "
                f"({type(error).__name__}: {error}); it was removed from the cache, try again"
            ) from None
    return target


def resolve_weights_file(
    pretrained: Union[bool, str, os.PathLike],
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    local_files_only: bool = False,
    progress: bool = True,
) -> tuple[Path, Optional[Weights]]:
    """Where the weights named by ``pretrained`` are on disk (fetching them if needed).

    Args:
        pretrained: True (= ``"voc12"``), a registry name, a local file path, or
            ``"hf-hub:<owner>/<repo>[/<filename>]"`` (filename defaults to
            ``model.safetensors``).
        cache_dir: Hugging Face Hub cache directory (default: the Hub's own).
        local_files_only: never use the network.
        progress: show a progress bar while downloading from a URL.

    Returns:
        The file and its registry entry (None for local files and ``hf-hub:`` names).
    """
    if pretrained is True:
        pretrained = DEFAULT_WEIGHTS
    if isinstance(pretrained, os.PathLike):
        pretrained = os.fspath(pretrained)
    if not isinstance(pretrained, str):
        raise TypeError(
            f"pretrained must be None, True, a weights name, a path or 'hf-hub:...', got "
            f"{type(pretrained).__name__}"
        )
    if pretrained.startswith("hf-hub:"):
        parts = pretrained[len("hf-hub:") :].strip("/").split("/")
        if len(parts) < 2 or not all(parts[:2]):
            raise ValueError(f"expected 'hf-hub:<owner>/<repo>[/<filename>]', got {pretrained!r}")
        filename = "/".join(parts[2:]) or "model.safetensors"
        repo_id = "/".join(parts[:2])
        path = _hf_download(repo_id, filename, None, cache_dir, local_files_only)
        return Path(path), None
    if pretrained in list_weights() or pretrained == "DEFAULT":
        weights = get_weights(pretrained)
        if weights.hf_revision is not None:
            path = Path(
                _hf_download(
                    weights.hf_repo,
                    weights.hf_filename,
                    weights.hf_revision,
                    cache_dir,
                    local_files_only,
                )
            )
        else:
            path = _url_download(weights, local_files_only, progress)
        return path, weights
    if os.path.exists(pretrained) or pretrained.lower().endswith(_SUFFIXES) or os.sep in pretrained:
        return Path(pretrained), None  # a path: reading it says precisely what is wrong with it
    get_weights(pretrained)  # raises a ValueError listing the names
    raise AssertionError("unreachable")


def load_pretrained(
    pretrained: Union[bool, str, os.PathLike],
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    local_files_only: bool = False,
    progress: bool = True,
    new_head: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Resolve, verify and read weights -> ``(state dict, metadata)``.

    The metadata holds ``num_classes`` (None for backbone-only weights), ``categories``,
    ``source`` (the file) and ``weights`` (the registry name, if any). A checksum mismatch or a
    corrupt file from a cache raises a ValueError and removes the file from the cache, so the
    next call downloads it again. ``new_head``: the caller builds a new head, so a file
    without one is accepted (see :func:`~deeplabv2.weights.load_weights_file`).
    """
    path, weights = resolve_weights_file(pretrained, cache_dir, local_files_only, progress)
    cached = weights is not None or str(pretrained).startswith("hf-hub:")
    if weights is not None and weights.sha256 is not None:
        digest = sha256sum(path)
        if digest != weights.sha256:
            _discard(path)
            raise ValueError(
                f"{path}: SHA-256 {digest} does not match the expected {weights.sha256} of the "
                f"{weights.name!r} weights; the corrupt file was removed from the cache, load "
                "again to download it anew"
            )
    try:
        backbone_only = weights is not None and weights.backbone_only
        state, metadata = load_weights_file(path, backbone_only, new_head)
    except ValueError as error:
        if not cached:
            raise
        _discard(path)
        raise type(error)(
            f"{error} (the cached copy was removed: load again to download it anew)"
        ) from None
    info: dict[str, Any] = dict(metadata)
    info["num_classes"] = int(metadata["num_classes"]) if "aspp.convs.0.weight" in state else None
    info["categories"] = weights.categories if weights is not None else ()
    info["weights"] = weights.name if weights is not None else None
    info["path"] = str(path)
    return state, info
