"""Several results files (one per TensorFlow/Keras version) → the changes between them, judged so that the gate is
red only for real changes: outcome and error changes unless the scenario declares them, curve drift only beyond
the curve's measured rounding floor, seed statistics with a test and an effect size, slowdowns relative to the
machine's calibration and beyond its measured noise. Rendering lives in `render`.

Reads JSON written by `results.write` (and an accepted-changes YAML file); never imports pytest, Keras or the
scenario machinery (a contract in pyproject.toml, checked by `tox -e lint`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from . import results, stats, timing
from .accepted import Accepted, crosses, inside
from .choices import DEFAULT_FAIL_ON, ChangeKind, CountableKind
from .errors import CompareInputError
from .findings import Finding, State, group, state_of
from .record import Document, Environment, ScenarioRecord, relative_difference

DEFAULT_LOSS_RTOL = 0.01  # curve tolerance where no rounding floor was measured
DEFAULT_FLOOR_MARGIN = 10.0  # a curve counts as moved when it moved this many times its rounding floor …
# … and more than float32 rounding accumulated over hundreds of epochs in other kernels can explain: the shipped
# linear scenarios (floor 0: one ulp on the initial weights changes nothing) differ by up to 3.6e-5 between
# TF 2.15 and 2.21
FLOOR_MINIMUM = 1e-3
DEFAULT_SLOWDOWN = 3.0  # the smallest calibrated slowdown that counts, before the noise widens it (see README)
# The auto sentinel times 20 epochs in one short window, which a busy machine can slow throughout while the
# calibration's fastest run stays quick: measured in CI (TF 2.15 rerun beside TF 2.21, 2 cores), the same version's
# sentinel-timed ratios reached ×3.24. Slowdowns timed on the sentinel count above twice the usual limit.
SENTINEL_MARGIN = 2.0
MIN_EPOCHS_TIMED = 20  # steady epochs (all seeds) a run needs before its fast decile says anything
DEFAULT_ALPHA = 0.05
FAILING_OUTCOMES = ("failed", "error", "xpassed")
ENV_SHOWN = ("python", "numpy", "protobuf", "ml_dtypes", "platform", "cpu", "cpus")


@dataclass(frozen=True)
class Column:
    """One results file: the runs of one TensorFlow/Keras version."""

    label: str
    path: Path
    environment: Environment
    scenarios: dict[str, ScenarioRecord]  # by id
    collection_errors: dict[str, str]  # file → message
    key: str = ""  # a short name for grids: A, B, C, …

    @property
    def sort_key(self) -> tuple[Any, ...]:
        env = self.environment
        return (_version(env.get("tensorflow")), env.get("keras_package") != "keras", _version(env.get("keras")))

    @property
    def package(self) -> str:
        return str(self.environment.get("keras_package") or "keras")


@dataclass(frozen=True)
class Change:
    scenario: str
    column: str  # the label of the version that changed
    kind: ChangeKind
    message: str
    worse: bool  # a change for the worse (an improvement or a change within the noise is reported, never counted)
    against: str = ""  # the label of the version compared with
    factor: float | None = None  # slowdowns: the calibrated ratio
    within_noise: bool = False  # shown for information: a curve within its rounding floor, too few seeds to tell
    state: State | None = None  # settled once judged (settle): the one word for what it means
    accepted_by: str = ""  # the accepted-changes entry that accepts it, "FILE:LINE: where …: reason"


@dataclass(frozen=True)
class Rules:
    """How changes are judged: thresholds and what counts (`--fail-on`)."""

    loss_rtol: float = DEFAULT_LOSS_RTOL
    slowdown: float = DEFAULT_SLOWDOWN
    fail_on: tuple[CountableKind, ...] = DEFAULT_FAIL_ON
    alpha: float = DEFAULT_ALPHA
    floor_margin: float = DEFAULT_FLOOR_MARGIN
    accepted: Accepted | None = None  # known changes, accepted in a reviewed file (--accepted)


@dataclass
class Comparison:
    columns: list[Column]
    baseline: Column
    rules: Rules
    rows: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)  # against the baseline
    adjacent: list[Change] = field(default_factory=list)  # each version against the one before it
    detectable: dict[str, list[float]] = field(default_factory=dict)  # column → the smallest counted slowdowns

    def counted(self, change: Change) -> bool:
        return change.state == "regression"

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if self.counted(c)]

    @property
    def findings(self) -> list[Finding]:
        """The changes against the baseline that share a cause, grouped: what the decision counts."""

        def first(change: Change) -> str:
            shown, _ = self.first_seen(change.scenario, change.kind)
            return shown[0].label if shown else change.column

        return group(self.changes, first)

    @property
    def exit_code(self) -> int:
        return 1 if any(f.counts for f in self.findings) else 0

    @property
    def mixed(self) -> list[str]:
        """What differs between the columns' run settings (rounding floors, isolation, input path, seeds): one line
        each, naming the columns; nothing when they were run alike."""
        return mixed_settings(self.columns)

    def first_seen(self, scenario: str, kind: str) -> tuple[list[Column], list[Column]]:
        """The versions where this scenario shows this kind of change against the baseline, and the later versions
        of the same Keras package without it."""
        have = {c.column for c in self.changes if c.scenario == scenario and c.kind == kind}
        shown = [col for col in self.columns if col.label in have]
        if not shown:
            return [], []
        first = self.columns.index(shown[0])
        lacking = [
            col
            for col in self.columns[first + 1 :]
            if col.label not in have and col.package == shown[0].package and col is not self.baseline
        ]
        return shown, lacking


def load(paths: Sequence[Path]) -> list[Column]:
    """Read results files, ordered oldest version first (legacy Keras after Keras of the same TensorFlow), and
    name them A, B, C, …. Raises CompareInputError with a clear message."""
    if not paths:
        raise CompareInputError("give at least one results file (written by pytest --convergence-json)")
    columns = []
    for path in paths:
        journal = Path(f"{path}{results.JOURNAL_SUFFIX}")
        try:
            # a run that died leaves its journal and no results file: what it finished is compared, marked
            died = journal.exists() and (
                not Path(path).exists() or journal.stat().st_mtime >= Path(path).stat().st_mtime
            )
            doc = results.recover(journal) if died else results.read(path)
        except FileNotFoundError:
            raise CompareInputError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CompareInputError(f"{path}: cannot read: {exc}") from None
        except (ValueError, RecursionError) as exc:  # json.JSONDecodeError is a ValueError; deep nesting recurses
            raise CompareInputError(f"{path}: not a results file: {str(exc)[:300]}") from None
        columns.append(column(doc, Path(path)))
    columns = (
        [replace(c, label=f"{c.label} [{_file_name(c, columns)}]") for c in columns] if _clash(columns) else columns
    )
    columns.sort(key=lambda c: c.sort_key)
    return [replace(c, key=_letters(i)) for i, c in enumerate(columns)]


def _clash(columns: Sequence[Column]) -> bool:
    return len({c.label for c in columns}) < len(columns)


def _file_name(col: Column, columns: Sequence[Column]) -> str:
    """The file's stem, or its path where two files share a stem: what tells same-version runs apart."""
    twins = [c for c in columns if c.label == col.label]
    if len(twins) == 1:
        return col.path.stem
    return col.path.stem if len({c.path.stem for c in twins}) == len(twins) else str(col.path)


