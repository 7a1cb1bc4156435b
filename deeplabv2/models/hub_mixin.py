"""Hugging Face Hub integration: ``save_pretrained``, ``from_pretrained``, ``push_to_hub``.

A model folder (local or a Hub repository) holds three files:

* ``model.safetensors``: the weights, with this library's header (architecture, classes,
  protocol), so ``pretrained="hf-hub:owner/repo"`` and ``load_model`` read it too;
* ``config.json``: the same facts as JSON (``architecture``, ``num_classes``, ``class_names``,
  ``protocol``, ...), for people and tools that do not open the weights;
* ``README.md``: a model card with ``library_name: deeplabv2``, tags, licence and metrics.

``deeplabv2 publish`` writes and uploads release weights through the same functions.
Uploads run under the network time limit of :mod:`deeplabv2.weights.internet` and fail in one
line (``TimeoutError``, ``ConnectionError``, ``PermissionError`` for HTTP 401/403).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar, Union, cast

from .._files import atomic_write_text, check_destination
from ..errors import WeightsFormatError, WeightsMismatchError
from ..weights import hf_download, internet, sha256sum
from ..weights.upload import upload
from ._registry import get_model, list_models
from ._weights_file import SavedNetwork, save_weights
from .model_card import CONFIG_NAME, WEIGHTS_NAME, Metrics, hub_config, model_card

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "HubMixin",
    "WEIGHTS_NAME",
    "hub_config",
    "model_card",
    "upload_folder",
    "write_folder",
]

CARD_NAME = "README.md"
M = TypeVar("M", bound="HubMixin")


def write_folder(
    directory: Union[str, os.PathLike],
    write_weights: Callable[[Path], Any],
    config: Mapping[str, Any],
    *,
    force: bool = False,
    **card: Any,
) -> dict[str, Path]:
    """Write a model folder: the weights through ``write_weights(path)`` (which must write
    atomically and may overwrite), then ``config.json`` and ``README.md`` (``card`` goes to
    :func:`model_card`). Every destination is checked before anything is written; each file is
    written atomically."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file; save_pretrained needs a directory")
    paths = {name: directory / name for name in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)}
    for path in paths.values():
        check_destination(path, force)
    directory.mkdir(parents=True, exist_ok=True)
    write_weights(paths[WEIGHTS_NAME])
    texts = {
        CONFIG_NAME: json.dumps(config, indent=2) + "\n",
        CARD_NAME: model_card(config, sha256=sha256sum(paths[WEIGHTS_NAME]), **card),
    }
    for name, text in texts.items():
        atomic_write_text(paths[name], text, force=force)
    return paths


