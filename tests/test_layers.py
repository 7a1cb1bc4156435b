"""The package's layering: every import goes one way down the floors, no import circle exists,
and ``weights`` (I/O) imports no model code. Every import counts (the walk of
:mod:`tests.test_architecture`): at module level, inside functions, and under
``if TYPE_CHECKING:``."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import deeplabv2

from .test_architecture import imports_of as walk_imports
from .test_architecture import modules as architecture_modules

PACKAGE = Path(deeplabv2.__file__).parent
# Floors, one way down (DESIGN.md): a module may import only from its own floor or below.
FLOORS = {
    "errors": 0,
    "version": 0,
    "_files": 0.5,  # below data, whose COCO reader reads files with it
    "_pools": 0.5,  # worker processes that end with their parent: stdlib only, under data
    "scorings": 0.5,  # names only (the CLI's help shows them): imports nothing
    "data": 1,
    "interp": 1,
    "metrics": 1,
    "distributed": 1,
    "tiling": 1,
    "profiling": 1,
    "protocol": 2,
    "weights": 3,
    "crf": 4,
    "models": 4,
    "msc": 4,
    "segmenter": 5,
    "segmenter_setup": 4.5,  # below the Segmenter it builds, above crf and msc
    "pipeline": 6,
    "conversion": 5,  # weights -> safetensors, through a model family
    "export": 5,  # ONNX export of a model (and its MultiScale)
    "publish": 6,  # conversion + the Hub mixin
    "demo": 6,  # the Gradio app over the Segmenter
    "evaluate": 7,
    "label_eval": 7,
    "cli": 8,
    "__init__": 9,
    "_lazy": 0.5,  # the __init__ files' lazy re-exports: stdlib only
    "__main__": 10,
}


def modules() -> list[str]:
    names = ["deeplabv2"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="deeplabv2."):
        names.append(info.name)
    return sorted(names)


def imports_of(name: str) -> set[str]:
    """Every deeplabv2 module ``name`` imports, at any depth of its code and for type checkers
    too (the walk of :mod:`tests.test_architecture`)."""
    known = architecture_modules()
    return walk_imports(name, known[name], set(known))


def top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_weights_imports_no_model_code():
    for name in modules():
        if top(name) == "weights":
            above = {
                m
                for m in imports_of(name)
                if top(m)
                not in ("weights", "errors", "data", "version", "_files", "_lazy", "protocol")
            }
            assert not above, f"{name} imports {sorted(above)}"


def test_every_import_goes_one_way_down():
    for name in modules():
        floor = FLOORS[top(name)]
        for imported in imports_of(name):
            if top(imported) == top(name):
                continue
            assert FLOORS[top(imported)] < floor, f"{name} (floor {floor}) imports {imported}"


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle (as a path that ends where it starts), or [] if there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_no_import_circle_between_modules():
    # a package's __init__ re-exports its modules: a module that imports its own package (or
    # a module that does) closes a circle through it, which is forbidden too
    graph = {name: imports_of(name) for name in modules()}
    cycle = find_cycle(graph)
    assert not cycle, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_walk_counts_function_level_and_type_only_imports(tmp_path):
    """A circle closed only by an import inside a function and one under ``TYPE_CHECKING``
    is found and named (what ``_base -> hub_mixin -> _convert -> _base`` was)."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "base.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .convert import save\n"
    )
    (package / "convert.py").write_text("def save():\n    from . import base\n")
    (package / "leaf.py").write_text("import os\n")
    files = {f"pkg.{p.stem}": p for p in package.glob("*.py") if p.stem != "__init__"}
    files["pkg"] = package / "__init__.py"
    graph = {name: walk_imports(name, path, set(files)) for name, path in files.items()}
    assert graph == {"pkg": set(), "pkg.base": {"pkg.convert"}, "pkg.convert": {"pkg.base"},
                     "pkg.leaf": set()}  # fmt: skip
    assert find_cycle(graph) == ["pkg.base", "pkg.convert", "pkg.base"]


def test_each_module_imports_alone_in_a_fresh_interpreter():
    code = (
        "import importlib, sys\n"
        "names = sys.argv[1:]\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m.startswith('deeplabv2')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "print('ok', len(names))\n"
    )
    # leaves first: an order in which a hidden cycle would fail
    runnable = [n for n in modules() if n != "deeplabv2.__main__"]  # that one runs the CLI
    order = sorted(runnable, key=lambda n: (FLOORS[top(n)], -n.count(".")))
    run = subprocess.run(
        [sys.executable, "-c", code, *order], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == f"ok {len(order)}"
