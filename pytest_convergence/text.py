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


# Characters that move a terminal's cursor, colour or clear it (ESC, CSI), end a line where a CI log reads commands
# at a line's start (GitHub's `::error …`), or reorder what a reader sees (bidirectional overrides): C0 and C1
# controls but tab and newline, DEL, line/paragraph separators, bidi embeddings/overrides/isolates, and the BOM.
UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_UNPRINTABLE_OR_NEWLINE = re.compile(f"{UNPRINTABLE.pattern}|\n")


def printable(text: object, *, lines: bool = False) -> str:
    """`text` safe to print where a terminal, a CI log or a person reads it: every character of UNPRINTABLE (and,
    unless `lines`, every newline) written as its escape (`\\x1b`, `\\n`), so untrusted text (a file name, an id
    from a results file, an exception's message) can neither colour or clear the screen nor start a line of its
    own. The one place that decides what untrusted text may do on the way out."""
    out = str(text)
    pattern = UNPRINTABLE if lines else _UNPRINTABLE_OR_NEWLINE
    return pattern.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), out)


def unprintable_in(text: str, *, lines: bool = False) -> str | None:
    """The first character of `text` that `printable` would escape, as its escape (`'\\x1b'`); None when none."""
    found = (UNPRINTABLE if lines else _UNPRINTABLE_OR_NEWLINE).search(text)
    return None if found is None else found.group().encode("unicode_escape").decode("ascii")


def one_line(text: object, limit: int = 300) -> str:
    """`text` (an exception too) on one line, whitespace collapsed, unprintable characters escaped, cut to `limit`
    characters with '...'."""
    flat = printable(" ".join(str(text).split()))
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
