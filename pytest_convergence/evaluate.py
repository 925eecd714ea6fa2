"""One flow, two front ends: train a scenario's seeds, diagnose where the expectations or the reader need it, judge.
The pytest item (collect.py) and `pytest-convergence explain` both call `evaluate` and only turn its result into
their own output: a test outcome and a record, or lines for a person."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import expect, timing, training
from .record import Fidelity, SeedRun

if TYPE_CHECKING:
    from .diagnose import Diagnosis
    from .scenario import Scenario


@dataclass
class Evaluation:
    runs: list[SeedRun] = field(default_factory=list)
    calibration: list[float] = field(default_factory=list)  # the timing workload's seconds, before and after
    verdict: expect.Verdict | None = None  # None when training raised
    diagnosis: Diagnosis | None = None  # the first seed's: what `expect.stable` judged
    # what explains the outcome: the diagnosis of the seed that failed (converges/diverges/predict), else the
    # first seed's; a string when it could not be made (it only explains: it never turns a failure into an error)
    explanation: Diagnosis | str | None = None
    error: Exception | None = None  # training (or the diagnosis `stable` needs) raised this
    fit_input: str = ""  # the path that trained: numpy or dataset
    fidelity: Fidelity | None = None  # the sentinel that chose it, where the input was auto
    numpy_epoch_seconds: list[float] = field(default_factory=list)  # the sentinel's epochs of fit on numpy arrays
    pid: int = field(default_factory=os.getpid)  # the process that trained
    rss_mib: float | None = None  # the training child's resident size after the scenario (--convergence-isolate)

    @property
    def ok(self) -> bool:
        return self.error is None and self.verdict is not None and self.verdict.ok


def evaluate(
    scenario: Scenario,
    fit_input: str,
    *,
    timeout_s: float | None = None,
    per_batch: bool = True,
    noise_floor: bool = False,
    diagnose: bool = False,
    calibrate: bool = True,
) -> Evaluation:
    """Train and judge `scenario`. Where its input is `auto`, the fidelity sentinel decides the path first (within
    the same time limit). The first seed is diagnosed when `expect.stable` needs it or `diagnose` asks; a
    failing seed is diagnosed to explain the failure. With `calibrate`, the machine's speed is timed just before and
    after training (what makes epoch times comparable across runs). An exception from training is returned in
    `error`, with what was measured before it."""
    result = Evaluation()
    if calibrate:
        result.calibration += timing.calibrate()
    deadline = time.perf_counter() + timeout_s if timeout_s else None
    result.fit_input = scenario.fit_input(fit_input)
    try:
        if result.fit_input == "auto" and _short(scenario, noise_floor):
            result.fit_input = "numpy"  # training on the arrays costs less than the sentinel would
        elif result.fit_input == "auto":
            result.fidelity, result.numpy_epoch_seconds = training.fidelity(
                scenario, scenario.seeds[0], deadline, per_batch
            )
            result.fit_input = "dataset" if result.fidelity["agrees"] else "numpy"
        result.runs = training.run(scenario, None, result.fit_input, noise_floor, per_batch, deadline)
        if calibrate:
            result.calibration += timing.calibrate()
        # past the time limit nothing more is computed (the sharpness estimate can take seconds)
        late = deadline is not None and time.perf_counter() >= deadline
        if (diagnose or scenario.spec.expect.stable) and not late:
            result.diagnosis = training.diagnose(scenario, result.runs)
    except Exception as exc:
        result.error = exc
        return result
    result.verdict = expect.judge(scenario.spec.expect, result.runs, timeout_s, result.diagnosis)
    result.explanation = result.diagnosis
    seed = None if result.verdict.ok else expect.explained_seed(result.verdict)
    if seed is not None and late:
        result.explanation = "no stability diagnosis: the time limit was reached"
    elif seed is not None and (result.diagnosis is None or seed != scenario.seeds[0]):
        try:
            result.explanation = training.diagnose(scenario, result.runs, seed)
        except Exception as exc:
            result.explanation = f"no stability diagnosis: {type(exc).__name__}: {exc}"
    return result


def _short(scenario: Scenario, noise_floor: bool) -> bool:
    """A scenario whose whole training is no more epochs than the auto sentinel's: it trains on numpy arrays
    directly (what the sentinel would check against), and its own epochs are its timing."""
    epochs = scenario.spec.epochs * len(scenario.seeds) * (2 if noise_floor else 1)
    return epochs <= training.SENTINEL_EPOCHS + training.FIDELITY_EPOCHS
