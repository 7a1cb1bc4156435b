"""Every ``python`` and ``bash`` block of README.md and docs/*.md runs, offline, in a sandbox
(see ``conftest.py``), unless a marker above it says why it cannot (see ``blocks.py``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .blocks import RUNNABLE, Block, read_blocks
from .conftest import REPO
from .counts import COUNTS

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _run_python(block: Block, namespace: dict) -> None:
    if block.setup:
        exec(compile(block.setup, f"{block.where} (setup)", "exec"), namespace)
    exec(compile(block.code, block.where, "exec"), namespace)


def _run_bash(block: Block, root: Path, env: dict) -> None:
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block.code],
        cwd=root, env={**os.environ, **env}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(
            f"{block.where}: exit {result.returncode}\n{block.code}\n"
            f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_examples(page, docs_sandbox, monkeypatch):
    root, env = docs_sandbox
    monkeypatch.chdir(root)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    namespace: dict = {"__name__": "__docs__"}
    for block in read_blocks(page):
        if block.lang not in RUNNABLE:
            continue
        if block.skip is not None:
            COUNTS["skipped"].append((block.where, block.skip))
            continue
        if block.lang == "python":
            _run_python(block, namespace)
        else:
            _run_bash(block, root, env)
        COUNTS["executed"] += 1


def test_markers_are_read(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-test: skip needs a CUDA GPU -->\n```python\nx = 1\n```\n"
        "<!-- docs-test: setup\ny = 2\n-->\n```python\nprint(y)\n```\n```text\nout\n```\n"
    )
    skipped, setup, text = read_blocks(page)
    assert (skipped.skip, skipped.code) == ("needs a CUDA GPU", "x = 1\n")
    assert (setup.skip, setup.setup, setup.lang) == (None, "y = 2\n", "python")
    assert text.lang == "text" and text.line == 10


def test_a_marker_without_a_reason_is_refused(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-test: skip -->\n```bash\nfalse\n```\n")
    with pytest.raises(ValueError, match="not understood"):
        read_blocks(page)