def column(doc: Document, path: Path) -> Column:
    """One results document as a column of the grid; a document with keys of the wrong kind is refused here,
    with the first such key named, so that nothing later trips over it."""
    try:
        results.check(doc)
    except ValueError as exc:
        raise CompareInputError(f"{path}: malformed results file: {exc}") from None
    scenarios = {s["id"]: s for s in doc["scenarios"]}
    errors = {e["file"]: e["message"] for e in doc.get("collection_errors", [])}
    env = doc["environment"].copy()
    recovered = " (recovered from a run that died)" if doc.get("recovered_from") else ""
    return Column(label(env) + recovered, path, env, scenarios, errors)


def label(env: Environment) -> str:
    """'TF 2.15.1 · Keras 2.15.0', or '… · tf_keras 2.21.0' for legacy Keras."""
    package = env.get("keras_package") or "keras"
    name = "Keras" if package == "keras" else package
    return f"TF {env.get('tensorflow') or '?'} · {name} {env.get('keras') or '?'}"


def pick_baseline(columns: Sequence[Column], wanted: str | None) -> Column:
    """The column named by `wanted` (a label, a letter, a file, or a unique part of a label); the oldest by
    default."""
    if wanted is None:
        return columns[0]
    for col in columns:
        if wanted in (col.label, col.key, str(col.path), col.path.name):
            return col
    hits = [c for c in columns if wanted in c.label]
    if len(hits) == 1:
        return hits[0]
    known = "; ".join(c.label for c in columns)
    raise CompareInputError(f"--baseline {wanted!r} matches {len(hits)} of the versions given: {known}")


