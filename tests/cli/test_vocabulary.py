"""One vocabulary across the verbs (deeplabv2/cli/vocabulary.py): walks every verb's parser and
checks that an option several verbs share has one name and one meaning everywhere, that every
option and positional has help, that every default is shown, and that the old names of renamed
options still work with one warning line."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import NamedTuple, Optional

import pytest

import deeplabv2.demo
from deeplabv2.cli import main
from deeplabv2.cli.demo import SHARE_HINT
from deeplabv2.cli.main import build_parser
from deeplabv2.data.classes import CLASS_LISTS

ROOT = Path(__file__).resolve().parents[2]


class Rule(NamedTuple):
    """What an option means in every verb that has it: words its help holds, and its default:
    a value (shown in the help), or one of ``"flag"`` (store_true, off), ``"stated"`` (None
    in the namespace, the help says what that means), ``"required"``; several joined by ``|``."""

    meaning: str
    default: str
    metavar: Optional[str] = None  # a regular expression; None: not checked


#: the options several verbs share
SHARED = {
    "--device": Rule("where to run: auto is a CUDA GPU if there is one, else the CPU", "auto"),
    "--workers": Rule("processes reading and decoding", "stated", "N"),
    "--crf-workers": Rule(
        "processes running the CRF on the CPU (0: in this process", "stated", "N"
    ),  # fmt: skip
    "--crf-params": Rule("the CRF's settings: a JSON parameter file", "stated", r"FILE\|PRESET"),
    "--crf-backend": Rule("auto: torch on a GPU", "auto"),
    "--classes": Rule(
        "the class names: " + ", ".join(CLASS_LISTS),
        "voc|stated",
        re.escape("|".join(CLASS_LISTS)) + r"\|FILE",
    ),  # fmt: skip
    "--force": Rule("overwrite outputs that exist", "flag"),
    "--quiet": Rule("no progress bar", "flag"),
    "--weights": Rule("a registry name", "voc12|required|stated", r"NAME\|FILE"),
    "--model": Rule("network", "stated"),
    "--dialect": Rule("the code base a .pth file comes from", "stated", "NAME"),
    "--out": Rule("", "required|stated", "DIR|FILE"),
    "--max-pixels": Rule("refuse larger images", "25000000|stated", "N"),
}
#: (verb, old name) -> the new name; the old one is hidden and warns
ALIASES = {("crf", "--preset"): "--crf-params", ("crf", "--workers"): "--crf-workers"}


def verbs() -> dict[str, argparse.ArgumentParser]:
    """Every verb's parser, by name."""
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def rendered(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The action's help as ``--help`` prints it (before wrapping)."""
    return parser._get_formatter()._expand_help(action)


def visible(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a for a in parser._actions
        if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
    ]  # fmt: skip


def follows(parser: argparse.ArgumentParser, action: argparse.Action, rule: str) -> bool:
    text = rendered(parser, action)
    for kind in rule.split("|"):
        if kind == "flag" and action.default is False and action.nargs == 0:
            return True
        if kind == "required" and action.required:
            return True
        if kind == "stated" and action.default is None and "default:" in text:
            return True
        if action.default is not None and kind == str(action.default):
            return f"(default: {kind}" in text
    return False


def test_the_walk_sees_every_verb():
    from deeplabv2.cli.main import VERBS

    assert len(verbs()) == len(VERBS) >= 10


@pytest.mark.parametrize("name", sorted(verbs()))
def test_shared_options_have_one_name_and_one_meaning(name):
    parser = verbs()[name]
    for action in visible(parser):
        for option in action.option_strings:
            rule = SHARED.get(option)
            if rule is None:
                continue
            where = f"deeplabv2 {name} {option}"
            assert rule.meaning in rendered(parser, action), where
            assert follows(parser, action, rule.default), f"{where}: default {action.default!r}"
            if rule.metavar is not None:
                assert re.fullmatch(rule.metavar, action.metavar or ""), where
            if option == "--device":  # auto: None, which Ranks.device resolves
                assert action.type(action.default) is None and action.type("cuda:1") == "cuda:1"


@pytest.mark.parametrize("name", sorted(verbs()))
def test_every_option_has_help_and_shows_its_default(name):
    parser = verbs()[name]
    for action in visible(parser):
        where = f"deeplabv2 {name} {action.option_strings or action.metavar}"
        text = rendered(parser, action)
        assert action.help and len(text) > 8, where
        if action.default not in (None, False):
            assert f"default: {action.default}" in text, where
        if not action.option_strings:  # positionals: upper case, as the docs write them
            assert re.fullmatch(r"[A-Z][A-Z_]*", action.metavar or ""), where
        elif isinstance(action.metavar, str):  # placeholders upper case, values as typed
            parts = action.metavar.split("|")
            assert all(re.fullmatch(r"[A-Z][A-Z_/]*|[a-z0-9][a-z0-9:N_-]*", p) for p in parts), (
                where
            )
        elif action.nargs != 0 and action.choices is None:
            assert action.metavar is None and action.dest.upper() in ("HOST",), where


def test_the_help_text_of_force_is_the_same_everywhere():
    helps = {
        rendered(parser, action)
        for parser in verbs().values()
        for action in parser._actions
        if "--force" in action.option_strings
    }
    assert helps == {"overwrite outputs that exist"}


@pytest.mark.parametrize(("verb", "old"), sorted(ALIASES))
def test_a_deprecated_name_warns_once_and_sets_the_new_one(verb, old):
    new = ALIASES[verb, old]
    parser = verbs()[verb]
    assert old not in parser.format_help()  # hidden
    value = "irn" if new == "--crf-params" else "3"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = parser.parse_args(["a", "b", "--out", "c", old, value, old, value])
        expected = parser.parse_args(["a", "b", "--out", "c", new, value])
    assert [str(w.message) for w in caught] == [f"{old} is deprecated, use {new}"]
    dest = new.lstrip("-").replace("-", "_")
    assert getattr(args, dest) == getattr(expected, dest) == (value if value == "irn" else 3)


def test_a_deprecated_name_is_one_line_on_stderr(tmp_path):
    """Through ``deeplabv2``'s one-line warning format, in a real process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
           os.environ.get("PYTHONPATH")]))}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "deeplabv2.cli", "crf", str(tmp_path / "missing"), str(tmp_path),
         "--out", str(tmp_path / "out"), "--preset", "irn", "--workers", "0"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    lines = result.stderr.splitlines()
    assert lines[:2] == [
        "deeplabv2: warning: --preset is deprecated, use --crf-params",
        "deeplabv2: warning: --workers is deprecated, use --crf-workers",
    ], result.stderr
    assert result.returncode == 1 and "is not a folder" in lines[2]  # the run went on


class _FakeApp:
    """Stands for the Gradio app: its launch prints what Gradio prints."""

    def __init__(self) -> None:
        self.launched: dict = {}

    def launch(self, **kwargs) -> None:
        self.launched = kwargs
        print("* Running on local URL:  http://127.0.0.1:7860")
        print("\nTo create a public link, set `share=True` in `launch()`.")
        print("partial", end="")


def test_the_demo_names_share_instead_of_gradios_launch_argument(monkeypatch, capsys):
    app = _FakeApp()
    built: dict = {}

    def build(weights, examples, device):
        built.update(weights=weights, device=device)
        return app

    monkeypatch.setattr(deeplabv2.demo, "require_gradio", lambda: None)
    monkeypatch.setattr(deeplabv2.demo, "example_photos", lambda folder: [])
    monkeypatch.setattr(deeplabv2.demo, "build_demo", build)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["demo", "--port", "7861"]) == 0
    out = capsys.readouterr().out
    assert "share=True" not in out and "launch()" not in out
    assert out == f"* Running on local URL:  http://127.0.0.1:7860\n\n{SHARE_HINT}\npartial"
    assert app.launched == {"server_name": "127.0.0.1", "server_port": 7861, "share": False}
    assert built["device"] == "cpu"  # auto without a GPU
