"""How two records of one scenario are judged, for `compare.judge`: a declared change, the loss curve against each
seed's rounding floor (drift), the time per epoch against each run's machine calibration (slowdown), and whether
the two runs trained alike enough for either to say anything. Pure: records in, numbers and sentences out."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import stats, timing
from .record import ScenarioRecord, relative_difference

if TYPE_CHECKING:  # compare defines these and calls this module
    from .compare import Change, Rules

# A curve counts as moved only beyond this as well (besides compare.DEFAULT_FLOOR_MARGIN × its floor): more than
# float32 rounding accumulated over hundreds of epochs in other kernels can explain. The shipped linear scenarios
# (floor 0: one ulp on the initial weights changes nothing) differ by up to 3.6e-5 between TF 2.15 and 2.21.
FLOOR_MINIMUM = 1e-3


# The auto sentinel times 20 epochs in one short window, which a busy machine can slow throughout while the
# calibration's fastest run stays quick: measured in CI (TF 2.15 rerun beside TF 2.21, 2 cores), the same version's
# sentinel-timed ratios reached ×3.24. Slowdowns timed on the sentinel count above twice the usual limit.
SENTINEL_MARGIN = 2.0


MIN_EPOCHS_TIMED = 20  # steady epochs (all seeds) a run needs before its fast decile says anything


def _declared(base: ScenarioRecord, new: ScenarioRecord) -> str | None:
    """Why a difference between these two records is what the scenario declares, or None."""
    for record, side in ((new, "here"), (base, "in the version compared with")):
        declared = record.get("declared")
        if not isinstance(declared, dict):
            continue
        kind = declared.get("kind")
        if (kind == "xfail" and record["outcome"] == "xfailed") or (kind == "skip" and record["outcome"] == "skipped"):
            what = f"error {record['error']}" if record.get("error") else record["outcome"]
            reason = f": {declared['reason']}" if declared.get("reason") else ""
            return f"{what} {side}, declared ({kind} where {declared.get('where', '?')}{reason})"
    return None


def _summaries(record: ScenarioRecord) -> list[dict[str, float]]:
    """Each seed's summary; records written before summaries existed give final and lowest loss."""
    out = []
    for seed in record.get("seeds", []):
        summary = seed.get("summary")
        if not isinstance(summary, dict):
            losses = [v for v in seed.get("losses", []) if isinstance(v, float | int)]
            summary = {"final_loss": losses[-1], "lowest_loss": min(losses)} if losses else {}
        out.append({k: float(v) for k, v in summary.items() if isinstance(v, float | int)})
    return out


def _drift(
    base: ScenarioRecord, new: ScenarioRecord, s: Rules, shifts: list[stats.Shift], change: Any
) -> Iterable[Change]:
    """Curve drift over the seeds both ran, judged against each seed's rounding floor."""
    if not _fed_alike(base, new):  # other batch orders: the curves cannot be compared
        yield change(
            "drift",
            f"trained other batches ({_feed(base)} → {_feed(new)}): curves not compared",
            False,
            noise=True,
        )
        return
    settings = [(k, _setting(base, k), _setting(new, k)) for k in SETTINGS]
    # a setting a record does not state (written before the plugin recorded it) is not taken to differ
    moved = [f"{k} {_said(a)} → {_said(b)}" for k, a, b in settings if a != b and a is not None and b is not None]
    if moved:  # another precision, or XLA's fused kernels: other rounding by construction; seed statistics still count
        yield change(
            "drift", f"trained under different settings ({', '.join(moved)}): curves not compared", False, noise=True
        )
        return
    worst: tuple[float, ...] | None = None  # (excess, rel, seed, epoch, a, b, tolerance, floor)
    floors: list[float] = []
    new_seeds = {x["seed"]: x for x in new.get("seeds", [])}
    for seed in base.get("seeds", []):
        other = new_seeds.get(seed["seed"])
        if other is None:
            continue
        measured = [f for f in (seed.get("rounding_floor"), other.get("rounding_floor")) if isinstance(f, float | int)]
        tolerance = max(s.floor_margin * max(measured), FLOOR_MINIMUM) if measured else s.loss_rtol
        if measured:
            floors.append(max(measured))
        for epoch, (a, b) in enumerate(zip(seed.get("losses", []), other.get("losses", []), strict=False), start=1):
            rel = relative_difference(a, b)
            excess = rel / tolerance if tolerance > 0 else math.inf
            if rel > 0 and (worst is None or excess > worst[0]):
                worst = (excess, rel, seed["seed"], epoch, a, b, tolerance, max(measured, default=0.0))
    if worst is None:
        return
    excess, rel, seed_no, at, a, b, limit, floor = worst
    where = f"{_pct(rel)} at epoch {at:.0f} (seed {seed_no:.0f}: {_num(a)} → {_num(b)})"
    final = next((x for x in shifts if x.key == "final_loss"), None)
    if not floors:
        if excess > 1:
            yield change(
                "drift",
                f"loss curve moved {where}, over the {_pct(s.loss_rtol)} tolerance; no rounding floor was measured "
                "(record with --convergence-noise-floor to tell rounding chaos from change)",
                True,
            )
        return
    if excess > 1:
        yield change(
            "drift",
            f"loss curve moved {where}, above its limit {_pct(limit)} (×{s.floor_margin:g} its rounding floor "
            f"{_pct(floor)}, at least {_pct(FLOOR_MINIMUM)}); {_seed_statement(final)}",
            True,
        )
    elif rel > s.loss_rtol:  # smaller differences within the floor are not worth a line
        yield change(
            "drift",
            f"loss curve moved {where}, within its limit {_pct(limit)} (×{s.floor_margin:g} its rounding floor "
            f"{_pct(floor)}, at least {_pct(FLOOR_MINIMUM)}); {_seed_statement(final)}",
            False,
            noise=True,
        )


