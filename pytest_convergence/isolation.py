"""Training in a child process (`--convergence-isolate N`): a native crash or hang inside TensorFlow fails one
scenario instead of the whole pytest process, the time limit becomes hard, and memory stays flat because the child is
replaced after N scenarios or above a resident-size limit.

One `concurrent.futures.ProcessPoolExecutor` with one spawned worker per pytest process (so per xdist worker
too), shut down and replaced after N scenarios. What crosses the boundary is plain data: a `Job` (where the
scenario is, how to run it) in, a dict out (the seeds' runs, the diagnosis, the fidelity verdict, timings, or the
error as text); the parent judges the runs again with the same pure functions, so the verdict never travels. A
child that dies (BrokenProcessPool) or overruns its limit (killed through `multiprocessing.active_children`, the
public way to reach a pool's processes) fails that scenario with a message saying so, and the next scenario gets a
new child.

The pytest process itself never imports TensorFlow: the child checks each file's Keras names at collection
(`CheckJob`, the same `keras_side.check` an in-process run calls) and reports the versions and thread settings it
trains under when it starts (`warm`), which is what the records and the `skip:`/`xfail:` conditions use. So each
process pays one TensorFlow import, not two, and its memory stays that of pytest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .choices import FitInput
from .errors import ChildError, Problem, TrainingProcessDied, TrainingProcessKilled
from .limits import Limits

HARD_LIMIT_GRACE_S = 1.0  # past a limit checked after every batch, the child is killed
EPOCH_GRACE = 0.05  # past the default limit, checked after every epoch: 5 % of it (an epoch may be long)
WARM_TIMEOUT_S = 600.0  # starting a child and importing TensorFlow there; also the limit for checking one file
DEFAULT_MEMORY_LIMIT_MIB = 2048.0  # a child above this resident size after a scenario is replaced
DIED = "(a native crash — abort, segmentation fault — or the out-of-memory killer)"


@dataclass(frozen=True)
class Job:
    """What the child needs to find and run one scenario: plain data."""

    file: str
    display: str
    root: str
    name: str
    min_seeds: int | None
    fit_input: FitInput
    timeout_s: float | None
    per_batch: bool
    noise_floor: bool
    dtype_policy: str | None = None  # the run's defaults for scenarios without their own
    jit_compile: bool | None = None
    seed_from: int = 0  # --convergence-seeds START:N
    limits: dict[str, int] = field(default_factory=dict)  # Limits.to_plain(): the operator's caps
    digest: str = ""  # of the file as collection checked it: the child trains that file or nothing


@dataclass(frozen=True)
class CheckJob:
    """A scenario file whose Keras names (and model factories) the child checks at collection: plain data."""

    file: str
    display: str
    root: str
    factories: bool
    limits: dict[str, int] = field(default_factory=dict)


def warm() -> dict[str, Any]:
    """Run first in a new child: import TensorFlow there before any time limit starts; what trains here."""
    from . import keras as keras_side

    keras_side.frameworks()
    return {"pid": os.getpid(), "versions": keras_side.versions(), "runtime": dict(keras_side.runtime_settings())}


def check_file(job: CheckJob) -> dict[str, Any]:
    """In the child: the problems `keras.check` finds in a file's scenarios, or the error it raised, as plain
    data (an exception object could need TensorFlow to be rebuilt in the parent)."""
    from . import keras as keras_side
    from .errors import ScenarioError
    from .evaluate import error_as_text
    from .scenario import load_file

    try:
        scenarios = load_file(Path(job.file), display=job.display, root=Path(job.root), limits=_limits(job.limits))
        return {"problems": [dataclasses.asdict(p) for s in scenarios for p in keras_side.check(s, job.factories)]}
    except ScenarioError as exc:  # changed since the parent read it
        return {"problems": [dataclasses.asdict(p) for p in exc.problems]}
    except Exception as exc:
        return {"error": error_as_text(exc)}


def run_job(job: Job) -> dict[str, Any]:
    """In the child: load the scenario, evaluate it, return the outcome as plain data."""
    from .evaluate import evaluate
    from .scenario import load_file

    loaded = load_file(Path(job.file), display=job.display, root=Path(job.root), limits=_limits(job.limits))
    found = [s for s in loaded if s.name == job.name]
    if len(found) != 1 or (job.digest and found[0].digest != job.digest):
        # what was checked at collection is what trains: a file changed since then could name unchecked layers
        raise LookupError(f"{job.display} changed since collection; run the tests again to check and train it")
    (scenario,) = found
    if job.min_seeds:
        scenario = scenario.with_seed_window(job.min_seeds, job.seed_from)
    scenario = scenario.with_run_defaults(job.dtype_policy, job.jit_compile)
    result = evaluate(
        scenario, job.fit_input, timeout_s=job.timeout_s, per_batch=job.per_batch, noise_floor=job.noise_floor
    )
    result.rss_mib, result.pid = _rss_mib(), os.getpid()
    return result.to_plain()


def _limits(plain: dict[str, int]) -> Limits:
    return Limits.from_plain(plain) if plain else Limits()


def _cap_address_space(mib: int) -> None:
    """In a new child (the pool's initializer): `--convergence-limit memory_mib`. An allocation above it fails in
    the child (an error, or the child dies: one scenario fails), never the machine."""
    if mib:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (mib << 20, mib << 20))


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


class Trainer:
    """The pytest process's training child: started on first use, replaced after `every` scenarios, above
    `memory_mib`, or after it died or was killed."""

    def __init__(self, every: int, memory_mib: float = DEFAULT_MEMORY_LIMIT_MIB, address_space_mib: int = 0) -> None:
        self.every, self.memory_mib, self.address_space_mib = every, memory_mib, address_space_mib
        self._pool: ProcessPoolExecutor | None = None
        self._others: set[int | None] = set()  # this process's other children when the pool started: never killed
        self.pid = 0  # the child's process id (from warm)
        self.done = 0  # scenarios the current child ran
        self.versions: dict[str, str] = {}  # what trains in the child (keras_side.versions there, from warm)
        self.runtime: dict[str, Any] = {}  # its thread settings (keras_side.runtime_settings there)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # replaced by this class after `every` scenarios rather than by max_tasks_per_child, so that every new
            # child imports TensorFlow (warm) before a scenario's time limit starts
            self._others = {child.pid for child in multiprocessing.active_children()}
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_cap_address_space,
                initargs=(self.address_space_mib,),
            )
            self.done, self.pid = 0, 0
            try:
                started = self._pool.submit(warm).result(timeout=WARM_TIMEOUT_S)  # not the scenario's time
                self.pid, self.versions, self.runtime = started["pid"], started["versions"], started["runtime"]
            except KeyboardInterrupt:
                self._kill(None)
                raise
            except Exception as exc:
                self._kill(None)
                raise TrainingProcessDied(
                    f"the training process could not start: {type(exc).__name__}: {exc}"
                ) from None
        return self._pool

    def check(self, job: CheckJob) -> list[Problem]:
        """The problems the child finds in a scenario file (collection); ChildError when checking raised there,
        IsolatedFailure when the child died or hung."""
        found = self._call(
            check_file,
            job,
            WARM_TIMEOUT_S,
            lambda s: (
                f"checking the file's Keras names did not end within {WARM_TIMEOUT_S:g} s (a native hang?): its "
                f"process was killed after {s:.1f} s; the other files go on in a new process"
            ),
            f"died while checking the file's Keras names {DIED}; the other files go on in a new process",
        )
        if "error" in found:
            raise ChildError.from_plain(found["error"])
        return [Problem(**p) for p in found["problems"]]

    def run(self, job: Job) -> dict[str, Any]:
        """The child's outcome for `job`; IsolatedFailure when the child died or overran the hard limit."""
        limit = None
        if job.timeout_s is not None:
            limit = job.timeout_s + (HARD_LIMIT_GRACE_S if job.per_batch else max(1.0, EPOCH_GRACE * job.timeout_s))
        out: dict[str, Any] = self._call(
            run_job,
            job,
            limit,
            lambda s: (
                f"the time limit of {job.timeout_s:g} s was reached and training did not stop (a native "
                f"hang?): its process was killed after {s:.1f} s"
            ),
            f"died {DIED}; the other scenarios go on in a new process",
        )
        self.done += 1
        if self.done >= self.every or out["rss_mib"] > self.memory_mib:
            self.close()  # the next scenario gets a fresh child
        return out

    def _call(
        self, function: Callable[[Any], Any], job: Any, limit: float | None, hung: Callable[[float], str], died: str
    ) -> Any:
        """`function(job)` in the child within `limit` seconds. IsolatedFailure when it overran (the child is killed;
        `hung(seconds)` says so) or the child died ("the training process " + `died`)."""
        pool = self._executor()
        started = time.perf_counter()
        try:
            future = pool.submit(function, job)
            return future.result(timeout=limit)
        except FutureTimeout:
            self._kill(future)
            raise TrainingProcessKilled(hung(time.perf_counter() - started)) from None
        except KeyboardInterrupt:  # Ctrl-C: a child stuck in native code would keep the run from ending
            self._kill(None)
            raise
        except BrokenProcessPool:
            self._pool = None
            raise TrainingProcessDied(f"the training process {died}") from None

    def _kill(self, future: Any) -> None:
        """Kill the pool's process (hung inside native code, it would never return; or hung starting, before it
        told its pid: so it is found as the child this process did not have before the pool) and forget the pool,
        once the pool has seen its process die (so that it cleans up its queues itself)."""
        pool, self._pool = self._pool, None
        for child in multiprocessing.active_children():
            if child.pid not in self._others:
                child.kill()
        if future is not None:
            with contextlib.suppress(BaseException):
                future.result(timeout=30)  # BrokenProcessPool, as soon as the pool notices
        if pool is not None:
            pool.shutdown(wait=future is not None, cancel_futures=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
