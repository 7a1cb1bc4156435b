"""Convert a release file and publish it on the Hugging Face Hub as a model folder.

The folder is the one ``save_pretrained`` writes (``model.safetensors``, ``config.json``, a
model card), made by the same functions, with the registry entry's description, licence and
metrics; the upload is the one ``push_to_hub`` makes (one commit). :func:`publish`, and
``deeplabv2 publish``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from ._files import check_readable, check_writable
from .conversion import convert
from .models.hub_mixin import (
    CARD_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    hub_config,
    upload_folder,
    write_folder,
)
from .weights import Weights, get_weights, sha256sum

__all__ = ["check_repo_id", "publish"]


def publish(
    name: str,
    src: Union[str, os.PathLike],
    out_dir: Union[str, os.PathLike],
    repo_id: Optional[str] = None,
    upload: bool = False,
    token: Optional[str] = None,
    force: bool = False,
    api: Any = None,
) -> dict[str, Any]:
    """Convert ``src`` for the registry entry ``name`` and (with ``upload``) push it to the Hub.

    Writes ``out_dir/model.safetensors``, ``config.json`` and ``README.md``. Without ``upload``
    (the default) nothing leaves the machine: the returned plan says what would be uploaded
    where. With it, ``huggingface_hub.HfApi`` (or ``api``) creates the repository if needed and
    uploads the folder in one commit; the plan then holds the commit to pin as ``hf_revision``
    in the registry.

    Everything is checked before the conversion starts: the name, ``repo_id``, that ``src``
    can be read and that ``out_dir`` can be written; a failed run leaves no folder it made.
    """
    weights = get_weights(name)
    repo_id = check_repo_id(repo_id or weights.hf_repo)
    check_readable(os.fspath(src), "weights file")
    _check_out_dir(Path(out_dir))  # all before the conversion
    paths = _write_folder(weights, src, Path(out_dir), force)
    plan: dict[str, Any] = {
        "repo_id": repo_id,
        "files": {name: str(paths[name]) for name in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)},
        "sha256": sha256sum(paths[WEIGHTS_NAME]),
        "uploaded": False,
        "revision": None,
    }
    if upload:
        plan["revision"] = upload_folder(
            out_dir, repo_id, token=token, commit_message=f"deeplabv2: {name}", api=api
        )
        plan["uploaded"] = True
    return plan


def _write_folder(weights: Weights, src: Any, out_dir: Path, force: bool) -> dict[str, Path]:
    """The model folder of ``src`` converted for ``weights``; a failure leaves no empty folder
    behind that this run made."""
    config = hub_config(
        weights.architecture,
        weights.num_classes,
        weights.categories,
        weights.protocol.as_dict() if weights.protocol else None,
        Path(src).name,
        lineage=weights.lineage,
        warning=weights.warning,
    )

    def write_weights(path: Path) -> None:
        convert(
            src,
            path,
            model=weights.architecture,
            backbone_only=weights.backbone_only,
            classes=weights.categories or None,
            protocol=weights.protocol,
            force=True,
        )

    card = {
        "name": weights.name,
        "description": f"{weights.description} Converted from {weights.url}.",
        "license_text": weights.license,
        "metrics": weights.metrics,
    }
    made = _missing_folders(out_dir)
    try:
        paths = write_folder(out_dir, write_weights, config, force=force, **card)
    except BaseException:
        _remove_empty(made)  # a failed run leaves no empty folder behind
        raise
    return paths


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if the Hub accepts it (``<namespace>/<name>`` or ``<name>``), else a
    ValueError that says why."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(
            f"repo_id (--repo-id) {repo_id!r} is not a Hub repository id: {error}"
        ) from None
    return repo_id


def _check_out_dir(out: Path) -> None:
    """``out`` must be (or become) a folder this user can write to."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(
            f"--out {out} is a file; give a folder for {WEIGHTS_NAME}, {CONFIG_NAME} and "
            f"{CARD_NAME}"
        )
    check_writable(out, folder=True)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed run made, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
