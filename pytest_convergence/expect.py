"""Expectations: SeedRuns → verdicts with messages a person can act on. Pure functions, no Keras.

Epochs are counted from 1. "Loss" is the epoch's training loss as Keras reports it (the mean
over that epoch's batches).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .record import TIME_LIMIT, SeedRun
from .spec import Converges, Diverges, Expect, MetricCheck, Predict, Raises, Stable
from .text import fmt

if TYPE_CHECKING:
    from .diagnose import Diagnosis

EXPLAINED = ("converges", "diverges", "predict")  # failures the stability diagnosis can explain
EXPECTATIONS_DECIDED = "expectations decided"  # a stop_reason: training stopped early, the verdict being known


@dataclass(frozen=True)
class Check:
    """One expectation judged on one seed."""

    expectation: str  # converges | diverges | predict | metric <name>
    ok: bool
    message: str


@dataclass(frozen=True)
class SeedVerdict:
    seed: int
    checks: tuple[Check, ...]
    summary: dict[str, float] = field(default_factory=dict)  # see `summarize`: what compare's seed statistics use

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


@dataclass(frozen=True)
class Verdict:
    """A scenario's verdict over all its seeds."""

    seeds: tuple[SeedVerdict, ...]
    min_pass_rate: float

    @property
    def passed(self) -> int:
        return sum(s.ok for s in self.seeds)

    @property
    def pass_rate(self) -> float:
        return self.passed / len(self.seeds) if self.seeds else 0.0

    @property
    def ok(self) -> bool:
        # a tiny slack so that e.g. 1 of 3 seeds meets min_pass_rate 0.333
        return bool(self.seeds) and self.pass_rate >= self.min_pass_rate - 1e-9


def stop_reason(expect: Expect, losses: Sequence[float]) -> str | None:
    """Why training may stop after the latest epoch, or None to go on.

    Called after every epoch, so it looks only at the first and the latest loss: an earlier
    epoch that decided everything would already have stopped training.
    """
    if not losses:
        return None
    if not math.isfinite(losses[-1]):
        return "non-finite loss"  # the weights are NaN/inf from here on; nothing can change
    if expect.predict is not None or expect.metric:
        return None  # these need the fully trained model
    epoch, last = len(losses), losses[-1]
    if expect.converges is not None:
        c = expect.converges
        if c.within_epochs is None:
            return None
        if last < c.loss_below or epoch >= c.within_epochs:
            return EXPECTATIONS_DECIDED
    if expect.diverges is not None:
        d = expect.diverges
        if _grown(losses[0], last, d.growth_factor) or epoch >= d.within_epochs:
            return EXPECTATIONS_DECIDED
    return None


def judge_seed(
    expect: Expect, run: SeedRun, timeout_s: float | None = None, diagnosis: Diagnosis | None = None
) -> SeedVerdict:
    verdict = _judge_seed(expect, run, timeout_s, diagnosis)
    return SeedVerdict(verdict.seed, verdict.checks, summarize(expect, run, verdict.ok))


def summarize(expect: Expect, run: SeedRun, ok: bool) -> dict[str, float]:
    """One seed's numbers that a version change could move, for comparing their distributions over seeds:
    final_loss, lowest_loss, converges_epoch / diverges_epoch (when the expectation was decided, the epoch),
    prediction_error (largest |prediction − target|), metric:<name> (final value), passed (1 or 0)."""
    out: dict[str, float] = {"passed": 1.0 if ok else 0.0}
    losses = run.losses
    if losses:
        out["final_loss"] = _worst_if_nan(losses[-1])
        out["lowest_loss"] = min((v for v in losses if math.isfinite(v)), default=math.inf)
    if expect.converges is not None:
        limit = expect.converges.within_epochs or len(losses)
        hit = next((e for e, v in enumerate(losses[:limit], start=1) if v < expect.converges.loss_below), None)
        if hit is not None:
            out["converges_epoch"] = float(hit)
    if expect.diverges is not None and losses:
        d = expect.diverges
        grown = (
            e
            for e, v in enumerate(losses[: d.within_epochs], start=1)
            if not math.isfinite(v) or _grown(losses[0], v, d.growth_factor)
        )
        hit = next(grown, None)
        if hit is not None:
            out["diverges_epoch"] = float(hit)
    if expect.predict is not None and run.predictions:
        _, ys = expect.predict.points()
        got = np.asarray(run.predictions, dtype=np.float64)
        if got.shape == ys.shape:
            errors = np.abs(got - ys)
            out["prediction_error"] = float(np.max(np.where(np.isfinite(errors), errors, np.inf)))
    for name, values in run.metrics.items():
        if values:
            out[f"metric:{name}"] = values[-1]
    return out


