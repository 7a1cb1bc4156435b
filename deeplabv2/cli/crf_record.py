"""The record of ``deeplabv2 crf``'s ``--out``: the settings its labels were made with, checked
when a run resumes a folder and written before a run makes labels."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from .._files import atomic_write_text
from ..crf import PseudoLabelRecipe

__all__ = ["RECORD", "check_record", "write_record"]

#: the file in ``--out`` that records the settings its labels were made with
RECORD = ".deeplabv2-crf.json"


def _settings(args: argparse.Namespace, chosen: PseudoLabelRecipe) -> dict[str, Any]:
    """What decides the outputs (the record of ``--out``), as JSON-able values."""
    return {
        "recipe": chosen.as_dict(),
        "min_confidence": args.min_confidence,
        "num_classes": args.num_classes,
        "save_probs": args.save_probs,
        "png": "palette" if args.palette else "grayscale",
    }


def _flat(values: object, prefix: str = "") -> dict[str, object]:
    """Nested dicts as one level with dotted keys (``recipe.params.bi_w``)."""
    if not isinstance(values, dict):
        return {prefix.rstrip("."): values}
    return {
        k: v for key, value in values.items() for k, v in _flat(value, f"{prefix}{key}.").items()
    }


def _changes(args: argparse.Namespace, chosen: PseudoLabelRecipe) -> Optional[list[str]]:
    """How this run's settings differ from the record of ``--out`` (None: no record)."""
    path = Path(args.out) / RECORD
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))["settings"]
        if not isinstance(old, dict):
            raise ValueError("no settings")
    except (OSError, ValueError, TypeError, KeyError) as error:
        if args.force:
            return [f"unreadable record ({error})"]
        raise ValueError(
            f"{path}: unreadable record of this folder's settings ({error}); pass "
            "--force to redo every image, or give another --out"
        ) from None
    old.setdefault("png", "palette")  # what runs before the record said so wrote
    new = json.loads(json.dumps(_settings(args, chosen)))  # tuples as lists, as read back
    before, now = _flat(old), _flat(new)
    return [f"{k}: {before.get(k)} -> {now.get(k)}" for k in sorted(set(before) | set(now))
            if before.get(k) != now.get(k)]  # fmt: skip


def check_record(args: argparse.Namespace, chosen: PseudoLabelRecipe, made: int) -> None:
    """ValueError naming the differences if ``--out`` holds labels of these images made with
    other settings (its record); a folder without a record (older runs) is resumed as it is."""
    if args.force or not made:
        return
    changed = _changes(args, chosen)
    path = Path(args.out) / RECORD
    if changed:
        raise ValueError(
            f"{args.out} holds pseudo-labels made with other settings ({made} of these images "
            f"done; {path}): {'; '.join(changed)}. Pass --force to redo every image with the new "
            "settings, or give another --out"
        )


def write_record(
    args: argparse.Namespace, chosen: PseudoLabelRecipe, labels: list[Path], made: int
) -> None:
    """The settings of this run into ``--out`` (a fresh folder, ``--force``, or the same
    settings); not over outputs of older runs without a record, whose settings are unknown.

    With ``--force`` and other settings than the folder's, the labels of the images to redo go
    first: a run killed before redoing them all then leaves no label made with the old settings
    under the new record (the next run redoes them instead of taking them as done)."""
    path = Path(args.out) / RECORD
    if args.force and made and _changes(args, chosen) != []:
        for label in labels:  # the labels of the images to redo
            label.unlink(missing_ok=True)
    if args.force or not made or path.is_file():
        settings = _settings(args, chosen)
        text = json.dumps({"made_by": "deeplabv2 crf", "settings": settings}, indent=2)
        atomic_write_text(path, text + "\n", force=True)
