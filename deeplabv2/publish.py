"""Convert a release file and publish it on the Hugging Face Hub with a generated model card."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from .convert import convert
from .weights import Weights, atomic_write, get_weights
from .weights.files import check_destination
from .weights.hub import sha256sum

__all__ = ["model_card", "publish"]


def model_card(weights: Weights, metadata: dict[str, str], sha256: str) -> str:
    """The README.md of a weights repository on the Hub."""
    metrics = weights.meta.get("_metrics") or {}
    metric_lines = [
        f"| {dataset} | {', '.join(f'{k} {v}' for k, v in values.items() if k != 'source')} "
        f"| {values.get('source', '')} |"
        for dataset, values in metrics.items()
    ]
    classes = ", ".join(weights.categories) if weights.categories else "(backbone only)"
    return "\n".join(
        [
            "---",
            "library_name: deeplabv2",
            "tags: [image-segmentation, deeplab, deeplabv2, safetensors]",
            "pipeline_tag: image-segmentation",
            "---",
            f"# `{weights.name}`",
            "",
            weights.description,
            "",
            "```python",
            "import deeplabv2",
            f'model = deeplabv2.models.{weights.architecture}(pretrained="{weights.tag}")',
            "```",
            "",
            f"- classes ({weights.num_classes or 0}): {classes}",
            "- input: BGR float32, 0..255, minus the mean (B, G, R) = "
            f"{weights.transforms().mean_bgr}",
            f"- test protocol: {weights.protocol.as_dict() if weights.protocol else 'n/a'}",
            f"- converted from `{metadata['source']}` ({weights.url}) by deeplabv2 "
            f"{metadata['deeplabv2_version']} (conversion {metadata['conversion_version']})",
            f"- `model.safetensors` SHA-256: `{sha256}`",
            f"- licence: {weights.license}",
            "",
            "| dataset | reported metrics | source |",
            "|---|---|---|",
            *(metric_lines or ["| - | none reported | - |"]),
            "",
            "DeepLab v2: L.-C. Chen, G. Papandreou, I. Kokkinos, K. Murphy, A. L. Yuille, "
            "TPAMI 2017, arXiv:1606.00915.",
            "",
        ]
    )


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

    Writes ``out_dir/model.safetensors`` and ``out_dir/README.md``. Without ``upload`` (the
    default) nothing leaves the machine: the returned plan says what would be uploaded where.
    With it, ``huggingface_hub.HfApi`` (or ``api``) creates the repository if needed and uploads
    both files; the plan then holds the commit to pin as ``hf_revision`` in the registry.
    """
    weights = get_weights(name)
    repo_id = repo_id or weights.hf_repo
    out_dir = Path(out_dir)
    card_path = check_destination(out_dir / "README.md", force)
    model_path, metadata = convert(
        src,
        out_dir / "model.safetensors",
        model=weights.architecture,
        backbone_only=weights.backbone_only,
        classes=weights.categories or None,
        protocol=weights.protocol,
        force=force,
    )
    digest = sha256sum(model_path)
    card = model_card(weights, metadata, digest)
    atomic_write(card_path, lambda tmp: Path(tmp).write_text(card, encoding="utf-8"), force=force)
    plan: dict[str, Any] = {
        "repo_id": repo_id,
        "files": {"model.safetensors": str(model_path), "README.md": str(card_path)},
        "sha256": digest,
        "uploaded": False,
        "revision": None,
    }
    if not upload:
        return plan
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True)
    commit = None
    for path_in_repo, local in plan["files"].items():
        commit = api.upload_file(
            path_or_fileobj=local,
            path_in_repo=path_in_repo,
            repo_id=repo_id,
            commit_message=f"deeplabv2: {path_in_repo} for {name}",
        )
    plan["uploaded"] = True
    plan["revision"] = getattr(commit, "oid", None)
    return plan
