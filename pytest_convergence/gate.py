"""`pytest-convergence gate OLD NEW [PATHS…]`: may NEW replace OLD? One command, one decision.

OLD and NEW are environments (a Python interpreter, a virtual environment's folder, a tox env's name, or
requirement specs installed into a throwaway environment; with `--ray`, requirement specs that Ray installs on a
cluster's nodes, where the runs train and the timing holds one node). The gate

1. runs the scenarios in both at once, isolated and with rounding floors (`run`), or starts from results files made
   that way (`--old-results/--new-results`);
2. judges each scenario with compare's rules (outcome, error, curve against its rounding floor), but the seed
   statistics **sequentially** (`decide`): where a summary moved by more than its practical threshold without
   being significant yet, or a curve moved above its floor with too few seeds, the scenario is UNKNOWN and both
   environments train more seeds of it (8, then 16, … up to `--max-seeds`), and it is judged again. Each look tests
   at α / (number of looks it can have) — Bonferroni over the looks — so adding seeds never inflates the
   false-alarm rate above α. Seeds that drew the same initial weights in both environments (the records carry a
   hash) are matched pairs and are tested with the Wilcoxon signed-rank test; otherwise Mann–Whitney U;
3. times every scenario that trained in both **side by side** (`time_side_by_side`): a worker per environment
   (`timeprobe`), alternated OLD NEW NEW OLD …, each round a fresh model trained a few epochs with `fit` on the
   numpy arrays; the ratio of the two sides' fastest epochs per round, with a Student-t interval over the rounds,
   until the interval lies above the slowdown limit, below it, or the rounds run out;
4. says the decision first: what counts (blocks), what is undecided (UNKNOWN, never counted unless
   `--fail-on-unknown`), what changed without counting.

Pure parts (`decide`, `timing_verdict`, `next_seed_count`, `parse_side`) are unit-tested; the rest runs processes.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import compare, comparison_text, results
from .accepted import Accepted
from .choices import DEFAULT_FAIL_ON, CountableKind
from .errors import GateInputError
from .findings import Finding, common_folder, group, kind_shown
from .gate_seeds import DEFAULT_MAX_SEEDS, Judged, decide, looks, next_seed_count, seed_entries
from .gate_sides import Runner, Side, parse_side, prepare
from .gate_timing import (
    DEFAULT_SLOWDOWN,
    MIN_ROUNDS,
    TIMING_CONFIDENCE,
    TIMING_EPOCHS,
    Timing,
    Worker,
    time_side_by_side,
    timing_verdict,
)
from .record import Document, ScenarioRecord
from .text import one_line

# the gate's parts, which the command line and the tests reach through this module
__all__ = [
    "DEFAULT_MAX_SEEDS",
    "DEFAULT_SLOWDOWN",
    "MIN_ROUNDS",
    "GateInputError",
    "Judged",
    "Outcome",
    "Runner",
    "Settings",
    "Side",
    "Timing",
    "decide",
    "gate",
    "looks",
    "next_seed_count",
    "parse_side",
    "render",
    "selected",
    "time_side_by_side",
    "timing_verdict",
]

DEFAULT_BUDGET_S = 1800.0  # for added seeds, after the first run
DEFAULT_TIMING_BUDGET_S = 900.0  # for timing side by side


# ---------------------------------------------------------------- the environments


# ---------------------------------------------------------------- running scenarios


# ---------------------------------------------------------------- the sequential seed decision


# ---------------------------------------------------------------- timing side by side


# ---------------------------------------------------------------- the whole gate


@dataclass
class Settings:
    paths: list[str]
    max_seeds: int = DEFAULT_MAX_SEEDS
    budget_s: float = DEFAULT_BUDGET_S
    timing_budget_s: float = DEFAULT_TIMING_BUDGET_S
    slowdown: float = DEFAULT_SLOWDOWN
    timing: bool = True
    fail_on: tuple[CountableKind, ...] = DEFAULT_FAIL_ON
    fail_on_unknown: bool = False
    alpha: float = compare.DEFAULT_ALPHA
    accepted: Accepted | None = None  # known changes, accepted in a reviewed file
    factories: bool = True
    old_results: Path | None = None
    new_results: Path | None = None
    ray: str | None = None  # local | auto | ADDRESS: both sides' runs and timing on a Ray cluster


@dataclass
class Outcome:
    """What the gate found: every scenario judged, the exit code."""

    old_label: str
    new_label: str
    judged: dict[str, Judged]
    settings: Settings
    seconds: dict[str, float] = field(default_factory=dict)

    def counted(self, change: compare.Change) -> bool:
        return change.state == "regression"

    @property
    def findings(self) -> list[Finding]:
        """The changes that share a cause, grouped (one version pair: the cause is the kind and direction)."""
        return group((c for _, j in sorted(self.judged.items()) for c in j.changes), lambda c: self.new_label)

    @property
    def unknown(self) -> list[Judged]:
        return [j for _, j in sorted(self.judged.items()) if j.state == "unknown"]

    @property
    def exit_code(self) -> int:
        if any(f.counts for f in self.findings) or (self.settings.fail_on_unknown and self.unknown):
            return 1
        return 0

    def to_json(self) -> dict[str, Any]:
        return {
            "old": self.old_label,
            "new": self.new_label,
            "exit": self.exit_code,
            "decision": "blocks" if self.exit_code else "passes",
            "seconds": self.seconds,
            "findings": [
                {
                    "state": f.state,
                    "kind": f.kind,
                    "worse": f.worse,
                    "scenarios": f.scenarios,
                    "factors": f.factors,
                    "accepted_by": f.accepted_by,
                }
                for f in self.findings
            ],
            "accepted_file": self.settings.accepted.report(self.settings.fail_on) if self.settings.accepted else [],
            "scenarios": {
                sid: {
                    "state": j.state,
                    "seeds": list(j.seeds),
                    "paired": j.paired,
                    "undecided": j.undecided,
                    "changes": [
                        {
                            "kind": c.kind,
                            "state": c.state,
                            "message": c.message,
                            "worse": c.worse,
                            "counted": self.counted(c),
                        }
                        for c in j.changes
                    ],
                    "timing": None
                    if j.timing is None
                    else {
                        "verdict": j.timing.verdict,
                        "ratio": j.timing.ratio,
                        "low": j.timing.low,
                        "high": j.timing.high if math.isfinite(j.timing.high) else None,
                        "rounds": j.timing.rounds,
                        "old_s": j.timing.old,  # each round's fastest steady epoch, OLD and NEW
                        "new_s": j.timing.new,
                        "error": j.timing.error,
                    },
                }
                for sid, j in sorted(self.judged.items())
            },
        }


def gate(old: Side, new: Side, settings: Settings, workdir: Path) -> Generator[str, None, Outcome]:
    """Lines for a person as the gate goes; returns what it found. With `settings.ray`, this process is a Ray
    driver (starting Ray here for `local`) for as long as the gate runs."""
    if settings.ray is None:
        return (yield from _gate(old, new, settings, workdir, None))
    from .cluster import driver

    for side in (old, new):
        side.check_ray()
    with driver(settings.ray, "gate --ray") as address:
        yield f"  on the Ray cluster at {address}: each side's scenarios and timing worker in its runtime environment"
        return (yield from _gate(old, new, settings, workdir, address))


def _gate(old: Side, new: Side, settings: Settings, workdir: Path, ray: str | None) -> Generator[str, None, Outcome]:
    started = time.monotonic()
    sides = [old, new] if ray else [prepare(old, workdir), prepare(new, workdir)]
    runner = Runner(workdir, settings.paths, settings.factories, ray=ray)
    rules = compare.Rules(fail_on=settings.fail_on, alpha=settings.alpha, accepted=settings.accepted)
    given = [settings.old_results, settings.new_results]
    to_run = [side for side, path in zip(sides, given, strict=True) if path is None]
    t0 = time.monotonic()
    ran = iter(runner.run_both(to_run, "1") if to_run else [])
    docs = [_read(path) if path is not None else next(ran) for path in given]
    for side, path in zip(sides, given, strict=True):
        if path is not None:
            yield f"  run 1 of {side.role}: from {path}"
    if to_run:
        yield (
            f"  run 1 of {' and '.join(s.role for s in to_run)}: {'on Ray' if ray else 'isolated'}, rounding floors "
            f"measured{', both at once' if len(to_run) == 2 else ''}: {time.monotonic() - t0:.0f} s"
        )
    columns = [compare.column(doc, Path(f"{side.role.lower()}.json")) for doc, side in zip(docs, sides, strict=True)]
    old_col, new_col = (replace(c, key=k) for c, k in zip(columns, "AB", strict=True))
    yield from _mixed(docs)
    if settings.accepted is not None:
        both = [sid for sid in old_col.scenarios if sid in new_col.scenarios and selected(sid, settings.paths)]
        settings.accepted.saw(compare.versions(old_col.environment), compare.versions(new_col.environment), both)
    ids = [sid for sid in sorted(set(old_col.scenarios) | set(new_col.scenarios)) if selected(sid, settings.paths)]
    seeds = {sid: [seed_entries(old_col.scenarios.get(sid)), seed_entries(new_col.scenarios.get(sid))] for sid in ids}
    own = {sid: max(len(a), len(b)) for sid, (a, b) in seeds.items()}
    deadline = time.monotonic() + settings.budget_s  # the budget starts after run 1

    def judge_all(which: Iterable[str]) -> dict[str, Judged]:
        return {
            sid: decide(sid, old_col, new_col, seeds[sid][0], seeds[sid][1], rules, settings.max_seeds, own[sid])
            for sid in which
        }

    judged = judge_all(ids)
    outcome = Outcome(old_col.label, new_col.label, judged, settings)
    while True:
        wanted: dict[tuple[int, int], list[str]] = {}
        for sid, j in judged.items():
            if j.state != "unknown":
                continue
            have = min(len(seeds[sid][0]), len(seeds[sid][1]))
            target = next_seed_count(have, settings.max_seeds)
            if target is not None:
                wanted.setdefault((have, target), []).append(sid)
        if not wanted or time.monotonic() >= deadline:
            break
        for (have, target), sids in sorted(wanted.items()):
            t0 = time.monotonic()
            added = runner.run_both(
                sides, f"seeds-{have}-{target}", targets=sids, seeds=(have, target), floors=False, deadline=deadline
            )
            for i, doc in enumerate(added):
                for record in doc["scenarios"]:
                    if record["id"] in seeds:
                        known = {e["seed"] for e in seeds[record["id"]][i]}
                        seeds[record["id"]][i].extend(e for e in seed_entries(record) if e["seed"] not in known)
            judged.update(judge_all(sids))
            yield (
                f"  seeds: {len(sids)} scenario(s) undecided with {have} → {target} seeds each: "
                f"{time.monotonic() - t0:.0f} s"
            )
    if settings.timing:
        jobs = {
            sid: _job(old_col.scenarios[sid], settings.factories)
            for sid in ids
            if _timeable(old_col.scenarios.get(sid)) and _timeable(new_col.scenarios.get(sid))
        }
        if jobs:
            t0 = time.monotonic()
            deadline = t0 + settings.timing_budget_s  # waiting for a node and for the workers counts too
            where = ""
            try:
                with _timing_workers(sides, runner, workdir, settings.timing_budget_s) as workers:
                    for worker in workers:
                        worker.wait_ready(max(1.0, deadline - time.monotonic()))
                    if ray:
                        where = _one_node(workers)
                    timings = time_side_by_side((workers[0], workers[1]), jobs, settings.slowdown, deadline)
            except GateInputError as exc:  # no timing: the rest of the decision stands, the timing is not counted
                timings = {sid: Timing(verdict="untimed", error=str(exc)) for sid in jobs}
            for sid, t in timings.items():
                judged[sid].timing = t
                if t.verdict in ("slower", "faster"):
                    change = compare.Change(
                        sid,
                        new_col.label,
                        "slowdown",
                        f"time per epoch of fit on the arrays {t.describe()}"
                        + (" (faster)" if t.verdict == "faster" else ""),
                        t.verdict == "slower",
                        old_col.label,
                        t.ratio,
                    )
                    judged[sid].changes.append(compare.settle(change, old_col, new_col, rules))
                    judged[sid].state = "different"
            rounds = sum(t.rounds for t in timings.values())
            yield (
                f"  timing: {len(jobs)} scenarios side by side{where} (OLD NEW, NEW OLD, …), {rounds} rounds of "
                f"{TIMING_EPOCHS} epochs of fit on the arrays per side: {time.monotonic() - t0:.0f} s"
            )
    outcome.seconds = {"total": time.monotonic() - started}
    return outcome


def _one_node(workers: Sequence[Any]) -> str:
    """' on one node of the cluster (…)'; GateInputError where the actors are not on one node (the placement group
    packs them strictly: this is its check)."""
    nodes = {worker.node for worker in workers}
    if len(nodes) != 1:
        raise GateInputError(f"the timing workers are on different nodes of the cluster ({', '.join(sorted(nodes))})")
    return f" on one node of the cluster ({next(iter(nodes))[:12]})"


@contextlib.contextmanager
def _timing_workers(sides: Sequence[Side], runner: Runner, workdir: Path, wait_s: float) -> Iterator[list[Any]]:
    """A timing worker per side, ready to be alternated: a `timeprobe` process in each environment here, or on a
    Ray cluster an actor in each side's runtime environment, both on one node (`cluster.timing_workers`)."""
    if runner.ray is not None:
        from .cluster import timing_workers

        with timing_workers([(side, side.requirements) for side in sides], wait_s) as on_ray:
            yield on_ray
        return
    env = runner.environ()
    workers: list[Worker] = []
    try:
        for side in sides:
            workers.append(Worker(side, env, workdir / f"{side.role.lower()}-timing.log"))
        yield workers
    finally:
        for w in workers:
            w.close()