def _worst_if_nan(value: float) -> float:
    return math.inf if math.isnan(value) else value


def _judge_seed(
    expect: Expect, run: SeedRun, timeout_s: float | None = None, diagnosis: Diagnosis | None = None
) -> SeedVerdict:
    if run.stop_reason == TIME_LIMIT:
        last = f", last loss {fmt(run.losses[-1])}" if run.losses else ""
        limit = f" of {timeout_s:g} s" if timeout_s else ""
        return SeedVerdict(
            run.seed,
            (
                Check(
                    "timeout",
                    False,
                    f"the time limit{limit} was reached after {run.epochs_run} of {run.epochs_planned} epochs{last}",
                ),
            ),
        )
    if expect.raises is not None:
        return SeedVerdict(run.seed, (_raises(expect.raises, run),))
    checks: list[Check] = []
    if expect.converges is not None:
        checks.append(_converges(expect.converges, run))
    if expect.diverges is not None:
        checks.append(_diverges(expect.diverges, run))
    if expect.predict is not None:
        checks.append(_predict(expect.predict, run))
    checks.extend(_metric(m, run) for m in expect.metric)
    if expect.stable is not None:
        checks.append(_stable(expect.stable, diagnosis))
    return SeedVerdict(run.seed, tuple(checks))


def judge(
    expect: Expect, runs: Sequence[SeedRun], timeout_s: float | None = None, diagnosis: Diagnosis | None = None
) -> Verdict:
    """Every seed's checks. `diagnosis` (the scenario's stability analysis) is needed for `stable`."""
    return Verdict(tuple(judge_seed(expect, r, timeout_s, diagnosis) for r in runs), expect.min_pass_rate)


def explained_seed(verdict: Verdict) -> int | None:
    """The first seed whose converges / diverges / predict check failed: the one to diagnose."""
    for seed in verdict.seeds:
        if any(not c.ok and c.expectation in EXPLAINED for c in seed.checks):
            return seed.seed
    return None


def _stable(s: Stable, d: Diagnosis | None) -> Check:
    if d is None:
        return Check("stable", False, "no stability diagnosis was made")
    kind = "exact" if d.exact else ("advisory" if d.method == "exact" else "estimated")
    parts, ok = [], True
    if s.lr_below_bound is not None:
        hit = d.lr_below_bound == s.lr_below_bound
        ok &= hit
        wanted = "below" if s.lr_below_bound else "at or above"
        parts.append(
            f"lr {fmt(d.learning_rate)} is ×{d.ratio:.4g} the {kind} bound {fmt(d.bound)} "
            f"({'as expected' if hit else 'expected ' + wanted + ' it'})"
        )
    if s.bound is not None:
        hit = math.isclose(d.bound, s.bound, rel_tol=s.rel_tol)
        ok &= hit
        parts.append(
            f"{kind} bound {d.bound_formula} = {fmt(d.bound)}, expected {fmt(s.bound)} ± {s.rel_tol:.0%} "
            f"({'ok' if hit else 'MISS'})"
        )
    return Check("stable", ok, "; ".join(parts))


def _grown(first: float, loss: float, factor: float) -> bool:
    return math.isfinite(first) and first > 0 and loss > factor * first


def _lowest(losses: Sequence[float]) -> str:
    finite = [(v, e) for e, v in enumerate(losses, start=1) if math.isfinite(v)]
    if not finite:
        return "no finite loss"
    v, e = min(finite)
    return f"lowest {fmt(v)} at epoch {e}"


def _short_run(run: SeedRun, needed: int) -> str:
    if run.epochs_run < needed and run.stop_reason == "completed":
        return f"; only {run.epochs_run} epochs were trained (epochs: {run.epochs_planned})"
    return ""


def _converges(c: Converges, run: SeedRun) -> Check:
    losses = run.losses
    if not losses:
        return Check("converges", False, "no epoch was trained")
    bad = run.first_nonfinite_epoch
    if c.within_epochs is None:
        last, epoch = losses[-1], len(losses)
        if bad is not None:
            return Check(
                "converges",
                False,
                f"expected final loss < {fmt(c.loss_below)}, but the loss became {fmt(losses[bad - 1])} "
                f"at epoch {bad} ({_lowest(losses)})",
            )
        if last < c.loss_below:
            return Check("converges", True, f"final loss {fmt(last)} < {fmt(c.loss_below)} at epoch {epoch}")
        return Check(
            "converges",
            False,
            f"final loss {fmt(last)} at epoch {epoch} is not below {fmt(c.loss_below)} ({_lowest(losses)})",
        )
    window = losses[: c.within_epochs]
    for epoch, loss in enumerate(window, start=1):
        if loss < c.loss_below:
            return Check(
                "converges",
                True,
                f"loss {fmt(loss)} < {fmt(c.loss_below)} at epoch {epoch} (within {c.within_epochs})",
            )
    extra = f"; non-finite from epoch {bad}" if bad is not None and bad <= c.within_epochs else ""
    return Check(
        "converges",
        False,
        f"loss did not get below {fmt(c.loss_below)} within {c.within_epochs} epochs "
        f"({_lowest(window)}{extra}){_short_run(run, c.within_epochs)}",
    )


