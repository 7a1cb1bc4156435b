"""Find, download, cache and verify pretrained weights (files only: no model is involved).

Loading order: an explicit local file > the Hugging Face Hub cache (``HF_HUB_OFFLINE`` and
``local_files_only`` respected; a pinned commit in the cache needs no network) > download. Weights
not yet published on the Hub come from their original release file, cached by torch.hub
(:mod:`deeplabv2.weights.release`: only the member of a zip archive where the server serves
ranges, resumed after an interruption, checked before use).

Every download runs under the network time limit of :mod:`deeplabv2.weights.internet`
(``DEEPLABV2_NETWORK_TIMEOUT``, 10 s: connect, no answer, less than 10 KiB per window), in a
helper process. A failed Hub download leaves no partial file; a failed release download keeps
what arrived in ``<cache file>.part`` to resume from, never a file under the cache file's name;
the release cache never writes through a link (:mod:`deeplabv2.weights.cache`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch

from ..data.classes import COCOSTUFF_CLASSES, VOC_CLASSES
from ..errors import WeightsFormatError, WeightsUnavailableError
from . import internet, release
from .cache import discard, sha256sum
from .registry import Weights, get_weights, list_weights
from .release import member_limit
from .remote_zip import LinkedFileError

__all__ = ["discard", "hf_download", "member_limit", "resolve_weights", "sha256sum"]

_SUFFIXES = (".safetensors", ".pth", ".pt", ".caffemodel")


_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _offline_variable() -> Optional[str]:
    """The variable that turns huggingface_hub's offline mode on (``HF_HUB_OFFLINE``, or
    ``TRANSFORMERS_OFFLINE``), or None; read when asked (huggingface_hub reads it once, at
    import)."""
    for name in _OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return name
    return None


def _offline() -> bool:
    return _offline_variable() is not None


def _network_forbidden(local_files_only: bool) -> str:
    """Why no download is tried (offline mode, else ``local_files_only``), in words."""
    variable = _offline_variable()
    if variable is not None:
        return f"offline mode is on ({variable}={os.environ[variable]})"
    return "local_files_only=True forbids downloads"


_PASS_A_FILE = (
    "pass its path instead: pretrained='/path/to/file.safetensors' (CLI: --weights PATH; "
    ".safetensors, .pth and .caffemodel are accepted)."
)


def _unavailable(what: str, where: str, reason: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"cannot load {what}: it is not in the local cache and could not be downloaded from "
        f"{where} ({reason}). Download the file on a machine with network access and "
        + _PASS_A_FILE
    )


def _by_hand(weights: Weights) -> str:
    """How to get the release file of ``weights`` without this library's download: what to
    fetch, the member to extract (a glob pattern said as such), the conversion, the option."""
    out = f"{weights.name}.safetensors"
    if weights.url_member is None:
        source = weights.url.rstrip("/").rpartition("/")[2]
        get = f"download {weights.url}"
    elif weights.member_is_pattern:
        source = weights.url_member
        get = (
            f"download {weights.url} and extract from it the one member whose name matches the "
            f"pattern {source} (its exact name is not recorded here; `unzip -l` lists them)"
        )
    else:
        source = weights.url_member
        get = f"download {weights.url} and extract {source} from it"
    options = ""
    if weights.backbone_only:
        options = " --backbone-only"
    elif weights.categories == VOC_CLASSES:
        options = " --classes voc"
    elif weights.categories == COCOSTUFF_CLASSES:
        options = " --classes cocostuff"
    return (
        f"To use them without this download: on a machine with network access, {get}; convert "
        f"it with `deeplabv2 convert {source} {out}{options}`; then pass its path instead: "
        f"--weights {out} (Python: pretrained='{out}')."
    )


def _error_reason(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def _hub_reason(failure: internet.NetworkFailure) -> str:
    """Why a Hub download failed, in words that say what to do."""
    if failure.kind == "http" and failure.status in (401, 403):
        return (
            f"{failure.host} answered HTTP {failure.status}: the repository is private or gated, "
            "or does not exist; log in with `hf auth login` or set HF_TOKEN to a token that may "
            "read it"
        )
    if failure.kind == "http" and failure.status == 404:
        return f"{failure.host} answered HTTP 404: no such repository, revision or file"
    return failure.describe()


def _hub_storage(repo_id: str, cache_dir: Optional[Union[str, os.PathLike]]) -> Path:
    from huggingface_hub import constants

    default = getattr(constants, "HF_HUB_CACHE", None) or constants.HUGGINGFACE_HUB_CACHE
    root = cache_dir if cache_dir is not None else default
    return Path(root) / f"models--{repo_id.replace('/', '--')}"


def _from_cache_only(
    repo_id: str,
    filename: str,
    revision: Optional[str],
    cache_dir: Optional[Path],
    local_files_only: bool,
    token: Union[bool, str, None],
    what: str,
    where: str,
) -> str:
    """:func:`hf_download` offline: the file from the Hub cache, or WeightsUnavailableError
    naming ``what`` (the file, its repository and revision) and ``where`` (its Hub page)."""
    from huggingface_hub import hf_hub_download

    from ..version import __version__

    try:
        return hf_hub_download(
            repo_id, filename, revision=revision, cache_dir=cache_dir, local_files_only=True,
            library_name="deeplabv2", library_version=__version__, token=token,
        )  # fmt: skip
    except Exception as error:  # huggingface_hub raises many types for the same situation
        raise WeightsUnavailableError(
            f"cannot load {what}: {_network_forbidden(local_files_only)}, and it is not in "
            f"the Hugging Face Hub cache ({_error_reason(error)}). Download it from {where} "
            "on a machine with network access and " + _PASS_A_FILE
        ) from None


def hf_download(
    repo_id: str,
    filename: str,
    revision: Optional[str],
    cache_dir: Optional[Union[str, os.PathLike]],
    local_files_only: bool,
    *,
    timeout: Optional[float] = None,
    token: Union[bool, str, None] = None,
    force_download: bool = False,
) -> str:
    """A file of a Hub repository in the Hub cache, fetched if needed.

    Offline (``local_files_only`` or ``HF_HUB_OFFLINE``) only the cache is read. Otherwise one
    request (no retries) asks the Hub first, so that a machine without network fails within the
    network time limit (``timeout`` seconds, else ``DEEPLABV2_NETWORK_TIMEOUT``, else 10 s; see
    :mod:`deeplabv2.weights.internet`); if it fails, a copy already in the cache is used, else
    WeightsUnavailableError. A download that fails or is interrupted leaves no partial file.

    ``revision``, ``token`` and ``force_download`` mean what they mean to
    ``huggingface_hub.hf_hub_download`` (they go to it, in the helper process): a branch, tag or
    commit (None: the main branch); the token (None: ``HF_TOKEN`` or the stored login, False:
    none); fetch the file again even if it is cached (then a failed download never falls back
    to the cached copy).

    Raises:
        WeightsUnavailableError: not in the cache and not downloadable.
        ValueError: a bad ``timeout`` or ``DEEPLABV2_NETWORK_TIMEOUT``; ``force_download``
            offline (``local_files_only`` or ``HF_HUB_OFFLINE``).
    """
    from huggingface_hub import constants, try_to_load_from_cache

    from ..version import __version__

    what = f"{filename} of the Hugging Face Hub repository {repo_id}" + (
        f" at revision {revision}" if revision else ""
    )
    endpoint = constants.ENDPOINT.rstrip("/")
    where = f"{endpoint}/{repo_id}"
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
    if force_download and (local_files_only or _offline()):
        raise ValueError(
            f"force_download=True needs the network, which local_files_only=True or "
            f"HF_HUB_OFFLINE=1 forbids: drop one of them to load {what}"
        )
    if local_files_only or _offline():
        return _from_cache_only(
            repo_id, filename, revision, cache_dir, local_files_only, token, what, where
        )
    seconds = internet.network_timeout(timeout)
    cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
    if force_download:
        cached = None  # never used instead of the download asked for
    if isinstance(cached, str) and revision is not None and len(revision) == 40:
        return cached  # a pinned commit never changes: no request needed
    from huggingface_hub.utils import are_progress_bars_disabled

    params = {
        "repo_id": repo_id,
        "filename": filename,
        "revision": revision,
        "token": token,
        "force_download": force_download,
        "cache_dir": os.fspath(cache_dir) if cache_dir is not None else None,
        "endpoint": endpoint,
        "library_name": "deeplabv2",
        "library_version": __version__,
        "progress": not are_progress_bars_disabled(),
    }
    blobs = _hub_storage(repo_id, cache_dir) / "blobs"
    partial = set(blobs.glob("*.incomplete"))  # someone else's: never touched
    try:
        return internet.run(
            "hf_download", params, seconds=seconds, host=internet.host_of(endpoint),
            env={"HF_ENDPOINT": endpoint},
        )  # fmt: skip
    except BaseException as error:
        for path in set(blobs.glob("*.incomplete")) - partial:  # a failed or stopped download's
            path.unlink(missing_ok=True)
        if not isinstance(error, internet.NetworkFailure):
            raise
        if error.stage == "metadata" and isinstance(cached, str):
            return cached
        raise _unavailable(what, where, _hub_reason(error)) from None


def _url_download(
    weights: Weights, local_files_only: bool, progress: bool, timeout: Optional[float] = None
) -> Path:
    """The original release file of ``weights`` (or its member) in torch.hub's cache, fetched
    if needed and checked against its SHA-256 (:mod:`deeplabv2.weights.release`: the
    registry's, the one recorded when it was first downloaded, the prefix its name carries)."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    archive, target = release.cache_files(weights, checkpoints)
    if target.is_file():
        release.reuse(weights, target)
        return target
    if weights.url_member is not None and archive.is_file():  # a whole archive from before
        release.reuse(weights, archive)
        release.extract(weights, archive, target)
        return target
    what = f"the {weights.name!r} weights"
    if local_files_only or _offline():
        raise WeightsUnavailableError(
            f"cannot load {what}: {_network_forbidden(local_files_only)}, and they are not in "
            f"torch.hub's cache ({target} does not exist). {_by_hand(weights)}"
        )
    seconds = internet.network_timeout(timeout)
    try:
        release.fetch(weights, checkpoints, progress, seconds)
    except internet.NetworkFailure as failure:
        reason = failure.describe()
    except LinkedFileError:  # says which file and what to do
        raise
    except OSError as error:  # the cache folder cannot be written
        reason = _error_reason(error)
    else:
        return target
    raise WeightsUnavailableError(
        f"cannot load {what}: they are not in torch.hub's cache and could not be downloaded "
        f"from {weights.url} ({reason}). {_by_hand(weights)}"
    )


def _manual(weights: Weights) -> Path:
    """A file that must be downloaded by hand: where the cache expects it, if it is there."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / f"{weights.name}.caffemodel"
    if not target.is_file():
        raise WeightsUnavailableError(
            f"the {weights.name!r} weights cannot be downloaded automatically: get "
            f"{weights.url_member} from {weights.url} by hand, then pass its path "
            f"(pretrained='/path/to/{weights.url_member}', or init in a training config), or "
            f"put it at {target}"
        )
    return target


def _fetch(
    weights: Weights,
    cache_dir: Optional[Union[str, os.PathLike]],
    local_files_only: bool,
    progress: bool,
    timeout: Optional[float],
) -> Path:
    """The file of a registry entry, fetched if needed and checked against its SHA-256."""
    if weights.manual_download:
        path = _manual(weights)
    elif weights.hf_revision is not None:
        path = Path(
            hf_download(
                weights.hf_repo, weights.hf_filename, weights.hf_revision, cache_dir,
                local_files_only, timeout=timeout,
            )
        )  # fmt: skip
    else:
        return _url_download(weights, local_files_only, progress, timeout)  # checked there
    if weights.sha256 is not None:
        digest = sha256sum(path)
        if digest != weights.sha256:
            discard(path)
            raise WeightsFormatError(
                f"{path}: SHA-256 {digest} does not match the expected {weights.sha256} of the "
                f"{weights.name!r} weights; the corrupt file was removed from the cache, load "
                "again to download it anew"
            )
    return path


def _check_architecture(weights: Weights, architecture: Optional[str]) -> None:
    """Refuse a registry entry for another network than ``architecture`` (None: any)."""
    if architecture is not None and weights.architecture != architecture:
        raise ValueError(
            f"the weights {weights.name} are for {weights.architecture}, not {architecture}: "
            f"build {weights.architecture}(pretrained=...) with them (or deeplabv2.load_model, "
            f"which picks the network), or pick {architecture}'s own: "
            f"{', '.join(list_weights(architecture)) or 'none are registered'}"
        )


def resolve_weights(
    pretrained: Union[bool, str, os.PathLike, Weights],
    architecture: Optional[str] = None,
    *,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    local_files_only: bool = False,
    progress: bool = True,
    timeout: Optional[float] = None,
) -> tuple[Path, Optional[Weights], bool]:
    """Where the weights named by ``pretrained`` are on disk, fetching and verifying them.

    Args:
        pretrained: True (the architecture's default), a registry name (full, or a tag of
            ``architecture``) or entry (:class:`Weights`, e.g. from :func:`get_weights`), a
            local file path, or ``"hf-hub:<owner>/<repo>[/<filename>]"`` (filename defaults
            to ``model.safetensors``).
        architecture: the builder the weights are for (default: DeepLab v2 ResNet-101).
        cache_dir: Hugging Face Hub cache directory (default: the Hub's own).
        local_files_only: never use the network.
        progress: show a progress bar while downloading from a URL.
        timeout: the network time limit in seconds (connect, no answer, less than 10 KiB per
            window; see :mod:`deeplabv2.weights.internet`); default ``DEEPLABV2_NETWORK_TIMEOUT``,
            else 10 s.

    Returns:
        ``(file, registry entry or None, whether the file is a cache entry)``: a cache entry
        that turns out corrupt may be removed (:func:`discard`); a user's own file never is.

    Raises:
        WeightsUnavailableError: not on disk and cannot be downloaded.
        WeightsFormatError: a downloaded or cached file whose SHA-256 is wrong (the
            registry's, the one recorded at its first download, or the prefix its name
            carries), an archive member whose CRC-32 or size differs from the archive's
            directory, or a release archive that cannot be used (nothing of it is kept).
        PermissionError: a file the cache would write is a link (planted in a shared cache),
            a file with other names, or not a regular file; it is named, never followed.
        ValueError: an unknown name, an entry or name of another architecture, or a bad
            ``timeout`` / ``DEEPLABV2_NETWORK_TIMEOUT``.
    """
    if isinstance(pretrained, Weights):
        _check_architecture(pretrained, architecture)
        return _fetch(pretrained, cache_dir, local_files_only, progress, timeout), pretrained, True
    if pretrained is True:
        pretrained = "DEFAULT"
    if isinstance(pretrained, os.PathLike):
        pretrained = os.fspath(pretrained)
    if not isinstance(pretrained, str):
        raise TypeError(
            f"pretrained must be None, True, a weights name or entry, a path or 'hf-hub:...', got "
            f"{type(pretrained).__name__}"
        )
    if pretrained.startswith("hf-hub:"):
        parts = pretrained[len("hf-hub:") :].strip("/").split("/")
        if len(parts) < 2 or not all(parts[:2]):
            raise ValueError(f"expected 'hf-hub:<owner>/<repo>[/<filename>]', got {pretrained!r}")
        filename = "/".join(parts[2:]) or "model.safetensors"
        path = hf_download(
            "/".join(parts[:2]), filename, None, cache_dir, local_files_only, timeout=timeout
        )
        return Path(path), None, True
    looks_like_path = pretrained.lower().endswith(_SUFFIXES) or os.sep in pretrained
    if os.path.exists(pretrained) or looks_like_path:
        return Path(pretrained), None, False  # reading it says precisely what is wrong with it
    weights = get_weights(pretrained, architecture)  # a ValueError listing the names if unknown
    return _fetch(weights, cache_dir, local_files_only, progress, timeout), weights, True