def compare(columns: Sequence[Column], baseline: Column, rules: Rules = Rules()) -> Comparison:
    """Every version against the baseline (what the gate counts), and each against the one before it (where a
    change first appears, and whether an accepted change changed again inside its entry's `where`)."""
    result = Comparison(list(columns), baseline, rules)
    result.rows = sorted({sid for c in columns for sid in c.scenarios})
    unaccepted = replace(rules, accepted=None)
    previous: dict[str, Column] = {}
    for before, after in adjacent_pairs(columns):
        previous[after.label] = before
        if before is not baseline:
            for sid in result.rows:
                result.adjacent.extend(settle(c, before, after, unaccepted) for c in judge(sid, before, after, rules))
    for col in columns:
        if col is baseline:
            continue
        if rules.accepted is not None:
            both = [sid for sid in result.rows if sid in baseline.scenarios and sid in col.scenarios]
            rules.accepted.saw(versions(baseline.environment), versions(col.environment), both)
        chain: list[tuple[Column, Column]] = []  # the steps up to this version along its Keras package's line
        step_to, at = col, previous.get(col.label)
        while at is not None and at is not baseline:
            chain.append((at, step_to))
            step_to, at = at, previous.get(at.label)
        for sid in result.rows:
            for c in judge(sid, baseline, col, rules, result.detectable):
                steps = [
                    (a, b)
                    for a, b in chain
                    if any(
                        (x.scenario, x.kind, x.column, x.against) == (sid, c.kind, b.label, a.label)
                        and x.worse
                        and not x.within_noise
                        for x in result.adjacent
                    )
                ]
                result.changes.append(settle(c, baseline, col, rules, steps))
    return result


def settle(
    change: Change,
    before: Column,
    after: Column,
    rules: Rules,
    further: Sequence[tuple[Column, Column]] = (),
) -> Change:
    """The change with its state: under --fail-on, and accepted where an entry of the accepted-changes file accepts
    it — a change that would count, of the entry's kind, in a scenario its pattern matches, arriving with the
    versions of its `where` (`before` outside, `after` inside), and not changed again at a step between two versions
    inside `where` (`further`: the steps up to `after` where the same scenario changed the same way again)."""
    known = rules.accepted
    if known is None or not (change.worse and change.kind in rules.fail_on and not change.within_noise):
        return replace(change, state=state_of(change, rules.fail_on))
    record = after.scenarios.get(change.scenario)
    settings = {k: _setting(record, k) for k in SETTINGS} if record else None
    old = versions(before.environment, before.scenarios.get(change.scenario))
    new = versions(after.environment, record)
    entry, again = None, ""
    for i in known.candidates(change.kind, change.scenario):
        where = known.entries[i].where
        if not crosses(where, old, new, settings):
            continue
        known.crossed.add(i)
        step = next((f"{a.key} → {b.key}" for a, b in further if inside(where, versions(a.environment))), "")
        if step:
            again = again or f" (not accepted by {known.where_of(i)}: it changed again inside its where, at {step})"
        elif entry is None:
            entry = i
            known.used.add(i)
        else:
            known.shadowed.setdefault(i, entry)
    if entry is None:
        return replace(change, state=state_of(change, rules.fail_on), message=change.message + again)
    return replace(change, state="accepted", accepted_by=known.describe(entry))


def versions(env: Environment, record: ScenarioRecord | None = None) -> dict[str, str]:
    """{tensorflow, keras}: what trained the scenario (its record says), else the run's environment."""
    trained: dict[str, str] = (record.get("versions") if record else None) or {}
    return {k: str(trained.get(k) or env.get(k) or "") for k in ("tensorflow", "keras")}


# what a comparison's columns should share, and how a record says it
RUN_SETTINGS: dict[str, Any] = {
    "rounding floors": lambda r: "measured" if (r.get("runtime") or {}).get("noise_floor") else "not measured",
    "isolation": lambda r: "isolated" if (r.get("runtime") or {}).get("isolate") else "in the pytest process",
    "fit input": lambda r: str((r.get("runtime") or {}).get("fit_input_asked") or _fit_input(r)),
    "seeds": lambda r: str(len(r.get("seeds") or [])),
}


def mixed_settings(columns: Sequence[Column]) -> list[str]:
    """'rounding floors: A measured; B not measured' for each run setting the columns do not share (over the
    scenarios that trained in every column)."""
    trained = [
        sid
        for sid in sorted(set.intersection(*(set(c.scenarios) for c in columns)) if columns else set())
        if all(c.scenarios[sid].get("seeds") for c in columns)
    ]
    out = []
    for name, read in RUN_SETTINGS.items():
        said = []
        for col in columns:
            values = sorted({read(col.scenarios[sid]) for sid in trained})
            said.append((col.key, ", ".join(values) if len(values) <= 3 else f"{values[0]} … {values[-1]}"))
        if len({v for _, v in said}) > 1:
            out.append(f"{name}: " + "; ".join(f"{k} {v}" for k, v in said))
    return out