def selected(sid: str, paths: Sequence[str]) -> bool:
    """Whether a scenario id (FILE::NAME, relative to the working directory) is one of PATHS: that scenario, its
    file, or a folder above it (results files given with --old-results may hold more)."""
    file = os.path.normpath(sid.partition("::")[0])
    for path in paths:
        wanted, _, name = path.partition("::")
        wanted = os.path.normpath(wanted)
        if name:
            if file == wanted and sid.partition("::")[2] == name:
                return True
        elif wanted == "." or file == wanted or file.startswith(wanted + os.sep):
            return True
    return False


def _read(path: Path) -> Document:
    try:
        return results.read(path)
    except (OSError, ValueError) as exc:
        raise GateInputError(f"{path}: cannot read results: {exc}") from None


def _mixed(docs: Sequence[Document]) -> Iterable[str]:
    """A warning for runs made without what the gate's judgement needs (floors, isolation)."""
    for role, doc in zip(("OLD", "NEW"), docs, strict=True):
        scenarios = [s for s in doc["scenarios"] if s.get("seeds")]
        without = [s["id"] for s in scenarios if not (s.get("runtime") or {}).get("noise_floor")]
        if without:
            yield (
                f"  warning: {role}'s results have no rounding floors for {len(without)} scenario(s): their curves "
                "are judged against a fixed 1 % tolerance"
            )


