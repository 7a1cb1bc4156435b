"""The scorings of label folders (``deeplabv2 score``, :func:`deeplabv2.label_eval.score_folder`)
and its default number of reading processes, in a module that imports nothing: the command
line's help shows them without loading torch."""

from __future__ import annotations

__all__ = ["MAX_DEFAULT_WORKERS", "SCORINGS"]

#: The ways a result is scored: ignored predictions as misses, left out, or as background.
SCORINGS = ("ignored_as_wrong", "confident_only", "ignored_as_background")
#: The most reading processes used unless asked for more: PNG decoding stops scaling there.
MAX_DEFAULT_WORKERS = 8
