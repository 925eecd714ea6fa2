"""Several results files (one per TensorFlow/Keras version) → the changes between them, judged so that the gate is
red only for real changes: outcome and error changes unless the scenario declares them, curve drift only beyond
the curve's measured rounding floor, seed statistics with a test and an effect size, slowdowns relative to the
machine's calibration and beyond its measured noise. A comparison's text, Markdown and HTML live in
`comparison_text`.

Reads JSON written by `results.write` (and an accepted-changes YAML file); never imports pytest, Keras or the
scenario machinery (a contract in pyproject.toml, checked by `tox -e lint`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.version import Version

from . import results, stats
from .accepted import Accepted, crosses, inside
from .choices import DEFAULT_FAIL_ON, ChangeKind, CountableKind
from .errors import CompareInputError, MalformedResults, ResultsTooLarge
from .findings import Finding, State, group, state_of
from .judging import (
    SETTINGS,
    _declared,
    _drift,
    _fit_input,
    _setting,
    _slowdown,
    _summaries,
)
from .record import Document, Environment, ScenarioRecord
from .text import one_line, printable

DEFAULT_LOSS_RTOL = 0.01  # curve tolerance where no rounding floor was measured
DEFAULT_FLOOR_MARGIN = 10.0  # a curve counts as moved when it moved this many times its rounding floor (and more than
# judging.FLOOR_MINIMUM)
DEFAULT_SLOWDOWN = 3.0  # the smallest calibrated slowdown that counts, before the noise widens it (see docs/gate.md)
DEFAULT_ALPHA = 0.05
UNFINISHED = "its run did not finish (it crashed, was killed or was interrupted)"
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
    # how the run stopped before it finished ("": it finished): the scenarios it has no result for are failures,
    # and a comparison with it never passes
    stopped: str = ""
    notes: tuple[str, ...] = ()  # what could not be read of its file (a journal's bad lines), said with the findings

    @property
    def sort_key(self) -> tuple[Any, ...]:
        env = self.environment
        return (_version(env.get("tensorflow")), env.get("keras_package") != "keras", _version(env.get("keras")))

    @property
    def complete(self) -> bool:
        return not self.stopped

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
    def findings(self) -> list[Finding]:
        """The changes against the baseline that share a cause, grouped: what the decision counts."""

        def first(change: Change) -> str:
            shown, _ = self.first_seen(change.scenario, change.kind)
            return shown[0].label if shown else change.column

        return group(self.changes, first)

    @property
    def unfinished(self) -> list[Column]:
        """The columns whose run did not finish: whatever else changed, the comparison does not pass."""
        return [c for c in self.columns if not c.complete]

    @property
    def exit_code(self) -> int:
        return 1 if self.unfinished or any(f.counts for f in self.findings) else 0

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


def load(paths: Sequence[Path], max_bytes: int = results.MAX_BYTES) -> list[Column]:
    """Read results files, ordered oldest version first (legacy Keras after Keras of the same TensorFlow), and
    name them A, B, C, …. A file (or journal) over `max_bytes` is refused before it is read. Raises
    CompareInputError with a clear message."""
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
            if died:
                found = results.read_journal(journal, max_bytes)
                if not found.journal:
                    raise CompareInputError(
                        f"{journal}: not a journal of pytest-convergence (its first line is not the header a run "
                        f"writes), and no results file {path} beside it: nothing to compare"
                    )
                notes = tuple(f"{journal.name} {problem}: skipped" for problem in found.problems)
                columns.append(_column(found.document, Path(path), notes))
            else:
                columns.append(_column(results.read(path, max_bytes), Path(path)))
        except ResultsTooLarge as exc:
            raise CompareInputError(
                f"{exc}; refused unread (raise the limit with --max-results-mib if a file this large is expected)"
            ) from None
        except MalformedResults as exc:
            raise CompareInputError(f"{path}: malformed results file: {exc}") from None
        except FileNotFoundError:
            raise CompareInputError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CompareInputError(f"{path}: cannot read: {printable(exc)}") from None
        except (ValueError, RecursionError) as exc:  # json.JSONDecodeError is a ValueError; deep nesting recurses
            raise CompareInputError(f"{path}: not a results file: {one_line(exc)}") from None
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
        doc = results.checked(doc)
    except MalformedResults as exc:
        raise CompareInputError(f"{path}: malformed results file: {exc}") from None
    return _column(doc, path)


def _column(doc: Document, path: Path, notes: tuple[str, ...] = ()) -> Column:
    """A checked document (results.checked) as a column."""
    scenarios = {s["id"]: s for s in doc["scenarios"]}
    errors = {e["file"]: e["message"] for e in doc.get("collection_errors", [])}
    env = doc["environment"].copy()
    recovered = " (recovered from a run that died)" if doc.get("recovered_from") else ""
    stopped = (
        "recovered from the journal of a run that died"
        if recovered
        else "its results file is marked incomplete: interrupted, or stopped at a first failure"
        if doc.get("complete") is False
        else ""
    )
    return Column(label(env) + recovered, path, env, scenarios, errors, stopped=stopped, notes=notes)


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
            first = where.collection_errors[file].split("\\n")[0]  # line breaks arrive escaped (results.checked)
            yield change("error", f"collection error in {missing_in}: {first}", new is None)
        elif new is None and not col.complete:  # a crashed run's missing scenarios are failures, not just missing
            yield change("error", f"did not run to a result in {missing_in}: {UNFINISHED}", True)
        else:
            why = "" if where.complete else f": {UNFINISHED}"
            yield change("missing", f"not in the results of {missing_in}{why}", False)
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
    """The version to sort by; 0 for what is none (a results file may say anything: a 5000-digit release number is
    no version, and int() refuses it)."""
    if len(str(text)) > 64:
        return Version("0")
    try:
        return Version(str(text))
    except ValueError:  # InvalidVersion is one
        return Version("0")
