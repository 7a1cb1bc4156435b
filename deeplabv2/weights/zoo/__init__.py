"""The weights entries of the built-in model families, as data: one module per family
(``deeplab_resnet``, ``deeplab_vgg``, named after the family's file in ``deeplabv2/models``),
each with its ``ENTRIES`` and its ``DEFAULTS`` (the full names ``pretrained=True`` loads). They
import no torch and no model: :mod:`deeplabv2.weights.registry` registers them when it is
imported, so ``deeplabv2 weights`` and ``get_weights("voc12")`` load no network code."""

from __future__ import annotations

from collections.abc import Iterator

from ..entry import Weights
from . import deeplab_resnet, deeplab_vgg

__all__ = ["entries"]


def entries() -> Iterator[tuple[Weights, bool]]:
    """Every built-in entry with whether it is its network's default, in listing order."""
    for family in (deeplab_resnet, deeplab_vgg):
        for entry in family.ENTRIES:
            yield entry, entry.name in family.DEFAULTS
