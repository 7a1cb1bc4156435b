"""The package's import structure (docs/architecture.md): the layers import one way down
(``tests/test_layers.py`` checks the floors and that no import circle exists). Read from the
source with ``ast``: every import counts, also those inside functions and those for type
checkers only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "deeplabv2"

#: What a lower layer must never import (module-name prefixes).
FORBIDDEN = {
    "deeplabv2.protocol": ("models", "crf", "segmenter", "cli", "weights", "pipeline"),
    "deeplabv2.weights": ("models", "crf", "segmenter", "cli", "pipeline", "evaluate"),
    "deeplabv2.data": ("models", "crf", "segmenter", "cli", "weights", "pipeline", "protocol"),
    "deeplabv2._files": ("models", "crf", "segmenter", "cli", "weights", "data", "protocol"),
    "deeplabv2.errors": ("models", "crf", "segmenter", "cli", "weights", "data", "protocol"),
    "deeplabv2.models": ("crf", "segmenter", "cli", "pipeline", "evaluate"),
    "deeplabv2.crf": ("models", "segmenter", "cli", "weights", "pipeline", "evaluate"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (a package counts as its ``__init__``):
    every import statement, at module level, inside functions, and under
    ``if TYPE_CHECKING:`` (a circle of type-only imports is still a circle of the design, and
    one that a type checker or ``typing.get_type_hints`` walks)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names]
            if any(target not in known for target in targets):  # a name, not only submodules
                targets.append(base)
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, set(known)) for name, path in known.items()}


def test_the_walk_sees_the_imports(graph):
    """The walk itself works: known edges are found (so the checks below can fail)."""
    assert "deeplabv2.protocol" in graph["deeplabv2.models._builder"]
    assert "deeplabv2.models.deeplab_resnet" in graph["deeplabv2.models"]
    assert "deeplabv2.weights.registry" in graph["deeplabv2.weights"]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_import_no_higher_one(graph, layer):
    bad = []
    for name, targets in graph.items():
        if name != layer and not name.startswith(layer + "."):
            continue
        for target in targets:
            for forbidden in FORBIDDEN[layer]:
                full = f"deeplabv2.{forbidden}"
                if target == full or target.startswith(full + "."):
                    bad.append(f"{name} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_module_is_very_long():
    """Modules stay small (one purpose each); only the one below, for its reason, is allowed
    more."""
    limits = {
        # the download child loads it by path, alone (no package imports): one file on purpose
        "deeplabv2.weights.remote_zip": 520,
    }
    long = [
        f"{name}: {n} lines"
        for name, path in modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > limits.get(name, 420)
    ]
    assert not long, "\n".join(long)


def code_lines(function: ast.AST) -> int:
    """Lines of a function without its docstring."""
    body = function.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and len(body) > 1:
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 2  # + the signature's first line


def test_no_function_is_very_long():
    """Functions stay short: at most about 60 lines of code (docstrings not counted), unless
    their docstring says why (``long:``)."""
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                reason = "long:" in (ast.get_docstring(node) or "")
                if code_lines(node) > 60 and not reason:
                    long.append(f"{name}.{node.name}: {code_lines(node)} lines")
    assert not long, "\n".join(long)


def test_the_line_count_skips_only_the_docstring():
    source = 'def f():\n    """Doc\n    string."""\n' + "    x = 1\n" * 70
    assert code_lines(ast.parse(source).body[0]) == 71
