"""The package's layering: no import cycles, and ``weights`` (I/O) imports no model code."""

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
    """Every deeplabv2 module ``name`` imports at run time, at any depth of its code (the walk
    of :mod:`tests.test_architecture`)."""
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


def test_no_cycles_between_modules():
    graph = {name: imports_of(name) - {"deeplabv2"} for name in modules()}
    # a package's __init__ re-exports its modules: an edge into the package is one into them
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt.startswith(node + "."):
                continue  # a package importing its own modules
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


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
