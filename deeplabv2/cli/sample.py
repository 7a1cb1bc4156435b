"""``deeplabv2 sample [DIR]``: copy the package's sample photo into a folder, for a first
``deeplabv2 predict`` that needs no photo of one's own (:func:`deeplabv2.data.sample_image`).

Imports no torch until it runs (the sample's module lives in :mod:`deeplabv2.data`).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from .._files import atomic_write
from .vocabulary import add_force_option

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``sample`` and its options."""
    parser = commands.add_parser(
        "sample", help="write a sample photo (astronaut.jpg, public domain) to try predict on"
    )
    parser.add_argument(
        "dir",
        metavar="DIR",
        nargs="?",
        default=".",
        type=Path,
        help="the folder to write it into (default: %(default)s, the current folder)",
    )
    add_force_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 sample``: write ``DIR/astronaut.jpg`` atomically, print its path; an
    existing file is kept unless ``--force`` (OutputExistsError, exit code 1)."""
    from ..data.samples import sample_image

    source = sample_image()
    path = atomic_write(
        args.dir / source.name, lambda tmp: shutil.copyfile(source, tmp), force=args.force
    )
    print(path)
    return 0
