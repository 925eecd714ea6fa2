"""`pytest-convergence gate OLD NEW [PATHS…]`: may NEW replace OLD? One command, one decision.

OLD and NEW are environments (a Python interpreter, a virtual environment's folder, a tox env's name, or
requirement specs installed into a throwaway environment). The gate

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
import json
import math
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal

from packaging.requirements import InvalidRequirement, Requirement

from . import compare, results, stats
from . import render as render_mod
from .accepted import Accepted
from .choices import DEFAULT_FAIL_ON, CountableKind
from .errors import GateInputError
from .findings import Finding, common_folder, group, kind_shown
from .record import Document, ScenarioRecord, SeedEntry
from .text import one_line

State = Literal["same", "different", "unknown"]

DEFAULT_MAX_SEEDS = 16
SEED_STEPS = (8, 16, 32, 64, 128)  # the looks after a scenario's own seeds
DEFAULT_BUDGET_S = 1800.0  # for added seeds, after the first run
DEFAULT_TIMING_BUDGET_S = 900.0  # for timing side by side
DEFAULT_SLOWDOWN = 1.25  # a slowdown counts when the whole interval of the ratio lies above this
TIMING_CONFIDENCE = 0.95
# per round and side; the first is not used (it traces at the first round; later, a new epoch iterator warms up).
# The machine's speed moves in steps of ±20 % that last a fraction of a second (measured here: one round's epochs
# agree within a few %, rounds differ by up to 40 %): many short rounds, back to back, beat a few long ones
TIMING_EPOCHS = 6
MIN_ROUNDS = 4
MAX_ROUNDS = 20
ISOLATE = 50  # scenarios per training child in the gate's runs
PLUGIN_ENTRY_POINT = "convergence"  # the pytest11 name: blocked, so that this code (on PYTHONPATH) is what runs
FAILING = ("failed", "error")


# ---------------------------------------------------------------- the environments


@dataclass(frozen=True)
class Side:
    """One of the two environments."""

    role: str  # OLD | NEW
    given: str  # as the user wrote it
    kind: Literal["python", "venv", "tox", "requirements"]
    requirements: tuple[str, ...] = ()
    python: Path | None = None  # known at once for python/venv/tox; made for requirements

    def describe(self) -> str:
        return {
            "python": f"interpreter {self.given}",
            "venv": f"environment {self.given}",
            "tox": f"tox env {self.given}",
            "requirements": f"throwaway environment with {' '.join(self.requirements)}",
        }[self.kind]


def parse_side(role: str, given: str, tox_dir: Path = Path(".tox")) -> Side:
    """What OLD or NEW names: an existing file (a Python) or folder (a virtual environment); requirement specs
    (every word holds a version specifier: 'tensorflow-cpu==2.15.1', 'tensorflow-cpu~=2.21.0 keras==3.15.1'); else a
    tox env name (made with `tox run --notest` if .tox/NAME does not exist yet)."""
    path = Path(given)
    if path.is_file():
        return Side(role, given, "python", python=path)
    if path.is_dir():
        python = path / "bin" / "python"
        if not python.exists():
            raise GateInputError(f"{role} {given!r}: a folder without bin/python (not a virtual environment)")
        return Side(role, given, "venv", python=python)
    words = given.split()
    if words and any(op in given for op in ("=", "<", ">", "~", "!")):
        specs = []
        for word in words:
            try:
                req = Requirement(word)
            except InvalidRequirement as exc:
                raise GateInputError(f"{role} {given!r}: {word!r} is not a requirement: {exc}") from None
            if not req.specifier:
                raise GateInputError(f"{role} {given!r}: {word!r} names no version (e.g. tensorflow-cpu==2.15.1)")
            specs.append(word)
        return Side(role, given, "requirements", tuple(specs))
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", given) and "/" not in given:
        python = tox_dir / given / "bin" / "python"
        return Side(role, given, "tox", python=python)
    raise GateInputError(
        f"{role} {given!r}: not a Python interpreter, a virtual environment, a tox env name or requirement specs "
        "(e.g. .tox/tf215/bin/python, .tox/tf215, tf215, 'tensorflow-cpu==2.15.1')"
    )


def prepare(side: Side, workdir: Path, uv: str | None = None, tox: str | None = None) -> Side:
    """The side with a Python that exists: a tox env made if missing, requirements installed with uv."""
    if side.kind == "tox" and side.python is not None and not side.python.exists():
        command = [tox or shutil.which("tox") or "tox", "run", "-e", side.given, "--notest"]
        _checked(command, f"{side.role}: making tox env {side.given}")
        if not side.python.exists():
            raise GateInputError(f"{side.role}: tox made no {side.python}")
    if side.kind == "requirements":
        from .bisect import plugin_requirements

        uv = uv or shutil.which("uv")
        if not uv:
            raise GateInputError(f"{side.role}: installing {side.given!r} needs uv (pip install uv)")
        env = workdir / "envs" / side.role.lower()
        shutil.rmtree(env, ignore_errors=True)
        _checked([uv, "venv", "--quiet", "--python", sys.executable, str(env)], f"{side.role}: making {env}")
        install = [uv, "pip", "install", "--quiet", "--python", str(env / "bin" / "python")]
        _checked([*install, *side.requirements, *plugin_requirements()], f"{side.role}: installing {side.given}")
        side = replace(side, python=env / "bin" / "python")
    assert side.python is not None
    return side


def _checked(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GateInputError(f"{what}: {exc}") from None
    if done.returncode != 0:
        raise GateInputError(f"{what} failed (exit {done.returncode}): {one_line(done.stderr or done.stdout, 400)}")


# ---------------------------------------------------------------- running scenarios


@dataclass
class Runner:
    """Runs pytest with this plugin's code (on PYTHONPATH, loaded with -p) in both environments at once."""

    workdir: Path
    paths: list[str]  # --scenarios PATHS, relative to the working directory
    factories: bool = True
    timeout_s: float = 6 * 3600.0

    def plugin_path(self) -> Path:
        from .bisect import plugin_folder

        return plugin_folder(self.workdir)

    def workers(self, side: Side, running: int) -> int:
        """xdist workers for one side: the CPUs shared among the sides running at once (on 2 CPUs: none with both
        sides running, 2 with one), where that environment has pytest-xdist. Every training process gets the same
        threads either way (1 per process on 2 CPUs: PYTEST_XDIST_WORKER_COUNT=2)."""
        share = (os.cpu_count() or 1) // max(1, running)
        if share < 2:
            return 0
        try:
            found = subprocess.run([str(side.python), "-c", "import xdist"], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return 0
        return share if found.returncode == 0 else 0

    def environ(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(self.plugin_path()), "PYTHONSAFEPATH": "1"}
        env.pop("PYTEST_ADDOPTS", None)
        # the two sides run at the same time, each with half the CPUs (the thread settings of the tox matrix's -n 2)
        env["PYTEST_XDIST_WORKER_COUNT"] = "2"
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("PYTHONHASHSEED", "0")
        return env

    def command(
        self,
        side: Side,
        out: Path,
        targets: Sequence[str],
        seeds: tuple[int, int] | None,
        floors: bool,
        workers: int = 0,
    ) -> list[str]:
        args = [str(side.python), "-m", "pytest", "-p", f"no:{PLUGIN_ENTRY_POINT}", "-p", "pytest_convergence.plugin"]
        args += ["-p", "no:cacheprovider", "-q", "--no-header", "-p", "no:randomly"]
        if workers > 1:
            args += ["-n", str(workers)]
        # only the files of what runs: the plugin collects every --scenarios path that no argument names
        for path in dict.fromkeys(p.partition("::")[0] for p in (targets or self.paths)):
            args += ["--scenarios", path]
        args += ["--convergence-json", str(out), "--convergence-isolate", str(ISOLATE)]
        if floors:
            args.append("--convergence-noise-floor")
        if seeds is not None:
            start, count = seeds
            args += ["--convergence-seeds", f"{start}:{count}" if start else str(count)]
        if not self.factories:
            args.append("--convergence-no-factories")
        return [*args, *(targets or self.paths)]

    def run_both(
        self,
        sides: Sequence[Side],
        tag: str,
        targets: Sequence[str] = (),
        seeds: tuple[int, int] | None = None,
        floors: bool = True,
        deadline: float | None = None,
    ) -> list[Document]:
        """Both sides at once; their results documents (OLD first). Past `deadline` (time.monotonic()) both are
        stopped and what their journals hold is returned (the scenarios they finished)."""
        procs: list[tuple[Side, Path, subprocess.Popen[str], IO[str]]] = []
        for side in sides:
            out = self.workdir / f"{side.role.lower()}-{tag}.json"
            out.unlink(missing_ok=True)
            log = self.workdir / f"{side.role.lower()}-{tag}.log"
            handle = log.open("w", encoding="utf-8")
            command = self.command(side, out, targets, seeds, floors, self.workers(side, len(sides)))
            handle.write(shlex.join(command) + "\n")
            handle.flush()
            proc = subprocess.Popen(
                command, stdout=handle, stderr=subprocess.STDOUT, text=True, env=self.environ(), start_new_session=True
            )
            procs.append((side, out, proc, handle))
        docs = []
        try:
            for side, out, proc, stream in procs:
                limit = self.timeout_s if deadline is None else max(1.0, deadline - time.monotonic())
                try:
                    code = proc.wait(timeout=limit)
                except subprocess.TimeoutExpired:
                    _kill(proc)
                    code = -9
                stream.close()
                journal = Path(f"{out}{results.JOURNAL_SUFFIX}")
                if deadline is not None and code == -9 and journal.is_file():
                    docs.append(results.recover(journal))  # out of budget: what it finished
                    continue
                if code not in (0, 1) or not out.is_file():
                    tail = one_line(Path(stream.name).read_text(encoding="utf-8", errors="replace")[-600:], 600)
                    raise GateInputError(
                        f"{side.role}: pytest exited {code} without results (log {stream.name}): {tail}"
                    )
                docs.append(results.read(out))
        finally:
            for _, _, proc, stream in procs:
                if proc.poll() is None:
                    _kill(proc)
                stream.close()
        return docs


def _kill(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# ---------------------------------------------------------------- the sequential seed decision


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


# ---------------------------------------------------------------- timing side by side


@dataclass
class Timing:
    """One scenario timed side by side: the fastest steady epoch of each round, per side."""

    old: list[float] = field(default_factory=list)
    new: list[float] = field(default_factory=list)
    error: str = ""
    ratio: float = 1.0
    low: float = 0.0
    high: float = math.inf
    verdict: Literal["slower", "faster", "same", "unknown", "untimed"] = "unknown"

    @property
    def rounds(self) -> int:
        return len(self.new)

    def describe(self, confidence: float = TIMING_CONFIDENCE) -> str:
        if self.verdict == "untimed":
            return f"not timed: {self.error}"
        return (
            f"×{self.ratio:.3g} ({confidence:.0%} interval ×{self.low:.3g}–×{self.high:.3g}, {self.rounds} rounds "
            f"side by side; fastest epoch {_ms(min(self.old))} → {_ms(min(self.new))})"
        )


def timing_verdict(timing: Timing, limit: float, confidence: float = TIMING_CONFIDENCE) -> Timing:
    """Decide from the paired rounds so far: slower when the whole interval lies above `limit`, faster when below
    1/limit, the same when inside (1/limit, limit); unknown while it straddles a limit or with < MIN_ROUNDS."""
    ratio, low, high = stats.ratio_interval(timing.old, timing.new, confidence)
    verdict: Literal["slower", "faster", "same", "unknown"] = "unknown"
    if timing.rounds >= MIN_ROUNDS:
        if low > limit:
            verdict = "slower"
        elif high < 1 / limit:
            verdict = "faster"
        elif 1 / limit < low and high < limit:
            verdict = "same"
    return replace(timing, ratio=ratio, low=low, high=high, verdict=verdict)


class Worker:
    """A `timeprobe` process in one environment."""

    def __init__(self, side: Side, env: dict[str, str], log: Path) -> None:
        self.side = side
        self._log = log.open("w", encoding="utf-8")
        env = {**env}
        env.pop("PYTEST_XDIST_WORKER_COUNT", None)  # alone on the machine while it times: every CPU
        self.proc = subprocess.Popen(
            [str(side.python), "-m", "pytest_convergence.timeprobe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        """Its first line (TensorFlow imported): both workers start at once, then each is waited for."""
        ready = self._read()
        if "ready" not in ready:
            raise GateInputError(f"{self.side.role}: the timing worker did not start: {ready}")

    def _read(self, timeout_s: float = 600.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:  # a scenario whose fit hangs here: the worker goes, the rest is untimed
            _kill(self.proc)
            return {"error": f"the timing worker answered nothing in {timeout_s:.0f} s; log {self._log.name}"}
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            return {"error": f"the timing worker exited ({self.proc.returncode}); log {self._log.name}"}
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    def time(self, job: dict[str, Any], timeout_s: float = 600.0) -> list[float] | str:
        assert self.proc.stdin is not None
        if self.proc.poll() is not None:
            return f"the timing worker is gone (exit {self.proc.returncode}); log {self._log.name}"
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            return f"the timing worker is gone: {exc}"
        answer = self._read(timeout_s)
        if "seconds" in answer:
            return [float(x) for x in answer["seconds"]]
        return str(answer.get("error", answer))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _kill(self.proc)
        self._log.close()


def round_statistic(seconds: Sequence[float]) -> float | None:
    """A round's time per epoch: its fastest steady epoch (the first traces; noise only adds time)."""
    steady = [s for s in seconds[1:] if s > 0]
    return min(steady) if len(steady) >= 2 else None


def time_side_by_side(
    workers: tuple[Worker, Worker],
    jobs: dict[str, dict[str, Any]],
    limit: float,
    deadline: float,
    max_rounds: int = MAX_ROUNDS,
) -> dict[str, Timing]:
    """Rounds of OLD NEW, NEW OLD, … per scenario still undecided, until each is decided, max_rounds or the
    deadline."""
    timings = {sid: Timing() for sid in jobs}
    for round_no in range(max_rounds):
        open_ = [sid for sid, t in timings.items() if t.verdict == "unknown" and not t.error]
        if not open_ or time.monotonic() >= deadline:
            break
        for sid in open_:
            if time.monotonic() >= deadline:
                break
            order = (0, 1) if round_no % 2 == 0 else (1, 0)
            got: dict[int, float] = {}
            for i in order:
                answer = workers[i].time(jobs[sid], min(3600.0, max(60.0, deadline - time.monotonic())))
                value = round_statistic(answer) if isinstance(answer, list) else None
                if value is None:
                    timings[
                        sid
                    ].error = f"{workers[i].side.role}: {answer if isinstance(answer, str) else 'too few epochs'}"
                    break
                got[i] = value
            if len(got) == 2:
                t = timings[sid]
                t.old.append(got[0])
                t.new.append(got[1])
                timings[sid] = timing_verdict(t, limit)
    for sid, t in timings.items():
        if t.error or not t.new:
            timings[sid] = replace(t, verdict="untimed", error=t.error or "out of time")
    return timings


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
    """Lines for a person as the gate goes; returns what it found."""
    started = time.monotonic()
    sides = [prepare(old, workdir), prepare(new, workdir)]
    runner = Runner(workdir, settings.paths, settings.factories)
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
            f"  run 1 of {' and '.join(s.role for s in to_run)}: isolated, rounding floors measured"
            f"{', both at once' if len(to_run) == 2 else ''}: {time.monotonic() - t0:.0f} s"
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
            env = runner.environ()
            workers: list[Worker] = []
            try:
                for side in sides:
                    workers.append(Worker(side, env, workdir / f"{side.role.lower()}-timing.log"))
                for worker in workers:
                    worker.wait_ready()
                timings = time_side_by_side(
                    (workers[0], workers[1]), jobs, settings.slowdown, time.monotonic() + settings.timing_budget_s
                )
            finally:
                for w in workers:
                    w.close()
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
                f"  timing: {len(jobs)} scenarios side by side (OLD NEW, NEW OLD, …), {rounds} rounds of "
                f"{TIMING_EPOCHS} epochs of fit on the arrays per side: {time.monotonic() - t0:.0f} s"
            )
    outcome.seconds = {"total": time.monotonic() - started}
    return outcome


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
    lines += render_mod.finding_lines(
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
        (sid, j.timing) for sid, j in sorted(outcome.judged.items()) if j.timing and j.timing.verdict == "unknown"
    ]
    if untimed:
        lines.append(f"Timing undecided (not counted): {len(untimed)} scenario(s):")
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
    lines = [wrapped for line in lines for wrapped in render_mod.fold(line, render_mod.WIDTH)]
    every = [(sid, c) for sid, j in sorted(outcome.judged.items()) for c in j.changes]
    if every:
        lines += ["", "Details: every change, NEW against OLD"]
        for sid, c in every:
            lines.append(f"  [{kind_shown(c)}, {c.state}] {sid}: {one_line(c.message, 4000)}")
    return lines


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms"


def default_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="convergence-gate-"))