def adjacent_pairs(columns: Sequence[Column]) -> list[tuple[Column, Column]]:
    """Each version with the one before it of the same Keras package (Keras's own line, tf_keras's line)."""
    pairs = []
    for i, col in enumerate(columns):
        before = [c for c in columns[:i] if c.package == col.package]
        if before:
            pairs.append((before[-1], col))
    return pairs


def judge(
    sid: str,
    base_col: Column,
    col: Column,
    s: Rules,
    detectable: dict[str, list[float]] | None = None,
    seed_shifts: list[stats.Shift] | None = None,
) -> Iterable[Change]:
    """The changes of one scenario from `base_col` to `col`. `seed_shifts`: the seed statistics a caller made over
    more seeds than the records hold (the gate's), for what a curve's drift line says of the seeds."""
    base, new = base_col.scenarios.get(sid), col.scenarios.get(sid)

    def change(kind: ChangeKind, message: str, worse: bool, factor: float | None = None, noise: bool = False) -> Change:
        return Change(sid, col.label, kind, message, worse, base_col.label, factor, noise)

    file = sid.partition("::")[0]
    if base is None or new is None:
        where, missing_in = (base_col, base_col.label) if base is None else (col, col.label)
        if file in where.collection_errors:
            first = where.collection_errors[file].splitlines()[0]
            yield change("error", f"collection error in {missing_in}: {first}", new is None)
        else:
            yield change("missing", f"not in the results of {missing_in}", False)
        return
    declared = _declared(base, new)
    base_error, new_error = base.get("error"), new.get("error")
    if declared:
        if base["outcome"] != new["outcome"] or bool(base_error) != bool(new_error):
            yield change("declared", declared, False)
    elif not base_error and new_error:
        yield change("error", f"error appeared: {new_error}", True)
    elif base_error and not new_error:
        yield change("error", f"error vanished (was: {base_error})", False)
    elif base["outcome"] != new["outcome"]:
        worse = new["outcome"] in FAILING_OUTCOMES or (base["outcome"] == "passed" and new["outcome"] != "passed")
        yield change("outcome", f"{base['outcome']} → {new['outcome']}", worse)
    if not base.get("seeds") or not new.get("seeds"):
        return
    shifts = stats.compare_summaries(_summaries(base), _summaries(new), s.alpha)
    yield from _drift(base, new, s, shifts if seed_shifts is None else seed_shifts, change)
    for shift in shifts:
        if shift.verdict == "shifted":
            word = "worse" if shift.worse else "better"
            yield change("shift", f"{shift.name} shifted ({word}): {shift.describe()}", shift.worse)
        elif shift.verdict == "too few seeds":
            needed = stats.seeds_needed(s.alpha)
            yield change(
                "shift",
                f"{shift.name} moved on every seed, but {shift.n_base} vs {shift.n_new} seeds are too few to tell "
                f"(≥ {needed} each for α {s.alpha:g}; run with --convergence-seeds {max(needed, 8)}): "
                f"{shift.describe()}",
                False,
                noise=True,
            )
    slow = _slowdown(base, new, s)
    if slow is not None:
        ratio, limit, text = slow
        if detectable is not None:
            detectable.setdefault(col.label, []).append(limit)
        if ratio > limit:
            yield change("slowdown", f"time per epoch ×{ratio:.3g} {text}", True, ratio)
        elif ratio < 1 / limit:
            yield change("slowdown", f"time per epoch ×{ratio:.3g} (faster) {text}", False, ratio)


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


def environment_changes(before: Column, after: Column) -> list[str]:
    """'numpy 1.26.4 → 2.1.3', … for what differs between two columns' environments beyond TF/Keras."""
    out = []
    for key in ENV_SHOWN:
        a, b = before.environment.get(key), after.environment.get(key)
        if a != b:
            out.append(f"{key} {a} → {b}")
    return out


def _letters(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"A{i - 25}"


def _version(text: Any) -> Version:
    try:
        return Version(str(text))
    except InvalidVersion:
        return Version("0")


def _pct(value: float) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value:.2%}" if value >= 1e-4 else f"{value:.1e}"


def _num(value: float) -> str:
    return f"{value:.4g}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms"