def _diverges(d: Diverges, run: SeedRun) -> Check:
    losses = run.losses
    if not losses:
        return Check("diverges", False, "no epoch was trained")
    first = losses[0]
    window = losses[: d.within_epochs]
    for epoch, loss in enumerate(window, start=1):
        if not math.isfinite(loss):
            return Check("diverges", True, f"loss became {fmt(loss)} at epoch {epoch} (within {d.within_epochs})")
        if _grown(first, loss, d.growth_factor):
            return Check(
                "diverges",
                True,
                f"loss grew to {fmt(loss)} at epoch {epoch}, over {d.growth_factor:g}× the first "
                f"epoch's {fmt(first)} (within {d.within_epochs})",
            )
    top = max(range(len(window)), key=lambda i: window[i])
    return Check(
        "diverges",
        False,
        f"loss stayed finite and under {d.growth_factor:g}× the first epoch's {fmt(first)} through "
        f"epoch {len(window)}: largest {fmt(window[top])} at epoch {top + 1}, last {fmt(window[-1])}"
        f"{_short_run(run, d.within_epochs)}",
    )


def _predict(p: Predict, run: SeedRun) -> Check:
    xs, ys = p.points()
    got = np.asarray(run.predictions, dtype=np.float64)
    if got.shape != ys.shape:
        return Check(
            "predict",
            False,
            f"the model gives {got.shape[-1] if got.ndim == 2 else '?'} output(s) per point; "
            f"expect.predict.y gives {ys.shape[1]}",
        )
    parts, ok = [], True
    for x_row, y_row, g_row in zip(xs, ys, got, strict=False):
        args = ", ".join(fmt(v) for v in x_row)
        for y, g in zip(y_row, g_row, strict=False):
            tol = p.tolerance(float(y))
            hit = bool(math.isfinite(g) and abs(g - y) <= tol)
            ok &= hit
            parts.append(f"f({args}) = {fmt(g)}, expected {fmt(y)} ± {fmt(tol)} {'ok' if hit else 'MISS'}")
    return Check("predict", ok, "; ".join(parts))


def _raises(r: Raises, run: SeedRun) -> Check:
    wanted = r.error + (f" matching {r.match!r}" if r.match else "")
    if run.error is None:
        return Check("raises", False, f"expected {wanted}, but the run raised nothing")
    if r.error not in run.error_types:
        return Check("raises", False, f"expected {wanted}, but got {run.error}")
    if not r.matches(run.error):
        return Check("raises", False, f"expected {wanted}, but the message was: {run.error}")
    return Check("raises", True, f"raised as expected: {run.error}")


def _metric(m: MetricCheck, run: SeedRun) -> Check:
    name = f"metric {m.name}"
    values = run.losses if m.name == "loss" else run.metrics.get(m.name, [])
    if not values:
        return Check(name, False, f"Keras reported no {m.name!r} values; it reported {sorted(run.metrics)}")
    wanted = " and ".join(
        t for t in (m.above is not None and f"> {fmt(m.above)}", m.below is not None and f"< {fmt(m.below)}") if t
    )

    def meets(value: float) -> bool:
        return math.isfinite(value) and (m.above is None or value > m.above) and (m.below is None or value < m.below)

    if m.within_epochs is not None:  # per epoch: the bound holds at some epoch up to within_epochs
        window = values[: m.within_epochs]
        hit = next((e for e, v in enumerate(window, start=1) if meets(v)), None)
        if hit is not None:
            return Check(
                name, True, f"{m.name} {fmt(window[hit - 1])} {wanted} at epoch {hit} (within {m.within_epochs})"
            )
        finite = [v for v in window if math.isfinite(v)]
        best = (max(finite) if m.above is not None else min(finite)) if finite else math.nan
        return Check(
            name,
            False,
            f"{m.name} was not {wanted} within {m.within_epochs} epochs (best {fmt(best)}, last {fmt(window[-1])} "
            f"at epoch {len(window)}){_short_run(run, m.within_epochs)}",
        )
    value, epoch = values[-1], len(values)
    ok = meets(value)
    verb = "is" if ok else "is not"
    return Check(name, ok, f"final {m.name} {fmt(value)} (epoch {epoch}) {verb} {wanted}")
