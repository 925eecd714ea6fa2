"""The oracle: a scenario trains what the user's own `model.fit` on the numpy arrays trains.

For every scenario of every shipped file, and for a hand-written shuffled mini-batch scenario, the plugin trains with
its default settings (`fit.input: auto`: the fast path wherever its sentinel lets it), and the bare Keras script a
user would write — seed, build, compile, `fit` on the arrays — trains each seed again, written here without any of
the plugin's training code. Every epoch's loss and metric of every seed must be the same. Runs on the newest
TensorFlow (`tox -e oracle-tf221`) and on the oldest that CI runs (`tox -e oracle-tf215`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_convergence.evaluate import evaluate
from pytest_convergence.scenario import Scenario, load_file
from pytest_convergence.spec import ScheduleSpec

pytestmark = [pytest.mark.keras, pytest.mark.oracle]

SHIPPED = Path(__file__).resolve().parent.parent / "scenarios"
# How many epochs of each seed the bare script trains and compares (0: all). Keras 3's `fit` on arrays costs ~30-50
# ms an epoch here, so all 13 500 epochs of the shipped suite take ~8 min with -n 2; the tox envs compare the first
# 100 of each seed (past the sentinel's 21, every scenario's order, split, callbacks and schedules at work for 100
# epochs) and the nightly workflow all of them.
EPOCHS = int(os.environ.get("CONVERGENCE_ORACLE_EPOCHS", "0") or 0)
# The plugin's per-epoch values and the bare script's are the same computation on the same batches: equal but for
# float rounding, which neither side has cause for (same kernels, op determinism). A loose bound would hide a
# wrong batch order only where it moves the loss less than this.
RTOL = 1e-6


def shipped() -> list[Scenario]:
    return [s for f in sorted(SHIPPED.glob("*.yaml")) for s in load_file(f, root=SHIPPED.parent)]


def keras_module() -> Any:
    import importlib

    legacy = os.environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true")
    return importlib.import_module("tf_keras" if legacy else "keras")


def bare_fit(scenario: Scenario, seed: int, epochs: int, predict: bool = False) -> dict[str, list[float]]:
    """What a user's script does for `scenario` and `seed`: seed, build, compile, `fit` on the numpy arrays, `epochs`
    epochs (and with `predict`, predict the scenario's points as it gives them). `clear_session` stands in for the
    fresh process a script starts in; op determinism is on, as the plugin runs (a script without it may pick
    non-deterministic kernels)."""
    import tensorflow as tf

    keras = keras_module()
    tf.config.experimental.enable_op_determinism()
    spec = scenario.spec
    keras.backend.clear_session()
    if spec.dtype_policy:
        keras.mixed_precision.set_global_policy(spec.dtype_policy)
    try:
        keras.utils.set_random_seed(seed)
        assert not isinstance(spec.model, str), "the oracle builds layer lists; a factory scenario needs its own"
        layers = [getattr(keras.layers, layer.class_name)(**layer.kwargs) for layer in spec.model]
        model = keras.Sequential([keras.Input(shape=scenario.x.shape[1:], dtype=scenario.x.dtype.name), *layers])
        schedules = keras.optimizers.schedules
        options = {
            k: getattr(schedules, v.class_name)(**v.kwargs) if isinstance(v, ScheduleSpec) else v
            for k, v in spec.optimizer.kwargs.items()
        }
        optimizer = type(keras.optimizers.get(spec.optimizer.name))(**options)
        loss = getattr(keras.losses, spec.loss.name)(**spec.loss.kwargs) if spec.loss.kwargs else spec.loss.name
        compiled = {} if spec.jit_compile is None else {"jit_compile": spec.jit_compile}
        model.compile(optimizer=optimizer, loss=loss, metrics=list(spec.metrics) or None, **compiled)
        fit: dict[str, Any] = {"shuffle": spec.shuffle} if spec.shuffle is not None else {}
        if spec.validation_split is not None:
            fit["validation_split"] = spec.validation_split
        history = model.fit(
            scenario.x,
            scenario.y,
            batch_size=spec.batch_size,
            epochs=epochs,
            verbose=0,
            callbacks=[getattr(keras.callbacks, c.class_name)(**c.kwargs) for c in spec.callbacks],
            **fit,
        )
        points = spec.expect.predict
        if predict and points is not None:
            xs, _ = points.points()
            given = xs[:, 0].tolist() if points.input == "list" else xs.reshape((len(xs), *scenario.x.shape[1:]))
            model.predict(given, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def check_against_bare_fit(scenario: Scenario) -> list[str]:
    """Train `scenario` as the plugin does by default, then each seed as the bare script: the differences found."""
    result = evaluate(scenario, "auto", calibrate=False)
    if result.error is not None:  # after training (Keras 3's predict on a list): the bare script must meet it too
        try:
            bare_fit(scenario, scenario.seeds[0], EPOCHS or scenario.spec.epochs, predict=True)
        except Exception as exc:
            assert (type(exc), str(exc)) == (type(result.error), str(result.error))
            return []
        raise AssertionError(f"the plugin's run raised {result.error!r}; the bare script did not")
    found = []
    for run in result.runs:
        assert run.epochs_run > 0, f"seed {run.seed} trained no epoch"
        bare = bare_fit(scenario, run.seed, min(run.epochs_run, EPOCHS or run.epochs_run))
        for name, ours in {"loss": run.losses, **run.metrics}.items():
            if name == "lr" or name == "learning_rate":  # ReduceLROnPlateau's log: not a curve of the model
                continue
            theirs = bare[name]
            ours = ours[: len(theirs)]
            close = np.isclose(ours, theirs, rtol=RTOL, atol=0.0, equal_nan=True)
            if not close.all():
                first = int(np.argmin(close))
                found.append(
                    f"seed {run.seed} {name} (fit input {result.fit_input}): from epoch {first + 1}, {ours[first]!r} "
                    f"against bare fit's {theirs[first]!r}"
                )
    return found


@pytest.mark.parametrize("scenario", shipped(), ids=lambda s: f"{s.file.name}::{s.name}")
def test_a_shipped_scenario_trains_what_bare_fit_trains(scenario: Scenario) -> None:
    assert check_against_bare_fit(scenario) == []


SHUFFLED_MINI_BATCHES = """\
scenarios:
  - name: shuffled-mini-batches
    data: {x: {linspace: [-2, 2, 96]}, y: "0.5 * x ** 2 - x"}
    model: [{Dense: {units: 8, activation: tanh}}, {Dense: {units: 1}}]
    loss: mean_squared_error
    optimizer: {name: sgd, learning_rate: 0.05}
    batch_size: 8
    epochs: 30
    seeds: 3
    expect: {converges: {loss_below: 10.0}}
"""


def test_shuffled_mini_batches_train_what_bare_fit_trains(tmp_path: Path) -> None:
    """96 samples in batches of 8, shuffled by fit, two Dense layers, SGD, 3 seeds, 30 epochs: each seed's every epoch
    within 1e-4 (relative) of the bare script, with the defaults and on the fast path forced."""
    path = tmp_path / "shuffled.yaml"
    path.write_text(SHUFFLED_MINI_BATCHES, encoding="utf-8")
    (scenario,) = load_file(path, root=tmp_path)
    from pytest_convergence import keras as keras_side

    result = evaluate(scenario, "auto", calibrate=False)
    assert result.ok and [r.epochs_run for r in result.runs] == [30, 30, 30]
    # on Keras 3 the fast path trained (the subject of the check); Keras 2 fits the arrays under auto
    assert result.fit_input == ("dataset" if keras_side.keras_major() >= 3 else "numpy")
    # and the fast path itself, unchecked (fit.input: dataset): Keras 2's adapter as well as Keras 3's
    forced = evaluate(scenario, "dataset", calibrate=False)
    for run, fast in zip(result.runs, forced.runs, strict=True):
        bare = bare_fit(scenario, run.seed, 30)["loss"]
        np.testing.assert_allclose(run.losses, bare, rtol=1e-4)
        np.testing.assert_allclose(fast.losses, bare, rtol=1e-4)
    # the seeds draw other orders and weights: three different curves, not one curve three times
    assert len({tuple(r.losses) for r in result.runs}) == 3
