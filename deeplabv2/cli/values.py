"""Option value types with their ranges: an out-of-range value is a usage error (exit 2, one
line naming the option's rule), caught by the parser before anything runs."""

from __future__ import annotations

import argparse
import math
from typing import Callable, Optional

__all__ = ["float_in", "int_in"]


def _rule(low: Optional[float], high: Optional[float]) -> str:
    if high is None:
        return f">= {low}"
    if low is None:
        return f"<= {high}"
    return f"in [{low}, {high}]"


def int_in(low: Optional[int] = None, high: Optional[int] = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[low, high]`` (None: unbounded on that side)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_rule(low, high)}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def float_in(low: Optional[float] = None, high: Optional[float] = None) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in ``[low, high]`` (None: unbounded on that side)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_rule(low, high)}, got {value:g}")
        return value

    parse.__name__ = "number"
    return parse