def _read_config(path: Path) -> dict[str, Any]:
    """A folder's ``config.json`` as a dict; anything else is a clear error."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsFormatError(
            f"{path}: not valid JSON ({error}); write the folder again with save_pretrained"
        ) from None
    if not isinstance(config, dict):
        raise WeightsFormatError(
            f"{path}: expected a JSON object, got {type(config).__name__}; write the folder "
            "again with save_pretrained"
        )
    return config


def upload_folder(
    directory: Union[str, os.PathLike],
    repo_id: str,
    *,
    private: Optional[bool] = None,
    token: Optional[str] = None,
    commit_message: str = "Upload a deeplabv2 model",
    create_pr: bool = False,
    api: Any = None,
    timeout: Optional[float] = None,
) -> Optional[str]:
    """Create ``repo_id`` if needed and upload the folder in one commit; returns its commit sha.

    ``api``: a ``huggingface_hub.HfApi`` (its endpoint, token and headers are used) or None;
    any other object with ``create_repo`` and ``upload_folder`` is called as it is, without the
    time limit. ``timeout``: the network time limit in seconds (default
    ``DEEPLABV2_NETWORK_TIMEOUT``, else 10; see :mod:`deeplabv2.weights.internet`).

    Raises:
        TimeoutError, ConnectionError, PermissionError (HTTP 401/403: no token or no write
            access), RuntimeError: one line naming the repository and the host.
    """
    from huggingface_hub import HfApi

    patterns = [WEIGHTS_NAME, CONFIG_NAME, CARD_NAME]
    options = dict(commit_message=commit_message, create_pr=create_pr, allow_patterns=patterns)
    if api is None or type(api) is HfApi:
        limits = {"api": api, "token": token, "timeout": timeout, "private": private}
        return upload(os.fspath(directory), repo_id, **limits, **options)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(folder_path=str(directory), repo_id=repo_id, **options)
    return getattr(commit, "oid", None)


def _folder_files(folder: Path, revision: Optional[str]) -> tuple[Path, Path]:
    """``config.json`` and ``model.safetensors`` of a local model folder, which must hold both.

    Raises:
        ValueError: a ``revision`` (a Hub repository's version) for the folder.
        FileNotFoundError: a file is missing.
    """
    if revision is not None:
        raise ValueError(
            f"revision={revision!r} selects a version of a Hub repository, but {folder} is a "
            "local directory, read as it is: drop revision=, or pass the repository id "
            "'owner/name' to load that revision from the Hub"
        )
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: {folder} is not a folder written by save_pretrained"
            )
    return config_path, weights_path


def _hub_files(
    repo: str,
    revision: Optional[str],
    cache_dir: Optional[Union[str, os.PathLike]],
    local_files_only: bool,
    token: Union[bool, str, None],
    force_download: bool,
) -> tuple[Path, Path]:
    """``config.json`` and ``model.safetensors`` of the Hub repository ``repo`` in the Hub
    cache, fetched if needed (the arguments are :func:`hf_download`'s)."""
    if repo.count("/") != 1:
        raise ValueError(f"{repo!r} is neither a directory nor a Hub repository id 'owner/name'")
    config_path, weights_path = (
        Path(hf_download(repo, name, revision, cache_dir, local_files_only, token=token,
                         force_download=force_download))
        for name in (CONFIG_NAME, WEIGHTS_NAME)
    )  # fmt: skip
    return config_path, weights_path


class HubMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for the DeepLab networks."""

    num_classes: int  # set by the network (DeepLabBase)

    def save_pretrained(
        self,
        save_directory: Union[str, os.PathLike],
        *,
        force: bool = False,
        license: str = "other",
        license_text: str = "",
        metrics: Optional[Metrics] = None,
        description: str = "",
        name: Optional[str] = None,
    ) -> Path:
        """Write ``model.safetensors``, ``config.json`` and a model card to ``save_directory``.

        Args:
            save_directory: created if needed; existing files in it are refused unless
                ``force``.
            license: the Hub licence identifier (``mit``, ``apache-2.0``, ... or ``other``).
            license_text: the licence in words, for the card.
            metrics: ``{dataset: {metric: value, "source": where it was measured}}``, written
                as the card's ``model-index``.
            description, name: the card's text and title.

        Returns:
            The directory.
        """
        architecture = getattr(self, "architecture", None)
        if architecture is None:
            raise ValueError(
                f"save_pretrained needs a network made by a builder ({', '.join(list_models())}),"
                " which from_pretrained can rebuild; for a custom network use "
                "deeplabv2.models.save_weights"
            )
        info = getattr(self, "pretrained_info", None)
        config = hub_config(
            architecture,
            int(self.num_classes),
            tuple(getattr(self, "class_names", ())),
            info.protocol.as_dict() if info is not None and info.protocol is not None else None,
            (info.source if info is not None else "") or "deeplabv2",
            lineage=info.lineage if info is not None else (),
            model_args=getattr(self, "model_args", None),
            warning=info.warning if info is not None else None,
        )
        write_folder(
            save_directory,
            lambda path: save_weights(cast(SavedNetwork, self), path, force=True),
            config,
            force=force,
            license=license,
            license_text=license_text,
            metrics=metrics,
            description=description,
            name=name,
        )
        return Path(save_directory)

    @classmethod
    def from_pretrained(
        cls: type[M],
        model_id: Union[str, os.PathLike],
        *,
        revision: Optional[str] = None,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        local_files_only: bool = False,
        token: Union[bool, str, None] = None,
        force_download: bool = False,
        map_location: Any = "cpu",
    ) -> M:
        """A model from a folder written by :meth:`save_pretrained` or a Hub repository.

        Args:
            model_id: a local directory, or ``"owner/repo"`` on the Hugging Face Hub (read
                through the Hub cache; ``HF_HUB_OFFLINE=1`` or ``local_files_only`` never goes
                online).
            revision, token, force_download, cache_dir, local_files_only: as for
                ``huggingface_hub.hf_hub_download``: a branch, tag or commit of the repository
                (default: its main branch); the token (None: ``HF_TOKEN`` or ``hf auth
                login``'s, False: none); download again even if the files are cached. They
                concern a Hub repository only: ``token`` and ``force_download`` have no effect
                on a local directory, and a ``revision`` for one is refused (a folder has no
                versions: the ``revision`` asked for would not be the one loaded).
            map_location: the device to put the model on.

        Raises:
            WeightsMismatchError: the folder holds another network than this class, or its
                weights disagree with its ``config.json``.
            ValueError: a ``revision`` for a local directory; ``force_download`` offline.
        """
        if os.path.isdir(model_id):
            config_path, weights_path = _folder_files(Path(model_id), revision)
        else:
            config_path, weights_path = _hub_files(
                os.fspath(model_id), revision, cache_dir, local_files_only, token, force_download
            )
        config = _read_config(config_path)
        architecture = config.get("architecture")
        if not isinstance(architecture, str):
            raise WeightsFormatError(
                f"{config_path}: 'architecture' must be a builder name, got {architecture!r}; "
                "the file is not a config.json written by save_pretrained"
            )
        model = get_model(architecture, pretrained=str(weights_path))
        if not isinstance(model, cls):
            raise WeightsMismatchError(
                f"{model_id} holds a {architecture} ({type(model).__name__}), not a "
                f"{cls.__name__}: use {type(model).__name__}.from_pretrained or "
                "deeplabv2.models.load_model"
            )
        names = list(getattr(model, "class_names", ()))
        if model.num_classes != config.get("num_classes") or names != config.get("class_names"):
            raise WeightsMismatchError(
                f"{model_id}: {CONFIG_NAME} says {config.get('num_classes')} classes "
                f"{config.get('class_names')}, the weights {model.num_classes} classes {names}"
            )
        return model.to(map_location)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: Optional[bool] = None,
        token: Optional[str] = None,
        commit_message: str = "Upload a deeplabv2 model",
        create_pr: bool = False,
        api: Any = None,
        timeout: Optional[float] = None,
        **card: Any,
    ) -> Optional[str]:
        """:meth:`save_pretrained` into a temporary folder and upload it to ``repo_id`` in one
        commit (the repository is created if needed); ``card`` goes to :meth:`save_pretrained`.
        Returns the commit sha.

        The upload is :func:`upload_folder`'s: ``timeout`` is its network time limit (default
        ``DEEPLABV2_NETWORK_TIMEOUT``, else 10 s), and it raises the same one-line errors. The
        temporary folder is removed whatever happens: success, failure, time limit, Ctrl-C.
        """
        from huggingface_hub import HfApi

        if api is None or type(api) is HfApi:
            internet.network_timeout(timeout)  # a bad value fails before anything is written
        with tempfile.TemporaryDirectory(prefix="deeplabv2-push-") as tmp:
            self.save_pretrained(tmp, **card)
            return upload_folder(
                tmp,
                repo_id,
                private=private,
                token=token,
                commit_message=commit_message,
                create_pr=create_pr,
                api=api,
                timeout=timeout,
            )
