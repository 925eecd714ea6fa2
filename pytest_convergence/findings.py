"""From changes to decisions: the one word for the state each change is in, and findings — the changes that share a
cause (the same state, kind and direction, first appearing with the same version) — which is what a comparison, the
baseline check and the gate count and say first. Pure: no I/O, no pytest, no Keras."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .choices import ChangeKind

if TYPE_CHECKING:
    from .compare import Change

State = Literal["regression", "accepted", "declared", "moved", "improved", "inconclusive"]
# each state's one word, what it means, and its mark in the grid — the same everywhere the output says it
STATES: dict[State, tuple[str, str]] = {
    "regression": ("!", "a change for the worse, of a kind that counts (--fail-on): blocks"),
    "accepted": ("+", "would block, but an entry of the accepted-changes file accepts it: does not count"),
    "declared": ("=", "the scenario declares it for that version (skip, or an xfail whose error occurred)"),
    "moved": ("~", "a real change of a kind that does not count (--fail-on), or a scenario in one run only"),
    "improved": ("^", "a change for the better"),
    "inconclusive": ("?", "within its floor's margin, too few seeds to tell, or not comparable: not a change yet"),
}
COUNTS: tuple[State, ...] = ("regression",)


def state_of(change: Change, fail_on: Sequence[str], accepted: bool = False) -> State:
    """The state of one change, under --fail-on; `accepted`: an accepted-changes entry matches it."""
    if change.kind == "declared":
        return "declared"
    if change.within_noise:
        return "inconclusive"
    if change.worse and change.kind in fail_on:
        return "accepted" if accepted else "regression"
    if change.worse or change.kind in ("drift", "missing"):
        return "moved"
    return "improved"


@dataclass
class Finding:
    """Changes that share a cause: one state, one kind, one direction, first seen with one version."""

    state: State
    kind: ChangeKind  # as shown: a declared change shows the kind it is (error, outcome)
    worse: bool
    first: str  # the label of the first version showing it
    changes: list[Change]
    accepted_by: str = ""  # the accepted-changes entry, "FILE:LINE: where …: reason"

    @property
    def scenarios(self) -> list[str]:
        return sorted({c.scenario for c in self.changes})

    @property
    def counts(self) -> bool:
        return self.state in COUNTS

    @property
    def factors(self) -> list[float]:
        return [c.factor for c in self.changes if c.factor is not None]


def kind_shown(change: Change) -> ChangeKind:
    """A declared change shows the kind it is (an error, an outcome)."""
    if change.kind == "declared":
        return "error" if change.message.startswith("error") else "outcome"
    return change.kind


def group(changes: Iterable[Change], first_seen: Callable[[Change], str]) -> list[Finding]:
    """The findings in `changes` (each change's state already settled), counted ones first, in the order of STATES,
    then by kind and by the number of scenarios."""
    found: dict[tuple[str, ...], Finding] = {}
    for ch in changes:
        if ch.state is None:
            raise ValueError(f"change not settled: {ch}")
        direction = ch.worse if ch.kind != "slowdown" else (ch.factor or 1.0) > 1
        key = (ch.state, kind_shown(ch), str(direction), first_seen(ch), ch.accepted_by)
        if key not in found:
            found[key] = Finding(ch.state, key[1], bool(direction), key[3], [], ch.accepted_by)
        found[key].changes.append(ch)
    order = list(STATES)
    return sorted(found.values(), key=lambda f: (order.index(f.state), f.kind, -len(f.scenarios)))


def names(scenarios: Sequence[str], prefix: str = "") -> str:
    """'linear_sgd.yaml: a, b; real_models.yaml: c' — the scenarios by file, without the common folder."""
    by_file: dict[str, list[str]] = {}
    for sid in scenarios:
        file, _, name = sid[len(prefix) :].partition("::")
        by_file.setdefault(file, []).append(name)
    return "; ".join(f"{file}: {', '.join(items)}" for file, items in by_file.items())


def common_folder(ids: Sequence[str]) -> str:
    files = [sid.partition("::")[0] for sid in ids]
    if not files:
        return ""
    prefix = os.path.commonpath(files) if len(files) > 1 else os.path.dirname(files[0])
    if prefix in files:  # one file: keep its name
        prefix = os.path.dirname(prefix)
    return prefix + "/" if prefix else ""


def span(factors: Sequence[float], digits: int = 3) -> str:
    low, high = f"{min(factors):.{digits}g}", f"{max(factors):.{digits}g}"
    return f"×{low}" if low == high else f"×{low}–×{high}"
