"""``deeplabv2 weights``: the pretrained weights of the registry, as a table or JSON, or one
entry in full (``--details NAME``: what it is, what it has seen, how it was evaluated)."""

from __future__ import annotations

import argparse
import json
from typing import Any, Optional

from ..weights import get_weights, list_weights
from .options import add_model_option

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``weights`` and its options."""
    parser = commands.add_parser("weights", help="list the pretrained weights")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_model_option(parser, "only the weights of this network (default: all)")
    parser.add_argument(
        "--details",
        metavar="NAME",
        help="one entry in full: lineage (what it has seen), data, protocol, metrics, sources, "
        "warning",
    )
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


def details(name: str, architecture: Optional[str] = None) -> dict[str, Any]:
    """Everything the registry says about the weights ``name``, as plain JSON-able values."""
    entry = get_weights(name, architecture)
    return {
        "name": entry.name,
        "description": entry.description,
        "lineage": list(entry.lineage),
        "classes": entry.num_classes or "backbone",
        "protocol": None if entry.protocol is None else entry.protocol.as_dict(),
        "metrics": entry.metrics,
        "sources": {
            "url": entry.url,
            "member": entry.url_member,
            "hub": f"{entry.hf_repo}@{entry.hf_revision or 'unpublished'}",
            "sha256": entry.sha256,
        },
        "license": entry.license,
        "docs": entry.docs,
        "warning": entry.warning,
    }


def _print_details(record: dict[str, Any]) -> None:
    """The record of :func:`details` as indented text."""
    print(record["name"])
    print(f"  {record['description']}")
    print("  lineage (oldest first):")
    for stage in record["lineage"] or ["unknown"]:
        print(f"    - {stage}")
    print(f"  classes: {record['classes']}")
    protocol = record["protocol"]
    shown = "none (an initialisation)" if protocol is None else json.dumps(protocol)
    print(f"  protocol: {shown}")
    print("  metrics:" if record["metrics"] else "  metrics: none reported")
    for data, scores in record["metrics"].items():
        values = ", ".join(f"{k} {v}" for k, v in scores.items() if k != "source")
        print(f"    {data}: {values} (source: {scores.get('source', 'unknown')})")
    print("  sources:")
    for key, value in record["sources"].items():
        if value:
            print(f"    {key}: {value}")
    for key in ("license", "docs", "warning"):
        if record[key]:
            print(f"  {key}: {record[key]}")


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 weights``; the exit code."""
    if args.details is not None:
        record = details(args.details, args.model)
        if args.json:
            print(json.dumps(record, indent=2))
        else:
            _print_details(record)
        return 0
    rows = [_row(name) for name in list_weights(args.model)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    name_width = max(len(row["name"]) for row in rows) if rows else 0
    source_width = max(len(row["source"]) for row in rows) if rows else 0
    for row in rows:
        flag = "  [trained on VOC val: test server only]" if row["warning"] else ""
        print(
            f"{row['name']:<{name_width}} {row['classes']!s:<9} {row['source']:<{source_width}} "
            f"{row['metrics']}{flag}".rstrip()
        )
    return 0
