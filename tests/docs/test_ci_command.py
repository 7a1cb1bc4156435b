"""README.md's test command is the one CI runs (``.ci/run``), and the ``quick`` subset it
documents names tests that exist."""

from __future__ import annotations

from .blocks import read_blocks
from .conftest import REPO


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    tests = readme.index("## Tests\n")
    blocks = [b for b in read_blocks(REPO / "README.md") if b.lang == "bash"]
    commands = [b.code.strip() for b in blocks if readme.count("\n", 0, tests) < b.line]
    assert "python -m pytest" in commands and "python -m pytest -m quick" in commands, commands
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert [line for line in ci if "pytest" in line and not line.startswith("#")] == [
        "python -m pytest"
    ]


def test_the_quick_subset_names_tests_that_exist() -> None:
    """A renamed or removed test file or test would silently leave the subset: name it."""
    from ..conftest import QUICK_MODULES, QUICK_TESTS

    files: dict[str, list] = {}
    for path in (REPO / "tests").rglob("test_*.py"):
        files.setdefault(path.name, []).append(path)
    assert not QUICK_MODULES - files.keys(), QUICK_MODULES - files.keys()
    for entry in QUICK_TESTS:
        module, _, test = entry.partition("::")
        sources = [p.read_text(encoding="utf-8") for p in files.get(module, [])]
        assert any(f"def {test}(" in source for source in sources), entry
    assert '"quick: ' in (REPO / "pyproject.toml").read_text(encoding="utf-8")
