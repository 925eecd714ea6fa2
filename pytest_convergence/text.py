"""Text for people, in one place: short numbers, one-line summaries of long messages, did-you-mean hints, and
TensorFlow's chatter told from real errors. Pure."""

from __future__ import annotations

import difflib
import math
import re
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


# Lines TensorFlow's C++ side writes to file descriptor 2, whatever TF_CPP_MIN_LOG_LEVEL says (absl logs before
# absl::InitializeLog ignore it; the tf.data attribute notice is logged as an error): information, not problems.
NATIVE_CHATTER = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|use_unbounded_threadpool"
    r"|cpu_feature_guard|This TensorFlow binary is optimized|rebuild TensorFlow with the appropriate compiler flags"
    r"|Could not find cuda drivers|Unable to register cu(DNN|FFT|BLAS) factory|TF-TRT Warning"
    r"|triggered tf\.function retracing"  # explain's sweep builds a model per learning rate: retracing is expected
)


def without_native_chatter(text: str) -> str:
    """`text` without TensorFlow's chatter lines (NATIVE_CHATTER); every other line kept as it was."""
    return "".join(line for line in text.splitlines(keepends=True) if not NATIVE_CHATTER.search(line))
