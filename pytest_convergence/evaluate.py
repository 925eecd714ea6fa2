"""One flow, two front ends: train a scenario's seeds, diagnose where the expectations or the reader need it, judge.
The pytest item (collect.py) and `pytest-convergence explain` both call `evaluate` and only turn its result into
their own output: a test outcome and a record, or lines for a person."""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from . import expect, timing
from . import keras as keras_side
from .choices import FitInput, FitPath
from .errors import ChildError
from .record import Fidelity, Runtime, ScenarioRecord, SeedRun, Timing
from .text import one_line

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
    fit_input: FitPath | Literal[""] = ""  # the path that trained ("": none did)
    fidelity: Fidelity | None = None  # the sentinel that chose it, where the input was auto
    numpy_epoch_seconds: list[float] = field(default_factory=list)  # the sentinel's epochs of fit on numpy arrays
    pid: int = field(default_factory=os.getpid)  # the process that trained
    rss_mib: float | None = None  # the training child's resident size after the scenario (--convergence-isolate)

    @property
    def ok(self) -> bool:
        return self.error is None and self.verdict is not None and self.verdict.ok

    def into_record(self, record: ScenarioRecord) -> None:
        """Write what this evaluation measured into a scenario's record: the runtime keys it knows (the path that
        trained, whether those were fit's own batches, the process), the timing, the fidelity, the diagnosis."""
        runtime = record.setdefault("runtime", Runtime())
        runtime["fit_input"] = self.fit_input
        runtime["fit_batches"] = self.fit_input == "numpy" or bool(self.fidelity and self.fidelity["agrees"])
        runtime["pid"] = self.pid
        if self.rss_mib is not None:
            runtime["child_rss_mib"] = self.rss_mib
        runs = [] if self.error is not None else self.runs
        record["timing"] = Timing(
            workload=timing.WORKLOAD,
            calibration_s=self.calibration,
            epochs=timing.epoch_summary([r.epoch_seconds for r in runs]),
            numpy_epochs=timing.epoch_summary([self.numpy_epoch_seconds]),
        )
        if self.fidelity is not None:
            record["fidelity"] = self.fidelity
        if self.explanation is not None:
            said = self.explanation
            record["diagnosis"] = said if isinstance(said, str) else said.to_dict()

    # ---- the one codec: plain data (JSON-able) for crossing from the training child to the pytest process

    def to_plain(self) -> dict[str, Any]:
        """Everything measured, as plain data; the verdict is left out (the receiver judges again, see from_plain)
        and an error goes as text (its class name, message and traceback: rebuilding it could need TensorFlow)."""
        explanation = self.explanation
        return {
            "runs": [dataclasses.asdict(r) for r in self.runs],
            "calibration": self.calibration,
            "diagnosis": None if self.diagnosis is None else dataclasses.asdict(self.diagnosis),
            "explanation": explanation
            if isinstance(explanation, str) or explanation is None
            else dataclasses.asdict(explanation),
            "fit_input": self.fit_input,
            "fidelity": self.fidelity,
            "numpy_epoch_seconds": self.numpy_epoch_seconds,
            "error": None if self.error is None else error_as_text(self.error),
            "rss_mib": self.rss_mib,
            "pid": self.pid,
        }

    @classmethod
    def from_plain(cls, out: dict[str, Any], scenario: Scenario, timeout_s: float | None) -> Evaluation:
        """The evaluation from to_plain's data: runs and diagnosis rebuilt, the verdict judged again here."""
        from .diagnose import Diagnosis

        def diagnosis(d: dict[str, Any] | None) -> Diagnosis | None:
            return None if d is None else Diagnosis(**d)

        result = cls(
            runs=[SeedRun(**r) for r in out["runs"]],
            calibration=list(out["calibration"]),
            fit_input=out["fit_input"],
            fidelity=out["fidelity"],
            numpy_epoch_seconds=list(out["numpy_epoch_seconds"]),
            pid=out["pid"],
            rss_mib=out["rss_mib"],
        )
        result.diagnosis = diagnosis(out["diagnosis"])
        explanation = out["explanation"]
        result.explanation = (
            explanation if isinstance(explanation, str) or explanation is None else diagnosis(explanation)
        )
        if out["error"] is not None:
            result.error = ChildError.from_plain(out["error"])
            return result
        result.verdict = expect.judge(scenario.spec.expect, result.runs, timeout_s, result.diagnosis)
        return result


def error_as_text(exc: BaseException) -> dict[str, str]:
    """An exception as plain data: its class name, message and traceback."""
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "trace": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


