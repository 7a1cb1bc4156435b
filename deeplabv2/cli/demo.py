"""``deeplabv2 demo``: the web demo of :mod:`deeplabv2.demo`, served until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from typing import TextIO

from .values import int_in
from .vocabulary import add_device_option, add_weights_option

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``demo`` and its options."""
    parser = commands.add_parser("demo", help="a web demo in the browser (Gradio)")
    add_weights_option(
        parser, "ResNet-101's on VOC and on COCO-Stuff 164k; repeatable", action="append"
    )
    add_device_option(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int_in(1, 65535), default=7860, metavar="N", help="port to listen on"
    )
    parser.add_argument("--share", action="store_true", help="a public gradio.live link")
    parser.set_defaults(run=run)


#: what Gradio prints about ``launch(share=True)``, and what the demo says in its place
_GRADIO_SHARE_HINT = "share=True"
SHARE_HINT = "deeplabv2 demo: pass --share for a public gradio.live link"


class _ShareHint(io.TextIOBase):
    """Standard output through which Gradio's hint about ``launch(share=True)`` reads as the
    ``--share`` of this command; every other line passes unchanged."""

    def __init__(self, target: TextIO) -> None:
        self.target, self.line = target, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.line += text
        *lines, self.line = self.line.split("\n")
        for line in lines:
            self.target.write((SHARE_HINT if _GRADIO_SHARE_HINT in line else line) + "\n")
        return len(text)

    def flush(self) -> None:
        if self.line:  # a partial line goes out as it is (a prompt, a progress dot)
            self.target.write(self.line)
            self.line = ""
        self.target.flush()


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 demo``: serve the app until interrupted; the exit code."""
    import torch

    from ..demo import DEFAULT_WEIGHTS, build_demo, example_photos, require_gradio

    require_gradio()  # the extra, before anything else; build_demo checks the weights
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")  # auto
    with tempfile.TemporaryDirectory(prefix="deeplabv2-demo-") as tmp:
        app = build_demo(
            args.weights or DEFAULT_WEIGHTS, examples=example_photos(tmp), device=device
        )
        with contextlib.redirect_stdout(_ShareHint(sys.stdout)) as hint:
            try:
                app.launch(server_name=args.host, server_port=args.port, share=args.share)
            finally:
                hint.flush()
    return 0
