"""Every ``python`` and ``bash`` block of README.md and docs/*.md runs, offline, in a sandbox
(see ``conftest.py``), unless a marker above it says why it cannot (see ``blocks.py``). Blocks
marked slow run in ``test_page_examples_slow`` (``python -m pytest -m slow``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .blocks import RUNNABLE, Block, read_blocks
from .conftest import REPO
from .counts import COUNTS

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _run_bash(block: Block, root: Path, env: dict) -> None:
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block.code],
        cwd=root, env={**os.environ, **env}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(
            f"{block.where}: exit {result.returncode}\n{block.code}\n"
            f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        )


def run_page(page: Path, sandbox: tuple[Path, dict], slow: bool) -> None:
    """Run the page's blocks in order (Python blocks share one namespace, like a notebook)."""
    root, env = sandbox
    namespace: dict = {"__name__": "__docs__"}
    for block in read_blocks(page):
        if block.lang not in RUNNABLE:
            continue
        if block.skip is not None or (block.slow is not None and not slow):
            COUNTS["skipped"].append((block.where, block.skip or f"slow: {block.slow}"))
            continue
        if block.setup:
            exec(compile(block.setup, f"{block.where} (setup)", "exec"), namespace)
        if block.lang == "python":
            exec(compile(block.code, block.where, "exec"), namespace)
        else:
            _run_bash(block, root, env)
        COUNTS["executed"] += 1


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_examples(page, docs_sandbox):
    run_page(page, docs_sandbox, slow=False)


SLOW_PAGES = [p for p in PAGES if any(b.slow for b in read_blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", SLOW_PAGES, ids=lambda p: p.name)
def test_page_examples_slow(page, docs_sandbox):
    run_page(page, docs_sandbox, slow=True)


def test_markers_are_read(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-test: skip needs a CUDA GPU -->\n```python\nx = 1\n```\n"
        "<!-- docs-test: setup\ny = 2\n-->\n```python\nprint(y)\n```\n```text\nout\n```\n"
        "<!-- docs-test: slow an export of minutes -->\n```bash\ntrue\n```\n"
    )
    skipped, setup, text, slow = read_blocks(page)
    assert (skipped.skip, skipped.code) == ("needs a CUDA GPU", "x = 1\n")
    assert (setup.skip, setup.setup, setup.lang) == (None, "y = 2\n", "python")
    assert text.lang == "text" and text.line == 11
    assert (slow.slow, slow.skip) == ("an export of minutes", None)


def test_a_marker_without_a_reason_is_refused(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-test: skip -->\n```bash\nfalse\n```\n")
    with pytest.raises(ValueError, match="not understood"):
        read_blocks(page)


def test_a_failing_block_fails_its_page(tmp_path, docs_sandbox):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n```\n```bash\ndeeplabv2 predict missing.jpg --out s/\n```\n")
    with pytest.raises(pytest.fail.Exception, match="page.md:4: exit 1"):
        run_page(page, docs_sandbox, slow=False)
