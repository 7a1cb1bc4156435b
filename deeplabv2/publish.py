"""Convert a release file and publish it on the Hugging Face Hub as a model folder.

The folder is the one ``save_pretrained`` writes (``model.safetensors``, ``config.json``, a
model card), made by the same functions, with the registry entry's description, licence and
metrics; the upload is the one ``push_to_hub`` makes (one commit).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from .convert import convert
from .models.hub_mixin import (
    CARD_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    hub_config,
    upload_folder,
    write_folder,
)
from .weights import get_weights
from .weights import sha256sum

__all__ = ["publish"]


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
    """
    weights = get_weights(name)
    repo_id = repo_id or weights.hf_repo
    config = hub_config(
        weights.architecture,
        weights.num_classes,
        weights.categories,
        weights.protocol.as_dict() if weights.protocol else None,
        Path(src).name,
        lineage=weights.lineage,
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

    paths = write_folder(
        out_dir,
        write_weights,
        config,
        force=force,
        name=weights.name,
        description=f"{weights.description} Converted from {weights.url}.",
        license_text=weights.license,
        metrics=weights.metrics,
    )
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
