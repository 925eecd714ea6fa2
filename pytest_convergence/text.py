"""Text for people, in one place: short numbers, one-line summaries of long messages, did-you-mean hints. Pure."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable


def fmt(value: float) -> str:
    """A loss or metric value, short: 12.5, 0.0001234, 3.2e+07, nan, inf."""
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def one_line(text: object, limit: int = 300) -> str:
    """`text` (an exception too) on one line, whitespace collapsed, cut to `limit` characters with '...'."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def did_you_mean(name: str, known: Iterable[str], n: int = 3, cutoff: float = 0.6) -> str:
    """ "; did you mean 'x' or 'y'?" for the closest of `known`, or "" when none is close."""
    close = difflib.get_close_matches(name, list(known), n=n, cutoff=cutoff)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
