"""The results record (`--convergence-json`): one JSON file per run, written atomically by the controller.

Records travel from xdist workers to the controller as plain dicts on the test report, so a
record reaches the file as soon as its test ends. JSON has no NaN or infinity: non-finite floats
are written as the strings "NaN", "Infinity" and "-Infinity", and read back as floats.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import TypeAdapter, ValidationError

from .errors import JournalBusy, MalformedResults, ResultsTooLarge
from .record import Check, CollectionError, Document, Environment, ScenarioRecord, SeedEntry, SeedRun
from .text import printable

if TYPE_CHECKING:
    from .expect import Verdict

SCHEMA = "pytest-convergence/1"
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_FLOAT_KEYS = ("losses", "metrics", "predictions", "epoch_seconds", "fit_seconds", "summary", "rounding_floor")


def scenario_record(
    nodeid: str,
    file: str,
    line: int,
    name: str,
    runs: Sequence[SeedRun],
    verdict: Verdict | None,
    versions: dict[str, str],
    error: str | None = None,
) -> ScenarioRecord:
    """A scenario's entry: its outcome, and for each seed the curve, checks and timings."""
    checks = {s.seed: s for s in verdict.seeds} if verdict else {}
    seeds: list[SeedEntry] = []
    for run in runs:
        entry = cast(SeedEntry, run.to_dict())
        seed_verdict = checks.get(run.seed)
        entry["outcome"] = ("passed" if seed_verdict.ok else "failed") if seed_verdict else "error"
        entry["checks"] = [
            Check(expectation=c.expectation, ok=c.ok, message=c.message)
            for c in (seed_verdict.checks if seed_verdict else ())
        ]
        entry["summary"] = dict(seed_verdict.summary) if seed_verdict else {}
        seeds.append(entry)
    return ScenarioRecord(
        id=nodeid,
        file=file,
        line=line,
        name=name,
        outcome="error" if error else ("passed" if verdict and verdict.ok else "failed"),
        error=error,
        pass_rate=verdict.pass_rate if verdict else None,
        min_pass_rate=verdict.min_pass_rate if verdict else None,
        versions=versions,
        seeds=seeds,
    )


def bare_record(nodeid: str, outcome: Literal["skipped", "error"], reason: str | None = None) -> ScenarioRecord:
    """The entry of a scenario that did not train: skipped, or an error before training."""
    file, _, name = nodeid.partition("::")
    return ScenarioRecord(
        id=nodeid,
        file=file,
        line=None,
        name=name,
        outcome=outcome,
        error=reason if outcome == "error" else None,
        reason=reason,
        pass_rate=None,
        min_pass_rate=None,
        versions={},
        seeds=[],
    )


def environment(records: Sequence[ScenarioRecord]) -> Environment:
    """Python, platform and library versions. TensorFlow/Keras come from the workers that trained,
    so that the controller of a parallel run need not import TensorFlow itself."""
    env = Environment(
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        platform=platform.platform(),
        machine=platform.machine(),
        cpu=_cpu_model(),
        cpus=os.cpu_count(),
        numpy=_dist_version("numpy"),
        protobuf=_dist_version("protobuf"),
        ml_dtypes=_dist_version("ml_dtypes"),
        pytest=_dist_version("pytest"),
        pytest_convergence=_dist_version("pytest-convergence"),
        tensorflow=None,
        keras=None,
        keras_package=None,
    )
    trained = next((r["versions"] for r in records if r.get("versions")), None)
    if trained:
        env.update(cast(Environment, trained))
    else:
        env["tensorflow"] = _dist_version("tensorflow") or _dist_version("tensorflow-cpu")
        env["keras"] = _dist_version("keras")
    env["TF_USE_LEGACY_KERAS"] = os.environ.get("TF_USE_LEGACY_KERAS")
    return env


