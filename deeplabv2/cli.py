"""The ``deeplabv2`` command line: ``convert``, ``weights``, ``publish``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Optional

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _convert(args: argparse.Namespace) -> int:
    from .weights import convert

    path, metadata = convert(args.src, args.dst, force=args.force, backbone_only=args.backbone_only)
    classes = metadata["num_classes"]
    print(f"wrote {path} ({classes} classes, from {metadata['source']})")
    return 0


def _weights(args: argparse.Namespace) -> int:
    from .weights import get_weights, list_weights

    rows = []
    for name in list_weights():
        entry = get_weights(name)
        metrics = entry.meta.get("_metrics") or {}
        rows.append(
            {
                "name": name,
                "classes": entry.num_classes or "backbone",
                "source": entry.url_member or entry.url.rsplit("/", 1)[-1],
                "hub": f"{entry.hf_repo}@{entry.hf_revision or 'unpublished'}",
                "metrics": "; ".join(
                    f"{d}: " + ", ".join(f"{k} {v}" for k, v in m.items() if k != "source")
                    for d, m in metrics.items()
                ),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']:<14} {row['classes']!s:<9} {row['source']:<50} {row['metrics']}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from .weights.publish import publish

    plan = publish(
        args.name, args.src, args.out, repo_id=args.repo_id, upload=args.upload, force=args.force
    )
    if plan["uploaded"]:
        print(f"uploaded to https://huggingface.co/{plan['repo_id']} at {plan['revision']}")
        print(f"pin in the registry: hf_revision={plan['revision']!r}, sha256={plan['sha256']!r}")
    else:
        print(f"dry run: would upload to {plan['repo_id']}:")
        for name, path in plan["files"].items():
            print(f"  {name} <- {path}")
        print(f"  sha256 {plan['sha256']}; pass --upload to publish")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="deeplabv2", description="DeepLab v2 (Caffe-faithful) in PyTorch.")
    parser.add_argument("--version", action="version", version=f"deeplabv2 {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    convert = commands.add_parser("convert", help="convert .caffemodel/.pth to .safetensors")
    convert.add_argument("src", help="a .caffemodel, .pth/.pt or .safetensors file")
    convert.add_argument("dst", help="the .safetensors file to write")
    convert.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    convert.add_argument(
        "--backbone-only",
        action="store_true",
        help="keep only the backbone (e.g. the release's init.caffemodel)",
    )
    convert.set_defaults(run=_convert)

    weights = commands.add_parser("weights", help="list the pretrained weights")
    weights.add_argument("--json", action="store_true", help="print JSON")
    weights.set_defaults(run=_weights)

    publish = commands.add_parser("publish", help="convert and upload weights to the HF Hub")
    publish.add_argument("name", help="registry name, e.g. voc12")
    publish.add_argument("src", help="the release file (e.g. train_iter_20000.caffemodel)")
    publish.add_argument("--out", required=True, help="directory for model.safetensors/README.md")
    publish.add_argument("--repo-id", help="Hub repository (default: the registry's)")
    publish.add_argument("--upload", action="store_true", help="really upload (default: dry run)")
    publish.add_argument("--force", action="store_true", help="overwrite files in --out")
    publish.set_defaults(run=_publish)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("deeplabv2: interrupted", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - one clear line unless --verbose
        if args.verbose:
            raise
        print(f"deeplabv2 {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
