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
import sys
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import TypeAdapter, ValidationError

from .errors import JournalBusy
from .record import Check, CollectionError, Document, Environment, ScenarioRecord, SeedEntry, SeedRun

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


class Journal:
    """The results of a run as they finish, one JSON line each (flushed to disk), beside its results file: a run
    that dies loses at most the scenario it was training, and `recover` rebuilds a results document from what is
    there. Locked while its run lasts, so that two runs cannot write the same results file unnoticed."""

    def __init__(self, target: Path, started: dt.datetime) -> None:
        self.path = target.with_name(target.name + JOURNAL_SUFFIX)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a+", encoding="utf-8")
        try:
            _lock(self._fh)
        except BlockingIOError:
            self._fh.close()
            raise JournalBusy(
                f"another run is writing {target} (its journal {self.path.name} is locked); give each run its own "
                "results file"
            ) from None
        self._fh.seek(0)
        left = self._fh.read()
        self.recovered: tuple[Path, int] | None = None  # what a run that died left, saved as a results file
        doc = recover_text(left, str(self.path))
        if doc["scenarios"] or doc["collection_errors"]:  # a run that stopped before any result left nothing to keep
            saved = target.with_name(f"{target.stem}.interrupted{target.suffix}")
            write(saved, doc)
            self.recovered = (saved, len(doc["scenarios"]))
        self._fh.seek(0)
        self._fh.truncate()
        self.append({"started": started.isoformat(timespec="seconds"), "argv": sys.argv[1:]})

    def append(self, entry: dict[str, Any]) -> None:
        self._fh.write(json.dumps(_encode(entry), allow_nan=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        """The run finished and its results file is written: the journal goes."""
        self.path.unlink(missing_ok=True)
        self._fh.close()  # closing releases the lock


def _lock(fh: Any) -> None:
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock, the journal still keeps results
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def recover(path: Path) -> Document:
    """A results document from the journal at `path` (what a run that died had finished), marked incomplete."""
    return recover_text(Path(path).read_text(encoding="utf-8"), str(path))


def recover_text(text: str, source: str) -> Document:
    records: dict[str, ScenarioRecord] = {}
    errors: list[CollectionError] = []
    started = dt.datetime.now(dt.timezone.utc)
    for line in text.splitlines():
        try:
            entry = _decode(json.loads(line))
        except ValueError:
            continue  # the line being written when the run died
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("record"), dict) and "id" in entry["record"]:
            records[entry["record"]["id"]] = entry["record"]
        elif isinstance(entry.get("collection_error"), dict):
            errors.append(entry["collection_error"])
        elif "started" in entry:
            with contextlib.suppress(TypeError, ValueError):
                started = dt.datetime.fromisoformat(entry["started"])
    doc = document(list(records.values()), errors, started, -1)
    doc["complete"] = False
    doc["recovered_from"] = source
    return doc


def read(path: Path) -> Document:
    """A results file back as Python data, non-finite floats restored. Raises ValueError if not one."""
    with Path(path).open(encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a pytest-convergence results file (schema {SCHEMA!r} expected)")
    for scenario in doc.get("scenarios", []):
        for seed in scenario.get("seeds", []):
            for key in _FLOAT_KEYS:
                if key in seed:
                    seed[key] = _decode(seed[key])
        fidelity = scenario.get("fidelity")
        if isinstance(fidelity, dict) and "largest_difference" in fidelity:  # inf: one path's loss was not finite
            fidelity["largest_difference"] = _decode(fidelity["largest_difference"])
    return cast(Document, doc)


@functools.cache
def _document_adapter() -> TypeAdapter[Document]:
    return TypeAdapter(Document)


def check(doc: Document) -> None:
    """Raise ValueError naming the first key, with its place in the document, that a reader could not use:
    e.g. "scenarios[3].seeds[0].losses[2]: Input should be a valid number"."""
    try:
        _document_adapter().validate_python(doc, strict=True)  # strict: "1" is not a number here
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in first["loc"]).lstrip(".")
        raise ValueError(f"{where or 'the document'}: {first['msg']}") from None


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