def _seed_statement(final: stats.Shift | None) -> str:
    if final is None:
        return "final losses identical"
    if final.verdict == "shifted":
        return f"final loss shifted ({final.describe()})"
    if not final.enough_seeds:
        return f"too few seeds to compare final losses ({final.describe()})"
    if abs(final.size) < final.threshold:
        return f"final-loss distributions equivalent ({final.describe()})"
    return f"no significant shift in final loss, but more seeds would tell ({final.describe()})"


def _slowdown(base: ScenarioRecord, new: ScenarioRecord, s: Rules) -> tuple[float, float, str] | None:
    """(ratio of the time per epoch, the smallest ratio that counts here, the explanation); None when the two
    runs fed fit differently (numpy vs the dataset path: their times say nothing about the versions). Where both
    runs timed `fit` on numpy arrays in the auto sentinel, those epochs are compared, whatever path trained.

    Noise only ever adds time, so both sides use their fast end: the 10th percentile of the steady epoch times
    and the fastest calibration run. The ratio of those is the version's cost in units of this machine. How
    far each run's calibration runs spread (max/min) says how disturbed the machine was; the product of the
    two spreads, if larger than `s.slowdown`, is the smallest ratio that counts."""
    (before, short_b), (after, short_n) = _numpy_p10(base), _numpy_p10(new)
    margin, source = (SENTINEL_MARGIN, "sentinel's fit on arrays, ") if short_b or short_n else (1.0, "")
    if before is None or after is None:  # neither timed fit on the arrays: their training epochs, if fed alike
        if _fit_input(base) != _fit_input(new):
            return None
        before, after = _epoch_p10(base), _epoch_p10(new)
        margin, source = 1.0, ""
    if before is None or after is None or before <= 0:
        return None  # too few epochs to time (e.g. a divergence decided at epoch 12)
    cal_b, cal_n = _calibration(base), _calibration(new)
    if cal_b and cal_n:
        ratio = (after / min(cal_n)) / (before / min(cal_b))
        noise = timing.spread(cal_b) * timing.spread(cal_n)
        limit = max(s.slowdown, noise) * margin
        text = (
            f"({_ms(before)} → {_ms(after)}, {source}fast decile; calibration {_ms(min(cal_b))} → "
            f"{_ms(min(cal_n))}, spread ×{noise:.2f}; counts above ×{limit:.2g})"
        )
    else:
        ratio, limit = after / before, s.slowdown * margin
        text = f"({_ms(before)} → {_ms(after)}, {source}fast decile; uncalibrated; counts above ×{limit:.2g})"
    return ratio, limit, text


def _numpy_p10(record: ScenarioRecord) -> tuple[float | None, bool]:
    """(the fast decile of the run's epochs of `fit` on numpy arrays — what a user's fit costs —, whether they are
    the auto sentinel's short window): the sentinel's where it ran, else the training's where it fit on the arrays."""
    summary = (record.get("timing") or {}).get("numpy_epochs")
    if summary and summary["n"] >= MIN_EPOCHS_TIMED:
        return summary["p10_s"], True
    return (_epoch_p10(record) if _fit_input(record) == "numpy" else None), False


def _epoch_p10(record: ScenarioRecord) -> float | None:
    summary = timing.epoch_summary([s.get("epoch_seconds", []) for s in record.get("seeds", [])])
    return summary["p10_s"] if summary and summary["n"] >= MIN_EPOCHS_TIMED else None


def _calibration(record: ScenarioRecord) -> list[float]:
    samples = (record.get("timing") or {}).get("calibration_s") or []
    return [float(x) for x in samples if isinstance(x, float | int) and x > 0]


# what a scenario trains under besides the versions (runtime in the record): a comparison axis of its own
SETTINGS = ("dtype_policy", "jit_compile")


def _setting(record: ScenarioRecord, key: str) -> object:
    """The setting as it ran: jit_compile as Keras resolved it (the seeds'; None where no seed says), dtype_policy
    as the record states it (float32 in records written before it was recorded)."""
    if key == "jit_compile":
        ran = {seed.get("jit_compile") for seed in record.get("seeds", [])} - {None}
        return ran.pop() if len(ran) == 1 else None
    return (record.get("runtime") or {}).get(key, "float32")


def _said(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _fit_input(record: ScenarioRecord) -> str:
    return str((record.get("runtime") or {}).get("fit_input", "numpy"))


def _fit_batches(record: ScenarioRecord) -> bool:
    """Whether the run trained the batches `fit` makes of the numpy arrays, in its order (on the arrays, or on the
    fast path the sentinel proved equal); records written before the key say it only for numpy."""
    runtime = record.get("runtime") or {}
    return bool(runtime.get("fit_batches", _fit_input(record) == "numpy"))


def _fed_alike(base: ScenarioRecord, new: ScenarioRecord) -> bool:
    """Whether two runs' curves can be compared: both trained fit's own batches, or both the same unchecked path as
    built since the fast path is Keras's own adapter (records that say `fit_batches`; an older fast path shuffled
    with an order of its own)."""
    if _fit_batches(base) and _fit_batches(new):
        return True
    current = all("fit_batches" in (r.get("runtime") or {}) for r in (base, new))
    return current and not _fit_batches(base) and not _fit_batches(new) and _fit_input(base) == _fit_input(new)


def _feed(record: ScenarioRecord) -> str:
    return "fit's batches" if _fit_batches(record) else f"fit input {_fit_input(record)}, unchecked"


def _pct(value: float) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value:.2%}" if value >= 1e-4 else f"{value:.1e}"


def _num(value: float) -> str:
    return f"{value:.4g}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms"
