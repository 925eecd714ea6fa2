"""The gate's sequential seed decision: a scenario SAME, DIFFERENT or UNKNOWN at each look, seeds paired by their
initial weights (Wilcoxon signed-rank) or not (Mann–Whitney U), α split over the looks it can have (Bonferroni)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from . import compare, stats
from .gate_timing import Timing
from .record import ScenarioRecord, SeedEntry

State = Literal["same", "different", "unknown"]


DEFAULT_MAX_SEEDS = 16


SEED_STEPS = (8, 16, 32, 64, 128)  # the looks after a scenario's own seeds


@dataclass
class Judged:
    """One scenario's comparison: SAME, DIFFERENT or UNKNOWN, and why."""

    scenario: str
    state: State
    changes: list[compare.Change] = field(default_factory=list)  # outcome/error/declared/drift/shift/slowdown
    shifts: list[stats.Shift] = field(default_factory=list)
    seeds: tuple[int, int] = (0, 0)  # judged on, OLD and NEW
    paired: bool | None = None  # None: no seed statistics
    pairs_note: str = ""  # why the seeds are not pairs
    undecided: str = ""  # what more seeds should settle
    timing: Timing | None = None


def seed_entries(record: ScenarioRecord | None) -> list[SeedEntry]:
    return list(record.get("seeds") or []) if record else []


def looks(max_seeds: int, own: int) -> int:
    """How many times a scenario with `own` seeds can be judged: its own seeds, then each step up to max_seeds."""
    return 1 + sum(1 for n in _steps(max_seeds) if n > own)


def _steps(max_seeds: int) -> list[int]:
    steps = [n for n in SEED_STEPS if n < max_seeds]
    return [*steps, max_seeds]


def next_seed_count(current: int, max_seeds: int) -> int | None:
    """How many seeds the next look trains (8, 16, … up to max_seeds), or None when the budget of seeds is spent."""
    for n in _steps(max_seeds):
        if n > current:
            return n
    return None


def pairs_of(base: Sequence[SeedEntry], new: Sequence[SeedEntry]) -> tuple[list[tuple[SeedEntry, SeedEntry]], str]:
    """The seeds both ran, as matched pairs, if every one of them drew the same initial weights on both sides;
    else ([], why not)."""
    by_seed = {e["seed"]: e for e in new}
    common = [(e, by_seed[e["seed"]]) for e in base if e["seed"] in by_seed]
    if not common:
        return [], "no seed ran on both sides"
    unknown = [a["seed"] for a, b in common if not a.get("initial_weights") or not b.get("initial_weights")]
    if unknown:
        return [], "the initial weights were not recorded"
    differ = [a["seed"] for a, b in common if a.get("initial_weights") != b.get("initial_weights")]
    if differ:
        return [], f"the initial weights differ on {len(differ)} of {len(common)} seeds"
    return common, ""


def decide(
    sid: str,
    old: compare.Column,
    new: compare.Column,
    old_seeds: Sequence[SeedEntry],
    new_seeds: Sequence[SeedEntry],
    rules: compare.Rules,
    max_seeds: int,
    own_seeds: int,
) -> Judged:
    """One look at one scenario. `old`/`new` are the first run's columns (outcome, error, curves with floors);
    `old_seeds`/`new_seeds` every seed trained so far (the first run's and the added ones) for the statistics."""
    base, other = old.scenarios.get(sid), new.scenarios.get(sid)
    alpha = rules.alpha / looks(max_seeds, own_seeds)
    pairs, why = pairs_of(old_seeds, new_seeds)
    if pairs:
        shifts = stats.compare_pairs([_summary(a) for a, _ in pairs], [_summary(b) for _, b in pairs], alpha)
    else:
        shifts = stats.compare_summaries([_summary(e) for e in old_seeds], [_summary(e) for e in new_seeds], alpha)
    # the curves are the first run's; what the seeds say of them is this look's statistics, over every seed so far
    changes = [
        compare.settle(c, old, new, rules)
        for c in compare.judge(sid, old, new, rules, seed_shifts=shifts)
        if c.kind not in ("shift", "slowdown")
    ]
    judged = Judged(sid, "same", changes, seeds=(len(old_seeds), len(new_seeds)))
    decided = [c for c in changes if c.kind in ("outcome", "error", "declared") and not c.within_noise]
    if base is None or other is None or not old_seeds or not new_seeds or any(c.kind == "declared" for c in decided):
        # a declared change (an xfail whose error occurred, a skip) is the scenario's own answer: no seeds to add
        judged.state = "different" if decided else "same"
        return judged
    judged.shifts = shifts
    if pairs:
        judged.seeds = (len(pairs), len(pairs))
    judged.paired, judged.pairs_note = bool(pairs), why
    for shift in judged.shifts:
        if shift.significant and shift.large:
            word = "worse" if shift.worse else "better"
            change = compare.Change(
                sid, new.label, "shift", f"{shift.name} shifted ({word}): {shift.describe()}", shift.worse, old.label
            )
            judged.changes.append(compare.settle(change, old, new, rules))
    if decided or any(c.kind == "shift" for c in judged.changes):
        judged.state = "different"
        return judged
    open_moves = [s for s in judged.shifts if abs(s.size) >= s.threshold and not s.significant]
    drifted = [c for c in changes if c.kind == "drift" and c.worse and not c.within_noise]
    n = min(judged.seeds)
    if open_moves:
        s = open_moves[0]
        judged.undecided = f"{s.describe()}: moved by more than its threshold, not significant at α {alpha:.3g}"
    elif drifted and pairs and n < SEED_STEPS[0]:
        judged.undecided = f"the loss curve moved above its rounding floor with {n} seed(s)"
    judged.state = "unknown" if judged.undecided else "same"
    return judged


def _summary(entry: SeedEntry) -> dict[str, float]:
    summary = entry.get("summary") or {}
    return {k: float(v) for k, v in summary.items() if isinstance(v, float | int)}
