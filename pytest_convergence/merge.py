"""`pytest-convergence merge OUT SHARD…`: the results files of one run split into shards (CI jobs that each ran a
part of the scenarios, e.g. with pytest-split) as the one results file an unsplit run writes, so that `compare` and
`gate` decide once. The shards must come from the same environment and settings, and hold each scenario once.
Needs neither pytest nor Keras."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import results
from .errors import MalformedResults, MergeInputError, ResultsTooLarge
from .record import CollectionError, Document, ScenarioRecord

# What every shard must share: the versions that trained and what the run was told (the machine may differ: each
# record's timings carry their own calibration).
ENVIRONMENT_KEYS = (
    "python",
    "implementation",
    "tensorflow",
    "keras",
    "keras_package",
    "numpy",
    "protobuf",
    "ml_dtypes",
    "pytest_convergence",
    "TF_USE_LEGACY_KERAS",
)
RUN_KEYS = ("op_determinism", "noise_floor", "PYTHONHASHSEED", "TF_USE_LEGACY_KERAS")  # from each record's runtime


def read_shards(paths: Sequence[Path], max_bytes: int = results.MAX_BYTES) -> list[Document]:
    docs = []
    for path in paths:
        try:
            docs.append(results.read(path, max_bytes))
        except FileNotFoundError:
            raise MergeInputError(f"{path}: no such file") from None
        except (ResultsTooLarge, MalformedResults, ValueError) as exc:
            raise MergeInputError(f"{path}: not a results file this can merge: {exc}") from None
    return docs


def merge(docs: Sequence[Document], paths: Sequence[Path]) -> Document:
    """One document holding every shard's scenarios and collection errors, in the order an unsplit run writes them
    (by id). MergeInputError where two shards differ in environment or run settings, or share a scenario."""
    if not docs:
        raise MergeInputError("give at least one shard's results file")
    _same(docs, paths, "environment", lambda d: {k: d["environment"].get(k) for k in ENVIRONMENT_KEYS})
    _same(docs, paths, "run settings", _run_settings)
    _same(docs, paths, "pytest command lines", lambda d: {"arguments": _command(d.get("argv", []))})
    seen: dict[str, Path] = {}
    records: list[ScenarioRecord] = []
    errors: list[CollectionError] = []
    for doc, path in zip(docs, paths, strict=True):
        for record in doc["scenarios"]:
            if record["id"] in seen:
                raise MergeInputError(
                    f"{record['id']} is in {seen[record['id']]} and in {path}: shards of one run hold each scenario "
                    "once (split with pytest-split's --splits/--group, each job its own group)"
                )
            seen[record["id"]] = path
            records.append(record)
        errors += [e for e in doc.get("collection_errors", []) if e not in errors]
    merged = Document(
        schema=docs[0]["schema"],
        started=min(d.get("started", "") for d in docs),
        finished=max(d.get("finished", "") for d in docs),
        exitstatus=worst_exit(d.get("exitstatus", 0) for d in docs),
        argv=["merge", *map(str, paths)],
        environment=docs[0]["environment"],
        collection_errors=errors,
        scenarios=sorted(records, key=lambda r: r["id"]),
    )
    unfinished = [str(p) for d, p in zip(docs, paths, strict=True) if d.get("complete") is False]
    if unfinished:  # one shard's crash is the merged run's: compare must not pass it
        merged["complete"] = False
        merged["recovered_from"] = ", ".join(unfinished)
    return merged


def worst_exit(codes: Iterable[int]) -> int:
    """pytest's exit code of a run made of parts (the shards of `merge`, the versions of `matrix`): the worst part's.
    Failed tests (1) are the mildest failure: a part that died (a negative code, killed by a signal or recovered from a
    journal) and pytest's own errors (2 interrupted, 3 internal, 4 usage) outrank them. No tests collected (5) only
    where every part says so: a part that had nothing to run is not an error beside parts that ran."""
    real = [c for c in codes if c != 5]
    return max(real, key=lambda c: (c not in (0, 1), c)) if real else 5


SHARD_OPTIONS = ("--splits", "--group", "--convergence-json", "--durations-path", "--splitting-algorithm")


def _command(argv: Sequence[str]) -> list[str]:
    """A shard's pytest arguments without what tells the shards apart (its group, its results file): the rest —
    scenarios, seeds, floors, fit input, time limit, isolation — must be the same in every shard of one run."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in SHARD_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{o}=" for o in SHARD_OPTIONS)) and arg != "--store-durations":
            out.append(arg)
    return out


def _run_settings(doc: Document) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for key in RUN_KEYS:
        values = {str((r.get("runtime") or {}).get(key)) for r in doc["scenarios"] if r.get("seeds")}
        settings[key] = sorted(values)
    isolated = {bool((r.get("runtime") or {}).get("isolate")) for r in doc["scenarios"] if r.get("seeds")}
    settings["isolated"] = sorted(isolated)
    return settings


def _same(docs: Sequence[Document], paths: Sequence[Path], what: str, read: Any) -> None:
    first = read(docs[0])
    for doc, path in zip(docs[1:], paths[1:], strict=True):
        other = read(doc)
        differ = [
            f"{k}: {first.get(k)} in {paths[0]}, {other.get(k)} in {path}"
            for k in first
            if other.get(k) != first.get(k) and (k == "arguments" or (first.get(k) != [] and other.get(k) != []))
        ]
        if differ:
            raise MergeInputError(f"the shards are not parts of one run: their {what} differ ({'; '.join(differ)})")


def write_merged(out: Path, shards: Sequence[Path], max_bytes: int = results.MAX_BYTES) -> Document:
    """Read, check, merge and write; returns the merged document."""
    if out.resolve() in {p.resolve() for p in shards}:
        raise MergeInputError(f"{out} is one of the shards: write the merged file elsewhere")
    merged = merge(read_shards(shards, max_bytes), shards)
    results.write(out, merged)
    return merged