def document(
    records: Sequence[ScenarioRecord],
    collection_errors: Sequence[CollectionError],
    started: dt.datetime,
    exitstatus: int,
) -> Document:
    return Document(
        schema=SCHEMA,
        started=started.isoformat(timespec="seconds"),
        finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        exitstatus=exitstatus,
        argv=sys.argv[1:],
        environment=environment(records),
        collection_errors=list(collection_errors),
        scenarios=sorted(records, key=lambda r: r["id"]),
    )


def write(path: Path, doc: Document) -> None:
    """Write `doc` to `path` atomically: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_encode(doc), indent=1, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


JOURNAL_SUFFIX = ".journal"
MAX_MIB = 64.0  # the default size limit of a results file or a journal: a reader holds ~10× a file's size in memory
MAX_BYTES = int(MAX_MIB * 2**20)
SHOWN_PROBLEMS = 20  # a journal's unreadable lines named one by one; the rest counted
UNFINISHED = (
    "never finished: the run ended while this scenario was running (a crash, a kill, out of memory), so it has no "
    "result"
)


class Journal:
    """The results of a run as they finish, one JSON line each (flushed to disk), beside its results file: a run
    that dies loses at most the scenario it was training, and the next run with the same results file saves what
    is there as `NAME.interrupted.json` (then `NAME.interrupted-2.json`, …: an earlier save is never overwritten).
    Lines that cannot be read are skipped and named in `problems`, and the journal as it was is kept beside the
    save (`NAME.interrupted.journal`). Locked while its run lasts, so that two runs cannot write the same results
    file unnoticed."""

    def __init__(self, target: Path, started: dt.datetime, max_bytes: int = MAX_BYTES) -> None:
        self.path = target.with_name(target.name + JOURNAL_SUFFIX)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a+b")
        try:
            _lock(self._fh)
        except BlockingIOError:
            self._fh.close()
            raise JournalBusy(
                f"another run is writing {target} (its journal {self.path.name} is locked); give each run its own "
                "results file"
            ) from None
        self.recovered: tuple[Path, int] | None = None  # what a run that died left, saved as a results file
        self.problems: list[str] = []  # the lines of that journal that could not be read
        self.kept: Path | None = None  # that journal as it was, where some of it could not be read
        self._fh.seek(0)
        saved, kept = _free_names(target)
        size = os.fstat(self._fh.fileno()).st_size
        if size > max_bytes:  # not read into memory: kept whole, for a person to look at
            self.problems = [f"{ResultsTooLarge(self.path, size, max_bytes)}: not read"]
        elif size:
            found = recover_lines(self._fh.read().split(b"\n"), str(self.path))
            doc, self.problems = found.document, list(found.problems)
            if doc["scenarios"] or doc["collection_errors"]:  # a run that stopped before any result left nothing
                write(saved, doc)
                self.recovered = (saved, len(doc["scenarios"]))
        if self.problems:
            self.kept = kept
            self._fh.seek(0)
            with self.kept.open("wb") as out:
                shutil.copyfileobj(self._fh, out)
        self._fh.seek(0)
        self._fh.truncate()
        self.append({"started": started.isoformat(timespec="seconds"), "argv": sys.argv[1:]})

    def append(self, entry: dict[str, Any], sync: bool = True) -> None:
        """One entry, on disk before this returns (`sync`; else handed to the system, which a process's death does
        not lose)."""
        self._fh.write(json.dumps(_encode(entry), allow_nan=False).encode() + b"\n")
        self._fh.flush()
        if sync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        """The run finished and its results file is written: the journal goes."""
        self.path.unlink(missing_ok=True)
        self._fh.close()  # closing releases the lock


def _free_names(target: Path) -> tuple[Path, Path]:
    """NAME.interrupted.json and NAME.interrupted.journal, or the first NAME.interrupted-N pair with neither taken:
    each crash's save is kept (the journal's lock keeps two runs from choosing at once)."""
    n = 1
    while True:
        stem = f"{target.stem}.interrupted{'' if n == 1 else f'-{n}'}"
        pair = (target.with_name(stem + target.suffix), target.with_name(stem + JOURNAL_SUFFIX))
        if not any(p.exists() for p in pair):
            return pair
        n += 1


def _lock(fh: Any) -> None:
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock, the journal still keeps results
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


@dataclass(frozen=True)
class Recovered:
    """What a journal holds: the results document of what its run finished (marked incomplete; a scenario it
    started and never finished as an error), the lines that could not be read, and whether its first line is a
    journal's header (else it is no journal at all)."""

    document: Document
    problems: tuple[str, ...]
    journal: bool


