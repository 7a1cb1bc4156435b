"""``deeplabv2 publish``: convert a release file and publish it on the Hugging
Face Hub (:func:`deeplabv2.publish.publish`)."""

from __future__ import annotations

import argparse

from .vocabulary import add_force_option

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``publish`` and its options."""
    parser = commands.add_parser("publish", help="convert and upload weights to the HF Hub")
    parser.add_argument(
        "name", metavar="NAME", help="registry name, e.g. voc12 or deeplab_v2_vgg16.voc12"
    )
    parser.add_argument(
        "src", metavar="SRC", help="the release file (e.g. train_iter_20000.caffemodel)"
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for model.safetensors and README.md"
    )
    parser.add_argument(
        "--repo-id", metavar="OWNER/REPO", help="Hub repository (default: the registry's)"
    )
    parser.add_argument("--upload", action="store_true", help="really upload (default: dry run)")
    add_force_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 publish``; the exit code."""
    from ..publish import publish

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
