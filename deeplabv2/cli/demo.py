"""``deeplabv2 demo``: the web demo of :mod:`deeplabv2.demo`, served until interrupted."""

from __future__ import annotations

import argparse
import tempfile

from .values import int_in

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``demo`` and its options."""
    parser = commands.add_parser("demo", help="a web demo in the browser (Gradio)")
    parser.add_argument(
        "--weights", action="append", help="weights name or file to offer (repeatable)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int_in(1, 65535), default=7860, help="port (7860)")
    parser.add_argument("--share", action="store_true", help="a public gradio.live link")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 demo``: serve the app until interrupted; the exit code."""
    from ..demo import DEFAULT_WEIGHTS, build_demo, example_photos, require_gradio

    require_gradio()  # the extra, before anything else; build_demo checks the weights
    with tempfile.TemporaryDirectory(prefix="deeplabv2-demo-") as tmp:
        app = build_demo(
            args.weights or DEFAULT_WEIGHTS, examples=example_photos(tmp), device=args.device
        )
        app.launch(server_name=args.host, server_port=args.port, share=args.share)
    return 0
