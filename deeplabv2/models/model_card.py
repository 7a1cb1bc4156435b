"""The documents of a model folder besides the weights: ``config.json`` (:func:`hub_config`)
and the model card ``README.md`` (:func:`model_card`, Hugging Face card data plus the facts a
reader needs: classes, input, protocol, lineage, checksum, licence, metrics)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ..version import __version__

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "Metrics", "hub_config", "model_card"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TAGS = ("image-segmentation", "semantic-segmentation", "deeplab", "deeplabv2", "pytorch")
PAPER = (
    "L.-C. Chen, G. Papandreou, I. Kokkinos, K. Murphy, A. L. Yuille: DeepLab: Semantic Image "
    "Segmentation with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs. "
    "TPAMI 2017, arXiv:1606.00915."
)

Metrics = Mapping[str, Mapping[str, Any]]  # dataset -> {metric: value, "source": ...}


def hub_config(
    architecture: str,
    num_classes: Optional[int],
    class_names: Sequence[str],
    protocol: Optional[Mapping[str, Any]],
    source: str,
    *,
    lineage: Sequence[str] = (),
    model_args: Optional[Mapping[str, Any]] = None,
    warning: Optional[str] = None,
) -> dict[str, Any]:
    """The ``config.json`` of a model folder (``model_args``: the network's constructor
    arguments besides ``num_classes``, e.g. its ASPP rates; ``warning``: what the weights
    must not be used for, e.g. evaluation on the data they were trained on)."""
    return {
        "library_name": "deeplabv2",
        "deeplabv2_version": __version__,
        "architecture": architecture,
        "num_classes": num_classes,
        "class_names": list(class_names),
        "protocol": dict(protocol) if protocol else None,
        "lineage": list(lineage),
        "warning": warning,
        "model_args": dict(model_args or {}),
        "source": source,
        "weights": WEIGHTS_NAME,
    }


def model_card(
    config: Mapping[str, Any],
    *,
    sha256: str,
    name: Optional[str] = None,
    description: str = "",
    license: str = "other",
    license_text: str = "",
    metrics: Optional[Metrics] = None,
) -> str:
    """The ``README.md`` of a model folder: YAML card data (``library_name: deeplabv2``, tags,
    licence, ``model-index`` with the metrics) and a usage section."""
    from huggingface_hub import ModelCardData

    name = name or f"{config['architecture']} ({config['num_classes'] or 'no'} classes)"
    data = ModelCardData(
        library_name="deeplabv2",
        license=license,
        tags=list(TAGS),
        pipeline_tag="image-segmentation",
        model_name=name,
        eval_results=_eval_results(metrics) or None,
    )
    body = _body(config, name, description, sha256, license_text or license, metrics)
    return f"---\n{data.to_yaml()}\n---\n\n{body}"


def _eval_results(metrics: Optional[Metrics]) -> list[Any]:
    """The card's ``model-index`` entries: every numeric metric of every dataset."""
    from huggingface_hub import EvalResult

    return [
        EvalResult(
            task_type="image-segmentation",
            dataset_type=dataset,
            dataset_name=dataset,
            metric_type=metric,
            metric_name=metric,
            metric_value=value,
        )
        for dataset, values in (metrics or {}).items()
        for metric, value in values.items()
        if metric != "source" and isinstance(value, (int, float))
    ]


def _body(
    config: Mapping[str, Any],
    name: str,
    description: str,
    sha256: str,
    licence: str,
    metrics: Optional[Metrics],
) -> str:
    """The card's text: what the weights are, how to load them, the facts of the config."""
    classes = ", ".join(config["class_names"]) or "(not recorded)"
    protocol = config.get("protocol") or {}
    return "\n".join(
        [
            f"# {name}",
            "",
            description or "DeepLab v2 weights for the `deeplabv2` library.",
            "",
            "```python",
            "from deeplabv2.models import load_model",
            'model = load_model("hf-hub:<this repository>")  # or '
            f'deeplabv2.models.{config["architecture"]}(pretrained="hf-hub:<this repository>")',
            "```",
            "",
            f"- architecture: `{config['architecture']}`",
            f"- classes ({config['num_classes'] or 0}): {classes}",
            "- input: BGR float32 in 0..255 minus the mean (B, G, R) = "
            f"{protocol.get('mean_bgr', 'the ImageNet mean of the release')}",
            f"- test protocol: {json.dumps(protocol) if protocol else 'n/a'}",
            f"- trained on (oldest first): {' -> '.join(config.get('lineage') or ()) or 'n/a'}",
            *([f"- **warning**: {config['warning']}"] if config.get("warning") else []),
            f"- source: {config.get('source') or 'n/a'}",
            f"- `{WEIGHTS_NAME}` SHA-256: `{sha256}`",
            f"- licence: {licence}",
            f"- written by deeplabv2 {config.get('deeplabv2_version', __version__)}",
            "",
            *_metrics_table(metrics),
            PAPER,
            "",
        ]
    )


def _metrics_table(metrics: Optional[Metrics]) -> list[str]:
    if not metrics:
        return []
    rows = [
        f"| {dataset} | "
        + ", ".join(f"{k} {v}" for k, v in values.items() if k != "source")
        + f" | {values.get('source', '')} |"
        for dataset, values in metrics.items()
    ]
    return ["| dataset | metrics | source |", "|---|---|---|", *rows, ""]
