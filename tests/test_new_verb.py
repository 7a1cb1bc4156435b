"""The recipe of docs/architecture.md for a new CLI verb: a module with ``add_parser`` and
``run``, added to ``VERBS`` (here from this test module alone), writing through
``atomic_write``; and every real verb keeps to that shape and has its section in docs/cli.md."""

from __future__ import annotations

import argparse
import re
import sys
import types
from pathlib import Path

import pytest

from deeplabv2._files import atomic_write_text
from deeplabv2.cli import main

CLI = sys.modules["deeplabv2.cli.main"]  # the module (deeplabv2.cli.main is the function)
CLI_DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("greet", help="write a greeting")
    parser.add_argument("name")
    parser.add_argument("--out", type=Path, required=True, help="the file to write")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    path = atomic_write_text(args.out, f"hello, {args.name}\n", force=args.force)
    print(f"wrote {path}")
    return 0


#: What ``deeplabv2/cli/greet.py`` would hold.
GREET = types.SimpleNamespace(add_parser=_add_parser, run=_run)


def test_a_new_verb_runs_with_nothing_else_changed(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(CLI, "VERBS", (*CLI.VERBS, GREET))
    out = tmp_path / "greeting.txt"
    assert main(["greet", "you", "--out", str(out)]) == 0
    assert out.read_text() == "hello, you\n" and f"wrote {out}" in capsys.readouterr().out
    assert main(["greet", "me", "--out", str(out)]) == 1  # the shared exit codes and messages
    assert "exists; pass --force" in capsys.readouterr().err and "you" in out.read_text()
    with pytest.raises(SystemExit) as usage:
        main(["greet"])
    assert usage.value.code == 2
    assert "greet" in CLI.build_parser().format_help()


def test_every_verb_has_the_shape_and_a_section_in_cli_md() -> None:
    commands = CLI.build_parser()._subparsers._group_actions[0].choices
    documented = set(re.findall(r"^## `deeplabv2 ([\w-]+)", CLI_DOC.read_text(), re.MULTILINE))
    assert len(commands) == len(CLI.VERBS)
    for verb in CLI.VERBS:
        assert callable(verb.add_parser) and callable(verb.run), verb.__name__
    assert set(commands) == documented, set(commands) ^ documented
