"""Text for people: the failure message of a scenario and a compact view of its loss curve."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .diagnose import Diagnosis
from .expect import Verdict
from .record import SeedRun
from .text import fmt

BARS = "▁▂▃▄▅▆▇█"
NONFINITE = "×"
WIDTH = 40


def sparkline(losses: Sequence[float], width: int = WIDTH) -> str:
    """Loss per epoch on a log scale, sampled to at most `width` marks; × marks a non-finite loss."""
    if not losses:
        return ""
    n = len(losses)
    picks = [losses[round(i * (n - 1) / (width - 1))] for i in range(width)] if n > width else list(losses)
    logs = [math.log10(v) for v in picks if math.isfinite(v) and v > 0]
    low, high = (min(logs), max(logs)) if logs else (0.0, 0.0)
    marks = []
    for v in picks:
        if not math.isfinite(v):
            marks.append(NONFINITE)
        elif v <= 0 or high == low:
            marks.append(BARS[0])
        else:
            marks.append(BARS[round((math.log10(v) - low) / (high - low) * (len(BARS) - 1))])
    return "".join(marks)


def curve_summary(run: SeedRun) -> str:
    """first / lowest / last loss, where training stopped and why, and the sparkline."""
    losses = run.losses
    if not losses:
        return "no epoch was trained"
    finite = [(v, e) for e, v in enumerate(losses, start=1) if math.isfinite(v)]
    lowest = f"lowest {fmt(min(finite)[0])} (epoch {min(finite)[1]})" if finite else "no finite loss"
    bad = run.first_nonfinite_epoch
    parts = [
        f"loss: first {fmt(losses[0])}, {lowest}, last {fmt(losses[-1])} (epoch {run.epochs_run})",
        f"first non-finite at epoch {bad}" if bad is not None else "",
        f"stopped: {run.stop_reason}" if run.stop_reason != "completed" else "",
    ]
    return "; ".join(p for p in parts if p)


STUCK_WORDS = {"relu": "dead (0 for every sample)", "sigmoid": "saturated", "tanh": "saturated"}


def units_summary(run: SeedRun) -> str:
    """'units at the end: dense 32 of 32 relu dead (0 for every sample), …' for layers with stuck units, else ''."""
    parts = [
        f"{u['layer']} {u['stuck']} of {u['units']} {u['activation']} {STUCK_WORDS.get(u['activation'], 'stuck')}"
        for u in run.units
        if u["stuck"]
    ]
    if not parts:
        return ""
    return "units at the end of training: " + "; ".join(parts) + " — their gradient is (almost) zero"


def failure(
    name: str, where: str, verdict: Verdict, runs: Sequence[SeedRun], diagnosis: Diagnosis | str | None = None
) -> str:
    """The message shown when a scenario fails: every seed, every expectation, the numbers, and
    (for converges / diverges / predict failures) why, from the stability diagnosis."""
    total = len(verdict.seeds)
    first_miss = next(
        (f"{c.expectation}: {c.message} (seed {s.seed})" for s in verdict.seeds for c in s.checks if not c.ok),
        "no expectation failed",
    )
    lines = [
        f"{first_miss} [{verdict.passed} of {total} seed(s) passed, min_pass_rate {verdict.min_pass_rate:.0%}]",
        f"{where}: scenario {name!r}",
    ]
    for seed_verdict, run in zip(verdict.seeds, runs, strict=False):
        lines.append(f"  seed {seed_verdict.seed}: {'pass' if seed_verdict.ok else 'FAIL'}")
        for check in seed_verdict.checks:
            lines.append(f"    {'ok  ' if check.ok else 'FAIL'} {check.expectation}: {check.message}")
        lines.append(f"    {curve_summary(run)}")
        if run.losses:
            lines.append(f"    curve (log scale, epochs 1..{run.epochs_run}): {sparkline(run.losses)}")
        stuck = units_summary(run)
        if stuck:
            lines.append(f"    {stuck}")
    if isinstance(diagnosis, str):
        lines.append(diagnosis)
    elif diagnosis is not None:
        lines.extend(diagnosis.lines())
    return "\n".join(lines)