def _timeable(record: ScenarioRecord | None) -> bool:
    return bool(
        record and record.get("seeds") and record["outcome"] in ("passed", "failed") and not record.get("error")
    )


def _job(record: ScenarioRecord, factories: bool) -> dict[str, Any]:
    file = str(record.get("file") or record["id"].partition("::")[0])
    return {
        "file": str(Path(file).resolve()),
        "display": file,
        "root": str(Path.cwd()),
        "name": record.get("name") or record["id"].partition("::")[2],
        "epochs": TIMING_EPOCHS,
        "factories": factories,
    }


# ---------------------------------------------------------------- what a person reads


def render(outcome: Outcome) -> list[str]:
    """The decision and the findings first (one sentence each), then what is undecided, then every change."""
    findings = outcome.findings
    unknown = outcome.unknown
    counting = [f for f in findings if f.counts]
    accepted = [f for f in findings if f.state == "accepted"]
    verdict = "BLOCKS" if outcome.exit_code else "PASSES"
    why = (
        f"{len(counting)} finding{' counts' if len(counting) == 1 else 's count'}"
        if counting
        else "nothing that counts changed"
    )
    if accepted:
        why += f"; {len(accepted)} accepted"
    if outcome.settings.fail_on_unknown and unknown:
        why += f"; {len(unknown)} scenario(s) undecided (--fail-on-unknown)"
    prefix = common_folder(sorted(outcome.judged))
    lines = [f"Decision: {verdict} — {why} (exit {outcome.exit_code})"]
    lines += comparison_text.finding_lines(
        findings,
        lambda f: "on NEW",
        prefix,
        timed=f"fit on the arrays, timed side by side; the whole {TIMING_CONFIDENCE:.0%} interval beyond "
        f"×{outcome.settings.slowdown:g}",
    )
    if outcome.settings.accepted is not None:
        lines += outcome.settings.accepted.report(outcome.settings.fail_on)
    if unknown:
        counted = "counted" if outcome.settings.fail_on_unknown else "not counted"
        lines.append(
            f"Inconclusive scenarios (UNKNOWN: the seeds allowed did not decide them; {counted}): {len(unknown)}:"
        )
        for j in unknown:
            lines.append(f"  {j.scenario}: after {j.seeds[0]} vs {j.seeds[1]} seeds: {j.undecided}")
    untimed = [
        (sid, j.timing)
        for sid, j in sorted(outcome.judged.items())
        if j.timing and j.timing.verdict in ("unknown", "untimed")
    ]
    if untimed:
        lines.append(f"Timing undecided or not done (not counted): {len(untimed)} scenario(s):")
        for sid, t in untimed:
            lines.append(f"  {sid}: {t.describe()}")
    same = sum(1 for j in outcome.judged.values() if j.state == "same")
    paired = sum(1 for j in outcome.judged.values() if j.paired)
    seeds = sum(j.seeds[0] for j in outcome.judged.values())
    lines.append(
        f"{len(outcome.judged)} scenarios: {same} the same, "
        f"{sum(1 for j in outcome.judged.values() if j.state == 'different')} different, {len(unknown)} undecided; "
        f"{seeds} seeds per side in all, {paired} scenario(s) with seeds paired by their initial weights"
    )
    # the first screen folded within the terminal's 120 columns; the details one line each, for grep
    lines = [wrapped for line in lines for wrapped in comparison_text.fold(line, comparison_text.WIDTH)]
    every = [(sid, c) for sid, j in sorted(outcome.judged.items()) for c in j.changes]
    if every:
        lines += ["", "Details: every change, NEW against OLD"]
        for sid, c in every:
            lines.append(f"  [{kind_shown(c)}, {c.state}] {sid}: {one_line(c.message, 4000)}")
    return lines


def default_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="convergence-gate-"))
