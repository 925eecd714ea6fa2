"""`pytest-convergence explain FILE::SCENARIO`: run one scenario, say why it behaves as it does
(the stability diagnosis), and sweep a few learning rates around the bound with their verdicts."""

from __future__ import annotations

import math
from collections.abc import Generator
from pathlib import Path

from . import failure_text
from .choices import FitInput
from .errors import ExplainInputError, ScenarioError
from .evaluate import evaluate, unmet_settings
from .record import Fidelity
from .scenario import Scenario, load_file
from .text import fmt

SWEEP = (0.25, 0.5, 0.9, 1.1, 2.0)  # multiples of the bound
SWEEP_UNBOUNDED = (0.1, 0.3, 3.0, 10.0)  # multiples of the configured rate, when there is no finite bound


def find(target: str) -> Scenario:
    """FILE::SCENARIO (or FILE when it holds one scenario) → the validated scenario."""
    file, _, name = target.partition("::")
    path = Path(file)
    if not path.is_file():
        raise ExplainInputError(f"{file}: no such file")
    try:
        scenarios = load_file(path, display=file, root=Path.cwd())
    except ScenarioError as exc:
        raise ExplainInputError(str(exc)) from None
    names = [s.name for s in scenarios]
    if not name and len(scenarios) == 1:
        return scenarios[0]
    for scenario in scenarios:
        if scenario.name == name:
            return scenario
    wanted = f"no scenario {name!r} in {file}" if name else f"{file} holds {len(names)} scenarios: name one"
    raise ExplainInputError(f"{wanted}; write {file}::NAME with NAME one of: {', '.join(names)}")


def sweep_rates(learning_rate: float, bound: float) -> list[float]:
    """A few learning rates around the stability bound, and the configured one."""
    multiples = [bound * k for k in SWEEP] if math.isfinite(bound) else [learning_rate * k for k in SWEEP_UNBOUNDED]
    return sorted({*(float(f"{r:.3g}") for r in multiples), learning_rate})


def explain(scenario: Scenario, seed: int | None, fit_input: FitInput) -> Generator[str, None, bool]:
    """Lines of the explanation, yielded as each training run finishes; returns whether the scenario passes."""
    from . import keras as keras_side

    problems = keras_side.check(scenario)
    if problems:
        raise ExplainInputError(str(ScenarioError(problems)))
    seed = scenario.seeds[0] if seed is None else seed
    fit_input = scenario.fit_input(fit_input)
    v = keras_side.versions()
    yield (
        f"{scenario.shown}:{scenario.line}: scenario {scenario.name!r} — seed {seed}, fit input {fit_input}, "
        f"TF {v['tensorflow']}, {v['keras_package']} {v['keras']}"
    )
    with keras_side.quiet():  # tf_keras's first fit logs a tf.data notice as an error
        result = evaluate(scenario.with_seeds([seed]), fit_input, diagnose=True, calibrate=False)
    if result.error is not None:
        raise result.error
    assert result.verdict is not None and result.diagnosis is not None
    run, diagnosis = result.runs[0], result.diagnosis
    if result.fidelity is not None:
        yield f"  {describe_fidelity(result.fit_input, result.fidelity)}"
    for note in unmet_settings(scenario, result.runs):
        yield f"  note: {note}"
    fit_input = result.fit_input or fit_input  # the sweep trains as the scenario did
    for check in result.verdict.seeds[0].checks:
        yield f"  {'ok  ' if check.ok else 'FAIL'} {check.expectation}: {check.message}"
    yield f"  {failure_text.curve_summary(run)}"
    if run.losses:
        yield f"  curve (log scale, epochs 1..{run.epochs_run}): {failure_text.sparkline(run.losses)}"
    if failure_text.units_summary(run):
        yield f"  {failure_text.units_summary(run)}"
    yield from diagnosis.lines()
    if diagnosis.flat:
        yield "no learning-rate sweep: with zero gradient no learning rate changes the run"
        yield f"verdict: {'pass' if result.verdict.ok else 'FAIL'}"
        return result.verdict.ok

    yield f"learning-rate sweep (seed {seed}, {scenario.spec.epochs} epochs, the scenario's expectations):"
    yield f"  {'lr':>10} {'× bound':>8}  {'verdict':<7} {'last loss':>10} {'epochs':>7}  curve"
    for lr in sweep_rates(diagnosis.learning_rate, diagnosis.bound):
        with keras_side.quiet():
            trial = evaluate(scenario.with_seeds([seed]).with_learning_rate(lr), fit_input, calibrate=False)
        if trial.error is not None:
            raise trial.error
        losses = trial.runs[0].losses
        last = fmt(losses[-1]) if losses else "-"
        mark = "  ← configured" if lr == diagnosis.learning_rate else ""
        yield (
            f"  {lr:>10.4g} {lr / diagnosis.bound:>8.3g}  {'pass' if trial.ok else 'FAIL':<7} {last:>10} "
            f"{len(losses):>7}  {failure_text.sparkline(losses, 24)}{mark}"
        )
    yield f"verdict: {'pass' if result.verdict.ok else 'FAIL'}"
    return result.verdict.ok


def describe_fidelity(path: str, fidelity: Fidelity) -> str:
    """One line: which input path trained and why (the auto sentinel's verdict)."""
    if fidelity["agrees"]:
        return (
            f"fit input {path}: the fast path trained what fit on the numpy arrays trains, every one of "
            f"{fidelity['epochs']} epochs equal (checked)"
        )
    return f"fit input {path}: {fidelity['reason']}"
