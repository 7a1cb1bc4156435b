"""The ``deeplabv2`` command: the parser of every verb, the dispatch and the exit codes."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn, Optional

from ..version import __version__
from . import coco_masks, convert, crf, demo, export, predict, publish, sample, score, weights
from . import eval as eval_  # the verb's module, not the builtin
from .vocabulary import DefaultsFormatter

__all__ = ["VERBS", "build_parser", "main"]

#: The verbs' modules, in the order ``deeplabv2 --help`` lists them.
VERBS = (predict, eval_, score, crf, coco_masks, convert, weights, export, demo, publish, sample)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:  # every verb shows its defaults
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # one line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``deeplabv2``: global options, then one subparser per verb."""
    parser = _Parser(prog="deeplabv2", description="DeepLab v2 (Caffe-faithful) in PyTorch.")
    parser.add_argument("--version", action="version", version=f"deeplabv2 {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, title="commands", metavar="COMMAND"
    )
    for verb in VERBS:
        verb.add_parser(commands)
    return parser


class _Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so that ``finally`` blocks clean up as on Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def _interruption(error: Optional[BaseException]) -> Optional[BaseException]:
    """The Ctrl-C or SIGTERM behind ``error``, if any: a signal's exception raised inside
    compiled code (numba's CRF) comes back as the ``__cause__`` of a ``SystemError``."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (KeyboardInterrupt, _Terminated)):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _stopped(interruption: BaseException) -> int:
    """Report an interruption; its exit code."""
    if isinstance(interruption, KeyboardInterrupt):
        print("deeplabv2: interrupted", file=sys.stderr)
        return 130
    print("deeplabv2: terminated", file=sys.stderr)
    return 143


def _one_line(
    message: Warning | str, category: type[Warning], *args: object, **kwargs: object
) -> str:
    return f"deeplabv2: warning: {message}\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code.

    0 ok, 1 failure, 2 usage error, 130 interrupted (Ctrl-C), 141 stdout closed by its reader
    (``| head``), 143 terminated (SIGTERM). An interrupted or terminated run removes its
    temporary files and leaves finished outputs.
    ``deeplabv2`` alone prints the usage and the verbs with their one-line help on stdout and
    returns 1, as ``git`` alone does (nothing was done; not a usage error's terse line).
    """
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()
        return 1
    formatwarning = warnings.formatwarning
    warnings.formatwarning = _one_line  # a deprecated option's line, while parsing
    try:
        args = parser.parse_args(argv)
    finally:
        warnings.formatwarning = formatwarning
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    if not args.verbose:  # a warning is one line, like an error (no source line)
        warnings.formatwarning = _one_line
    try:
        return args.run(args)
    except (KeyboardInterrupt, _Terminated) as interruption:
        return _stopped(interruption)
    except BrokenPipeError:  # the reader left (`deeplabv2 weights | head`): stop quietly
        with contextlib.suppress(OSError, ValueError):  # no second error at exit's flush
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a tool stopped by a closed pipe
    except Exception as error:  # noqa: BLE001 - one clear line unless --verbose
        cause = _interruption(error)
        if cause is not None:
            return _stopped(cause)
        if args.verbose:
            raise
        print(f"deeplabv2 {args.command}: error: {error}", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = formatwarning
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