def evaluate(
    scenario: Scenario,
    fit_input: FitInput,
    *,
    timeout_s: float | None = None,
    per_batch: bool = True,
    noise_floor: bool = False,
    diagnose: bool = False,
    calibrate: bool = True,
) -> Evaluation:
    """Train and judge `scenario`. Where its input is `auto`, every seed trains `fit`'s own batches (`_train_auto`:
    the fast path only where its sentinel proves it, within the same time limit). The first seed is diagnosed when
    `expect.stable` needs it or `diagnose` asks; a failing seed is diagnosed to explain the failure. With `calibrate`,
    the machine's speed is timed just before and after training (what makes epoch times comparable across runs). An
    exception from training is returned in `error`, with what was measured before it."""
    result = Evaluation()
    if calibrate:
        result.calibration += timing.calibrate()
    deadline = time.perf_counter() + timeout_s if timeout_s else None
    asked = scenario.fit_input(fit_input)
    try:
        if asked == "auto":  # _train_auto says which path trained
            result.runs = _train_auto(scenario, result, deadline, noise_floor, per_batch)
        else:
            result.fit_input = asked
            result.runs = keras_side.run(scenario, None, asked, noise_floor, per_batch, deadline)
        if calibrate:
            result.calibration += timing.calibrate()
        # past the time limit nothing more is computed (the sharpness estimate can take seconds)
        late = deadline is not None and time.perf_counter() >= deadline
        if (diagnose or scenario.spec.expect.stable) and not late:
            try:
                result.diagnosis = keras_side.diagnose(scenario, result.runs, deadline=deadline)
            except TimeoutError:  # the sharpness estimate reached the time limit: judged as a run past it
                late = True
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
            result.explanation = keras_side.diagnose(scenario, result.runs, seed, deadline)
        except Exception as exc:
            result.explanation = f"no stability diagnosis: {type(exc).__name__}: {exc}"
    return result


# Up to this many epochs in all, training on the arrays costs about what the sentinel would (its 21 epochs of fit on the
# arrays, and one more model to build and trace).
SHORT_EPOCHS = keras_side.SENTINEL_EPOCHS + 5


def _train_auto(
    scenario: Scenario, result: Evaluation, deadline: float | None, noise_floor: bool, per_batch: bool
) -> list[SeedRun]:
    """`fit.input: auto`: every seed trains what `fit` on the numpy arrays trains. On the arrays themselves where
    the fast path does not pay (Keras 2, short scenarios); else the sentinel (`fit` on the
    arrays, up to SENTINEL_EPOCHS epochs) runs beside the first seed's real run on the fast path, and the fast path
    keeps that run and trains the other seeds only where the two agree bit for bit, epoch by epoch. Sets the path,
    the verdict and the sentinel's epoch times on `result`."""
    result.fit_input = "numpy"

    def on_the_arrays() -> list[SeedRun]:
        return keras_side.run(scenario, None, "numpy", noise_floor, per_batch, deadline)

    if _short(scenario, noise_floor) or not keras_side.fast_path_pays():
        return on_the_arrays()
    first, *others = scenario.seeds
    try:
        reference = keras_side.sentinel(scenario, first, deadline, per_batch)
    except Exception as exc:  # the real run on the arrays raises it again, where expect.raises can judge it
        result.fidelity = _unproven(f"fit on numpy arrays raised {type(exc).__name__}: {one_line(exc, 200)}")
        return on_the_arrays()
    result.numpy_epoch_seconds = reference.epoch_seconds
    try:  # stops at the first epoch that differs from the sentinel's, before its rounding-floor twin
        fast = keras_side.run_seed(scenario, first, deadline, "dataset", noise_floor, per_batch, reference)
    except Exception as exc:  # the path's own failure, or the scenario's (e.g. in predict): the arrays will tell
        result.fidelity = _unproven(f"the run on the fast path raised {type(exc).__name__}: {one_line(exc, 200)}")
    else:
        result.fidelity = keras_side.agreement(reference, fast)
    if not result.fidelity["agrees"]:
        return on_the_arrays()
    result.fit_input = "dataset"
    return [fast, *(keras_side.run_seed(scenario, s, deadline, "dataset", noise_floor, per_batch) for s in others)]


def unmet_settings(scenario: Scenario, runs: list[SeedRun]) -> list[str]:
    """The scenario's settings that could not take effect on this Keras, each said once (the item warns and records
    them; explain prints them): `jit_compile: true` where Keras trained without XLA — Keras 3 turns XLA off while
    TensorFlow's op determinism is on, and every scenario trains under it so that a seed's run repeats exactly."""
    if scenario.spec.jit_compile and any(run.jit_compile is False for run in runs):
        return [
            "jit_compile: true could not take effect: this Keras turned XLA off, as Keras 3 does under op "
            "determinism (on for every scenario, so that runs repeat exactly); it trained without XLA"
        ]
    return []


def _unproven(reason: str) -> Fidelity:
    return Fidelity(agrees=False, epochs=0, largest_difference=None, at_epoch=None, reason=reason)


def _short(scenario: Scenario, noise_floor: bool) -> bool:
    """A scenario whose whole training is no more epochs than the auto sentinel's: it trains on numpy arrays
    directly (what the sentinel would check against), and its own epochs are its timing."""
    epochs = scenario.spec.epochs * len(scenario.seeds) * (2 if noise_floor else 1)
    return epochs <= SHORT_EPOCHS
