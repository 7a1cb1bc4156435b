"""``deeplabv2 weights``: the pretrained weights of the registry, as a table or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..weights import get_weights, list_weights
from .options import add_model_option

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``weights`` and its options."""
    parser = commands.add_parser("weights", help="list the pretrained weights")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_model_option(parser, "only the weights of this network")
    parser.set_defaults(run=run)


def _row(name: str) -> dict[str, Any]:
    """What the listing says about the weights ``name``."""
    entry = get_weights(name)
    metrics = entry.meta.get("_metrics") or {}
    return {
        "name": name,
        "architecture": entry.architecture,
        "tag": entry.tag,
        "classes": entry.num_classes or "backbone",
        "source": entry.url_member or entry.url.rsplit("/", 1)[-1],
        "hub": f"{entry.hf_repo}@{entry.hf_revision or 'unpublished'}",
        "metrics": "; ".join(
            f"{d}: " + ", ".join(f"{k} {v}" for k, v in m.items() if k != "source")
            for d, m in metrics.items()
        ),
        "warning": entry.warning,
    }


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 weights``; the exit code."""
    rows = [_row(name) for name in list_weights(args.model)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        flag = "  [trained on VOC val: test server only]" if row["warning"] else ""
        print(f"{row['name']:<38} {row['classes']!s:<9} {row['source']:<48} {row['metrics']}{flag}")
    return 0
