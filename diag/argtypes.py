"""argparse value types shared by every subcommand (``diag`` and ``adapters`` CLIs).

Each raises ``argparse.ArgumentTypeError`` so argparse prints one usage line and exits 2.
"""

from __future__ import annotations

import argparse
import math


def floats(text: str) -> list[float]:
    """Comma-separated numbers, at least one."""
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one number")
    return vals


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'")
    return v


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got '{text}'")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1."""
    v = nonneg_int(text)
    if v == 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return v
