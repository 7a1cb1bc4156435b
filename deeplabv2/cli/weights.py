"""``deeplabv2 weights``: the pretrained weights of the registry, as a table (one line each,
under 100 columns: name, classes, headline mIoU) or JSON, or one entry in full (``--details
NAME``: what it is, what it has seen, how it was evaluated, its files), or what a local weights
file says about itself (``--details FILE``). Loads no torch: the registry is data."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Optional

from ..weights.entry import Weights
from ..weights.file_info import file_info
from ..weights.registry import get_weights, list_weights
from .options import add_model_option

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``weights`` and its options."""
    parser = commands.add_parser("weights", help="list the pretrained weights")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_model_option(parser, "only the weights of this network (default: all)")
    parser.add_argument(
        "--details",
        metavar="NAME|FILE",
        help="one entry in full: lineage (what it has seen), data, protocol, metrics, sources, "
        "warning; or a local weights file: its metadata (a .safetensors file written by "
        "deeplabv2 convert: architecture, classes, source, conversion version)",
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


def _headline(metrics: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The first dataset's mIoU and mIoU with the CRF (``"76.35 / 77.69"``), and the dataset;
    a ``<dataset>+CRF`` entry counts as the CRF score of ``<dataset>``."""
    for data, scores in metrics.items():
        if data.endswith("+CRF") or "mIoU" not in scores:
            continue
        crf = scores.get("mIoU+CRF", metrics.get(f"{data}+CRF", {}).get("mIoU"))
        return f"{scores['mIoU']}" + ("" if crf is None else f" / {crf}"), data
    return "-", "-"


def table(names: list[str]) -> list[str]:
    """The listing's lines: a header, then one line per entry (under 100 columns for the
    registry's names; the files, sources and every metric are in ``--details``)."""
    header = ("NAME", "CLASSES", "mIoU / +CRF", "EVALUATED ON")
    rows = []
    for name in names:
        entry = get_weights(name)
        score, data = _headline(entry.metrics)
        if entry.warning:  # weights that must not be evaluated where their scores would be
            score, data = "-", "trained on VOC val (test only)"
        rows.append((name, str(entry.num_classes or "backbone"), score, data))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3]
        for row in [header, *rows]
    ]


def _member(entry: Weights) -> Optional[str]:
    """The archive member as the details show it: a glob pattern says so plainly."""
    if not entry.member_is_pattern:
        return entry.url_member
    return f"the zip member matching {entry.url_member} (its exact name is decided at download)"


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
            "member": _member(entry),
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


def _print_file(record: dict[str, Any]) -> None:
    """The record of :func:`~deeplabv2.weights.file_info.file_info` as indented text."""
    print(record["file"])
    print(f"  size: {record['size_mb']} MB")
    if "tensors" in record:
        print(f"  tensors: {record['tensors']}")
    for key, value in record.get("metadata", {}).items():
        if key == "classes" and isinstance(value, list):
            value = f"{len(value)}: {', '.join(map(str, value[:6]))}" + (
                ", ..." if len(value) > 6 else ""
            )
        elif not isinstance(value, str):
            value = json.dumps(value)
        print(f"  {key}: {value}")
    if "note" in record:
        print(f"  note: {record['note']}")


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 weights``; the exit code."""
    if args.details is not None and os.path.isfile(args.details):
        record = file_info(args.details)
        print(json.dumps(record, indent=2)) if args.json else _print_file(record)
        return 0
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
    for line in table([row["name"] for row in rows]):
        print(line.rstrip())
    return 0
