"""The gate's side-by-side timing: a worker per environment, rounds alternated OLD NEW NEW OLD …, each side's
fastest steady epoch per round, the ratio's Student-t interval against the slowdown limit."""

from __future__ import annotations

import contextlib
import json
import math
import select
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from . import stats
from .errors import GateInputError
from .gate_sides import Side, _kill

DEFAULT_SLOWDOWN = 1.25  # a slowdown counts when the whole interval of the ratio lies above this


TIMING_CONFIDENCE = 0.95


# per round and side; the first is not used (it traces at the first round; later, a new epoch iterator warms up).
# The machine's speed moves in steps of ±20 % that last a fraction of a second (measured here: one round's epochs
# agree within a few %, rounds differ by up to 40 %): many short rounds, back to back, beat a few long ones
TIMING_EPOCHS = 6


MIN_ROUNDS = 4


MAX_ROUNDS = 20


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

    def wait_ready(self, timeout_s: float = 600.0) -> None:
        """Its first line (TensorFlow imported): both workers start at once, then each is waited for."""
        ready = self._read(timeout_s)
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


class Timed(Protocol):
    """A timing worker of one side: a `Worker` here, or a Ray actor's (`cluster.TimingWorker`)."""

    side: Side

    def time(self, job: dict[str, Any], timeout_s: float = 600.0) -> list[float] | str: ...


def round_statistic(seconds: Sequence[float]) -> float | None:
    """A round's time per epoch: its fastest steady epoch (the first traces; noise only adds time)."""
    steady = [s for s in seconds[1:] if s > 0]
    return min(steady) if len(steady) >= 2 else None


def time_side_by_side(
    workers: tuple[Timed, Timed],
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


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms"