def recover(path: Path, max_bytes: int = MAX_BYTES) -> Document:
    """A results document from the journal at `path` (what a run that died had finished), marked incomplete; lines
    that cannot be read are left out (`read_journal` names them)."""
    return read_journal(path, max_bytes).document


def read_journal(path: Path, max_bytes: int = MAX_BYTES) -> Recovered:
    """The journal at `path`, read as `recover` reads it, with what could not be read. Raises ResultsTooLarge (before
    reading) over `max_bytes`, OSError where it cannot be read."""
    return recover_lines(_read_bytes(Path(path), max_bytes).split(b"\n"), str(path))


def recover_lines(lines: Sequence[bytes], source: str) -> Recovered:
    """A journal's lines → `Recovered`. Every line is data from a run that may have died writing it, or from
    anyone: each is parsed and checked on its own, and one that fails is skipped and named with its number."""
    records: dict[str, ScenarioRecord] = {}
    errors: list[CollectionError] = []
    running: dict[str, None] = {}  # started and not finished, in order
    problems: list[str] = []
    started, header = dt.datetime.now(dt.timezone.utc), False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            kind, value = _journal_entry(line)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and json's errors are ValueErrors
            said = printable(exc) if isinstance(exc, MalformedResults) else _unreadable(exc)
            problems.append(f"line {number}: {said}")
            continue
        if kind == "started":
            header = header or number == 1
            with contextlib.suppress(ValueError):
                started = dt.datetime.fromisoformat(value)
        elif kind == "record":
            records[value["id"]] = value
            running.pop(value["id"], None)
        elif kind == "collection_error":
            errors.append(value)
        elif kind == "start":
            running[value] = None
        else:  # finish: a scenario that ended without a record (nothing to keep)
            running.pop(value, None)
    for nodeid in running:
        records.setdefault(nodeid, bare_record(nodeid, "error", UNFINISHED))
    doc = document(list(records.values()), errors, started, -1)
    doc["complete"] = False
    doc["recovered_from"] = printable(source)
    if len(problems) > SHOWN_PROBLEMS:
        problems[SHOWN_PROBLEMS:] = [f"… and {len(problems) - SHOWN_PROBLEMS} more line(s) that could not be read"]
    return Recovered(doc, tuple(problems), header)


_JOURNAL_KEYS = ("record", "collection_error", "start", "finish", "started")


def _journal_entry(line: bytes) -> tuple[str, Any]:
    """(kind, value) of one journal line, its value checked and made printable; MalformedResults where it is JSON of the
    wrong shape."""
    entry = json.loads(line.decode("utf-8"))
    kinds = [k for k in _JOURNAL_KEYS if isinstance(entry, dict) and k in entry]
    if not kinds:
        keys = ", ".join(_JOURNAL_KEYS)
        raise MalformedResults(f"not a journal entry (an object with one of the keys {keys} expected)")
    kind = kinds[0]
    value = entry[kind]
    if kind == "record":
        if isinstance(value, dict):
            _restore_record(value)
        _validate(_record_adapter(), value, "record")
    elif kind == "collection_error":
        _validate(_collection_error_adapter(), value, "collection_error")
    elif not isinstance(value, str):
        raise MalformedResults(f"{kind}: a string expected, got {_json_kind(value)}")
    return kind, inert(value)


