"""The code blocks of the Markdown documentation, and the markers that say how to run them.

A fenced block in ``python`` or ``bash`` runs; any other fence (``text``, none) is output or a
synopsis. An HTML comment on the line just above a block (invisible on GitHub and in the docs
site) changes that:

- ``<!-- docs-test: skip REASON -->``: the block is not run; REASON says why (a GPU, the
  network, a dataset, a Hugging Face login). Every skip must give one.
- ``<!-- docs-test: slow REASON -->``: the block runs only in the slow tests
  (``python -m pytest -m slow``), e.g. an ONNX export that takes minutes on a CPU.
- ``<!-- docs-test: setup`` ... ``-->``: Python run before the next block, in the same
  namespace (to define e.g. the ``image`` and ``probs`` a snippet takes as given); it may
  stand above a skip or slow line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

RUNNABLE = ("python", "bash")
_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")
_SKIP = re.compile(r"^<!-- docs-test: (?P<kind>skip|slow) (?P<reason>\S.*?) -->$")
_SETUP = "<!-- docs-test: setup"


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: Optional[str] = None  # the reason it does not run
    slow: Optional[str] = None  # the reason it runs only in the slow tests
    setup: str = ""  # Python run before it

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def _setup(lines: list[str], end: int) -> dict[str, str]:
    """``{"setup": code}`` if a setup comment ends at index ``end``, else nothing."""
    if end < 0 or lines[end].strip() != "-->":
        return {}
    start = end - 1
    while start >= 0 and not lines[start].startswith("<!--"):
        start -= 1
    if start < 0 or lines[start].strip() != _SETUP:
        return {}
    return {"setup": "\n".join(lines[start + 1 : end]) + "\n"}


def _marker(lines: list[str], fence: int) -> dict[str, str]:
    """The markers written just above the fence at index ``fence``: ``{"skip"|"slow": reason}``
    and/or ``{"setup": code}`` (a setup comment above a skip or slow line still applies)."""
    above = fence - 1
    if above < 0:
        return {}
    marker = _SKIP.match(lines[above].strip())
    if marker:
        return {marker["kind"]: marker["reason"], **_setup(lines, above - 1)}
    if "docs-test" in lines[above] and lines[above].strip() != _SETUP:
        raise ValueError(f"line {above + 1}: a docs-test marker that is not understood")
    return _setup(lines, above)


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{path}:{index + 1}: a code block that is never closed")
        indent = len(opening["indent"])
        code = "\n".join(line[indent:] for line in lines[index + 1 : end]) + "\n"
        blocks.append(Block(path, index + 1, opening["lang"], code, **_marker(lines, index)))
        index = end + 1
    return blocks
