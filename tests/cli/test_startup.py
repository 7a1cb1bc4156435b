"""The instant command line: ``--help`` of every verb, ``deeplabv2`` alone and ``deeplabv2
weights`` load no torch, and ``import deeplabv2`` loads no CLI module and nothing heavy, while
every public name still resolves."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from deeplabv2.cli.main import VERBS, build_parser

#: run in a fresh interpreter: the command line with argv, then what it loaded
_RUN = (
    "import json, sys\n"
    "from deeplabv2.cli.main import main\n"
    "try:\n"
    "    code = main(sys.argv[1:])\n"
    "except SystemExit as stop:\n"
    "    code = stop.code\n"
    "loaded = [m for m in ('torch', 'numpy', 'PIL', 'deeplabv2.models') if m in sys.modules]\n"
    "print(json.dumps([code, loaded]), file=sys.stderr)\n"
)


def run_cli(*argv: str) -> tuple[int, list[str], str]:
    """Exit code, the heavy modules loaded and stdout of ``deeplabv2 argv`` in a fresh
    interpreter."""
    import json

    done = subprocess.run(
        [sys.executable, "-c", _RUN, *argv], capture_output=True, text=True, timeout=120
    )
    code, loaded = json.loads(done.stderr.strip().splitlines()[-1])
    return code, loaded, done.stdout


def verb_names() -> list[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    names = list(commands.choices)
    assert len(names) == len(VERBS)  # every verb module registered one subparser
    return names


@pytest.mark.parametrize(
    "argv",
    [["--help"], *([verb, "--help"] for verb in verb_names()), ["weights"],
     ["weights", "--json"], ["weights", "--details", "voc12"]],
    ids=lambda argv: " ".join(argv),
)  # fmt: skip
def test_help_and_the_weights_listing_load_no_torch(argv):
    code, loaded, out = run_cli(*argv)
    assert code == 0, out
    assert out.strip()
    assert "torch" not in loaded and "deeplabv2.models" not in loaded, loaded


def test_deeplabv2_alone_prints_the_verbs_and_exits_1():
    code, loaded, out = run_cli()
    assert code == 1 and "torch" not in loaded
    assert out.startswith("usage: deeplabv2")
    for verb in verb_names():
        assert re.search(rf"\n    {verb}\s+\w", out), verb  # each verb with its one-line help


def test_import_deeplabv2_loads_no_cli_and_no_torch():
    code = (
        "import sys, deeplabv2\n"
        "print(sorted(m for m in sys.modules if m.startswith('deeplabv2.cli') or m == 'torch'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_public_name_resolves_and_dir_lists_it():
    import deeplabv2
    import deeplabv2.crf
    import deeplabv2.data
    import deeplabv2.weights

    for package in (deeplabv2, deeplabv2.crf, deeplabv2.data, deeplabv2.weights):
        listed = dir(package)
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
            assert name in listed, f"{name} not in dir({package.__name__})"
    assert deeplabv2.models.deeplab_v2_resnet101.__name__ == "deeplab_v2_resnet101"
    assert "deeplab_v2_resnet101" in deeplabv2.list_models()  # the families registered
    with pytest.raises(AttributeError, match="no_such_name"):
        deeplabv2.no_such_name  # noqa: B018


def test_a_wrong_model_name_is_a_usage_error_naming_the_networks(capsys):
    from deeplabv2.cli.main import main

    with pytest.raises(SystemExit) as stop:
        main(["weights", "--model", "resnet"])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert "invalid choice: 'resnet'" in error and "deeplab_v2_resnet101" in error