def _unreadable(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return f"not a line of JSON ({printable(exc)})"


def read(path: Path, max_bytes: int = MAX_BYTES) -> Document:
    """A results file back as Python data, checked (`checked`), non-finite floats restored. Raises ResultsTooLarge
    before reading a file over `max_bytes`, MalformedResults naming the first key of the wrong kind, ValueError if it
    is no results file."""
    try:
        doc = json.loads(_read_bytes(Path(path), max_bytes))
    except RecursionError:  # `[[[[…` nested deeper than the parser goes: no results file is
        raise MalformedResults(f"{path}: nested too deeply to be a results file") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a pytest-convergence results file (schema {SCHEMA!r} expected)")
    scenarios = doc.get("scenarios")
    for scenario in scenarios if isinstance(scenarios, list) else ():
        if isinstance(scenario, dict):
            _restore_record(scenario)
    return checked(cast(Document, doc))


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes; ResultsTooLarge, before reading anything, where it holds more than `max_bytes` (or grows past
    them while read)."""
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            raise ResultsTooLarge(path, size, max_bytes)
        data = fh.read(size + 1)  # read(n) sets n bytes aside first: not the limit
        if len(data) > size:  # it grows while read (a run still writing it)
            data += fh.read(max_bytes + 1 - len(data))
    if len(data) > max_bytes:
        raise ResultsTooLarge(path, len(data), max_bytes)
    return data


def _restore_record(record: dict[str, Any]) -> None:
    """Non-finite floats back where the record keeps floats (as far as the record has the shape to hold them: what
    does not is left for the check to name)."""
    seeds = record.get("seeds")
    for seed in seeds if isinstance(seeds, list) else ():
        if isinstance(seed, dict):
            for key in _FLOAT_KEYS:
                if key in seed:
                    seed[key] = _decode(seed[key])
    fidelity = record.get("fidelity")
    if isinstance(fidelity, dict) and "largest_difference" in fidelity:  # inf: one path's loss was not finite
        fidelity["largest_difference"] = _decode(fidelity["largest_difference"])


@functools.cache
def _document_adapter() -> TypeAdapter[Document]:
    return TypeAdapter(Document)


@functools.cache
def _record_adapter() -> TypeAdapter[ScenarioRecord]:
    return TypeAdapter(ScenarioRecord)


@functools.cache
def _collection_error_adapter() -> TypeAdapter[CollectionError]:
    return TypeAdapter(CollectionError)


def checked(doc: Document) -> Document:
    """`doc` as every reader may use it: each key of the kind record.py defines (else MalformedResults naming the first
    that is not, with its place in the document: "scenarios[3].seeds: Input should be a valid list, got a number"),
    and every string in it, keys too, inert (`inert`). The one gate between a results document and its readers."""
    _validate(_document_adapter(), doc, "")
    return cast(Document, inert(doc))


def check(doc: Document) -> None:
    """Raise MalformedResults (a ValueError) naming the first key, with its place in the document, that a reader could
    not use (see `checked`)."""
    _validate(_document_adapter(), doc, "")


def _validate(adapter: TypeAdapter[Any], value: Any, at: str) -> None:
    try:
        adapter.validate_python(value, strict=True)  # strict: "1" is not a number here
    except ValidationError as exc:
        first = exc.errors()[0]
        where = (at + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in first["loc"])).lstrip(".")
        got = f", got {_json_kind(first['input'])}" if first["type"].endswith("_type") else ""
        message = f"{where or 'the document'}: {first['msg']}{got} (`pytest-convergence schema results` says what fits)"
        raise MalformedResults(printable(message)) from None


def _json_kind(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return "a number"
    kinds: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


def inert(value: Any) -> Any:
    """`value` with every string in it, keys of objects too, made printable (text.printable: control characters and
    line breaks escaped), so that no text from a results file or a journal can move a terminal's cursor, start a
    line of a CI log (`::error …`) or reorder what a reader sees, wherever it is shown later."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k): inert(v) for k, v in value.items()}
    if isinstance(value, list):
        return [inert(v) for v in value]
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _cpu_model() -> str | None:
    """The processor's model name (Linux), else what platform knows: runs on other hardware time differently."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
