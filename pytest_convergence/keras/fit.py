"""Training: one seed's run through `model.fit` (on the numpy arrays, or on fit's own batches made once by Keras's
array adapter), the auto sentinel that proves the fast path equal, the recorder of every epoch, the epoch timer.
"""

from __future__ import annotations

import functools
import importlib
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..choices import FitInput, FitPath
from ..errors import FastPathError
from ..expect import EXPECTATIONS_DECIDED, stop_reason
from ..record import TIME_LIMIT, Fidelity, SeedRun, relative_difference
from ..scenario import Scenario, split_at
from ..text import one_line
from .build import array_options, compile_model, fit_batches, fresh_model, make_callback, train_part, weights_hash
from .environment import dtype_policy, frameworks, keras_major_of
from .probes import unit_states


def run(
    scenario: Scenario,
    timeout_s: float | None = None,
    fit_input: FitInput = "numpy",
    noise_floor: bool = False,
    per_batch: bool = True,
    deadline: float | None = None,
) -> list[SeedRun]:
    """Train the scenario once per seed, with the Keras of this environment, within `timeout_s` in all (checked
    after every batch, or with `per_batch=False` after every epoch), or until `deadline` (a time.perf_counter()
    value). `fit_input` (numpy or dataset; `auto` is decided first, see evaluate.py) is used where the
    scenario has no fit.input; `noise_floor` measures each seed's rounding floor."""
    if deadline is None and timeout_s:
        deadline = time.perf_counter() + timeout_s
    chosen = scenario.fit_input(fit_input)
    if chosen == "auto":
        raise ValueError("fit input 'auto': decide it first (evaluate.py)")
    return [run_seed(scenario, seed, deadline, chosen, noise_floor, per_batch) for seed in scenario.seeds]


def run_seed(
    scenario: Scenario,
    seed: int,
    deadline: float | None = None,
    fit_input: FitPath = "numpy",
    noise_floor: bool = False,
    per_batch: bool = True,
    reference: SeedRun | None = None,
) -> SeedRun:
    """One seed's run. An exception propagates, unless the scenario expects one (`expect.raises`):
    then it is recorded on the SeedRun, with whatever epochs ran before it. Past `deadline`
    (a time.perf_counter() value) training stops after the current batch (or epoch). With `noise_floor`, the
    seed trains a second time from its initial weights moved by one ulp, as many epochs as the
    first run, and the SeedRun keeps how far the curve moved (its rounding floor). With `reference` (auto's
    sentinel), training stops at the first epoch that differs from it (stop_reason UNEQUAL), without the twin."""
    record = SeedRun(seed=seed, epochs_planned=scenario.spec.epochs)
    if deadline is not None and time.perf_counter() >= deadline:
        record.stop_reason = TIME_LIMIT
        return record
    try:
        _train(scenario, record, deadline, fit_input, per_batch=per_batch, reference=reference)
    except Exception as exc:
        if scenario.spec.expect.raises is None or isinstance(exc, FastPathError):
            raise
        record.error = f"{type(exc).__name__}: {one_line(exc)}"
        record.error_types = [c.__name__ for c in type(exc).__mro__]
    if noise_floor and record.losses and record.error is None and record.stop_reason not in (TIME_LIMIT, UNEQUAL):
        nudged = SeedRun(seed=seed, epochs_planned=record.epochs_run)
        _train(scenario, nudged, deadline, fit_input, nudge=True, per_batch=per_batch)
        if nudged.stop_reason != TIME_LIMIT:
            record.measure_floor(nudged.losses)
    return record


SENTINEL_EPOCHS = 21  # fit on numpy arrays, timed: the first epoch traces; compare times 20 steady ones


def sentinel(scenario: Scenario, seed: int, deadline: float | None = None, per_batch: bool = True) -> SeedRun:
    """The reference of `fit.input: auto`: `seed` trains up to SENTINEL_EPOCHS epochs exactly as the scenario asks
    (its shuffling, batch size, validation split, callbacks) with `fit` on the numpy arrays — plain: no early stop, no
    predict. Its epochs are what a user's `fit` costs here, and its curve is what the fast path must reproduce."""
    reference = SeedRun(seed=seed, epochs_planned=min(SENTINEL_EPOCHS, scenario.spec.epochs))
    _train(scenario, reference, deadline, "numpy", per_batch=per_batch, plain=True)
    return reference


UNEQUAL = "differs from fit on the arrays"  # a stop_reason: the fast path's run left fit's curve (auto's sentinel)


def epoch_difference(reference: SeedRun, run: SeedRun, epoch: int) -> float:
    """The largest relative difference between `run` and `reference` at `epoch` (from 1) over the loss and every
    metric the reference logged (val_loss, accuracy, …); inf where `run` lacks one of them."""
    i = epoch - 1
    curves = [(reference.losses, run.losses), *((v, run.metrics.get(k, [])) for k, v in reference.metrics.items())]
    return max(relative_difference(a[i], b[i]) if i < len(b) else math.inf for a, b in curves)


def agreement(reference: SeedRun, fast: SeedRun) -> Fidelity:
    """Whether the fast path's run of a seed trained what `fit` on the arrays trained: every epoch both ran has the
    same loss and the same metrics, bit for bit, over at least two epochs where the reference has them (the order of
    a second epoch is what shows a batch order that is not fit's). Shuffling, batch size and validation are the
    scenario's own, so a batch out of fit's order shows (a different order moves the loss far above rounding)."""
    compared = min(reference.epochs_run, fast.epochs_run)
    by_epoch = [epoch_difference(reference, fast, epoch) for epoch in range(1, compared + 1)]
    worst = max(by_epoch, default=0.0)
    at = next((i + 1 for i, d in enumerate(by_epoch) if d > 0), None)  # the first epoch that differs
    enough = compared >= min(2, reference.epochs_run) and compared > 0
    agrees = enough and worst == 0.0
    if agrees:
        reason = ""
    elif worst > 0.0:
        reason = (
            f"the fast path differs from fit on the numpy arrays from epoch {at} of {compared} (by up to {worst:.2g}, "
            "relative; they must be equal): this Keras feeds arrays to fit differently"
        )
    else:
        reason = (
            f"the fast path's run stopped after {fast.epochs_run} epoch(s) ({fast.stop_reason}; error: "
            f"{fast.error or 'none'}): too few to show it keeps fit's order"
        )
    return Fidelity(agrees=agrees, epochs=compared, largest_difference=worst, at_epoch=at, reason=reason)


def _train(
    scenario: Scenario,
    record: SeedRun,
    deadline: float | None,
    fit_input: FitPath,
    nudge: bool = False,
    per_batch: bool = True,
    plain: bool = False,
    reference: SeedRun | None = None,
) -> None:
    """Fit the scenario for `record.seed`, filling `record`. `plain`: `record.epochs_planned` epochs, no early
    stop on decided expectations, no predict (the fidelity sentinel). `nudge`: the rounding-floor run — plain, and
    every initial weight moved one ulp up. `reference`: stop at the first epoch that differs from it."""
    plain = plain or nudge
    tf, keras = frameworks()
    spec = scenario.spec
    with dtype_policy(keras, spec.dtype_policy):
        model = fresh_model(keras, scenario, record.seed)
        if not nudge:
            record.initial_weights = weights_hash(model.get_weights())
        if nudge:
            model.set_weights([np.nextafter(w, np.inf, dtype=w.dtype) for w in model.get_weights()])
        inputs: tuple[Any, ...] = (scenario.x, scenario.y)
        options: dict[str, Any] = {}
        compiled: dict[str, Any] = {}
        if spec.jit_compile is not None:
            compiled["jit_compile"] = spec.jit_compile
        if fit_input == "dataset":
            inputs, options["steps_per_epoch"], validation = _fit_dataset(tf, keras, scenario, record.epochs_planned)
            if validation is not None:
                options["validation_data"] = validation
            options["shuffle"] = False  # the batches come in fit's order; Keras 3 warns about shuffle=True here
            # one call into the compiled step loop per epoch: the same steps and updates, far less Python per
            # batch (batch-level callbacks, so the time limit, then see each epoch as one batch)
            compiled["steps_per_execution"] = options["steps_per_epoch"]
        else:
            options = array_options(scenario)
        compile_model(keras, model, scenario, compiled)
        record.jit_compile = _jit_compile(model)
        callbacks = [make_callback(keras, c) for c in spec.callbacks]
        start = time.perf_counter()
        model.fit(
            *inputs,
            epochs=record.epochs_planned,
            verbose=0,
            # the recorder last: it sees what the others add to the logs (ReduceLROnPlateau's learning rate)
            callbacks=[
                *callbacks,
                _recorder(keras, deadline is not None and per_batch)(
                    record, None if plain else spec.expect, deadline, reference
                ),
            ],
            **options,
        )
        record.fit_seconds = time.perf_counter() - start
        if record.stop_reason == "completed" and record.epochs_run < record.epochs_planned:
            stopped = [c.class_name for c, made in zip(spec.callbacks, callbacks, strict=True) if _stopped(made)]
            record.stop_reason = f"callback {stopped[0] if stopped else 'a callback'}"
        if not plain and record.stop_reason != TIME_LIMIT and not isinstance(spec.model, str):
            record.units = unit_states(tf, model, train_part(scenario)[0])
        predict = spec.expect.predict
        if predict is not None and record.stop_reason not in (TIME_LIMIT, UNEQUAL) and not plain:
            xs, _ = predict.points()
            # "list" passes what user code typically writes: [25.0] for one feature, [[1.0, 2.0]] for several
            given: Any = xs.reshape((len(xs), *scenario.x.shape[1:])).astype(scenario.x.dtype)
            if predict.input == "list":
                given = xs[:, 0].tolist() if xs.shape[1] == 1 else xs.tolist()
            out = np.asarray(model.predict(given, verbose=0), dtype=np.float64)
            record.predictions = out.reshape(len(xs), -1).tolist()


def epoch_timer(scenario: Scenario, seed: int) -> Callable[[int], list[float]]:
    """The gate's timing probe (timeprobe.py): the scenario's model built and compiled once, from `seed`'s initial
    weights; each call fits it `epochs` epochs more with `fit` on the numpy arrays, as the scenario asks (batch size,
    shuffling, validation split, callbacks), and returns each epoch's seconds. Only the first call's first epoch
    traces the train step: the calls after it time what a user's `fit` costs per epoch, quickly."""
    _, keras = frameworks()
    spec = scenario.spec
    with dtype_policy(keras, spec.dtype_policy):
        model = fresh_model(keras, scenario, seed)
        compile_model(keras, model, scenario, {} if spec.jit_compile is None else {"jit_compile": spec.jit_compile})
    callbacks = [make_callback(keras, c) for c in spec.callbacks]
    recorder = _recorder(keras, timed=False)
    options = array_options(scenario)

    def fit(epochs: int) -> list[float]:
        record = SeedRun(seed=seed, epochs_planned=epochs)
        with dtype_policy(keras, spec.dtype_policy):
            model.fit(
                scenario.x,
                scenario.y,
                epochs=epochs,
                verbose=0,
                callbacks=[*callbacks, recorder(record, None, None)],
                **options,
            )
        return record.epoch_seconds

    return fit


def _stopped(callback: Any) -> bool:
    """Whether this Keras callback stopped training (EarlyStopping's stopped_epoch; TerminateOnNaN leaves a
    non-finite loss, which the record already says)."""
    return bool(getattr(callback, "stopped_epoch", 0))


def _jit_compile(model: Any) -> bool | None:
    """Whether the compiled model's train step uses XLA, as Keras resolved it (Keras 3: 'auto' → on where XLA
    can, and off under op determinism; Keras 2: None, i.e. off, unless asked); None where this Keras has no such
    attribute."""
    if not hasattr(model, "jit_compile"):
        return None
    return bool(model.jit_compile)


def _fit_dataset(tf: Any, keras: Any, scenario: Scenario, epochs: int) -> tuple[tuple[Any], int, Any]:
    """The fast input path: the batches `fit` makes of the numpy arrays, in the order it trains them, built by this
    Keras's own array adapter (the class `fit` hands the arrays to) and kept as one pipeline for the whole fit, so
    that no epoch pays for a new iterator. Returns (inputs, steps per epoch, validation data or None).

    Keras 3's `fit` iterates a fresh iterator of the adapter's dataset every epoch, and a fresh iterator draws the
    same order each time (its shuffle op's seeds are fixed when the dataset is built under the scenario's seed): the
    first epoch's batches, cached and repeated, are every epoch's. Keras 2's `fit` builds one dataset for all its
    epochs and iterates it once: the same dataset, built for the same number of epochs, is used as it is. Either is
    an account of how this Keras works, so the `auto` sentinel checks it for every scenario on its first seed (and
    tests/test_oracle.py on every seed of the shipped ones): every epoch's losses and metrics equal `fit`'s. With
    validation_split, the last samples validate, as `fit` splits arrays (before shuffling), in batches of the same
    size."""
    spec = scenario.spec
    x, y = train_part(scenario)
    batch, steps = fit_batches(len(x), spec.batch_size)
    shuffle = spec.shuffle is not False  # fit shuffles by default
    adapter = _array_adapter(keras)
    if keras_major_of(keras) >= 3:
        data = adapter(x, y, batch_size=batch, shuffle=shuffle).get_tf_dataset().cache().repeat()
    else:
        data = adapter(x, y, batch_size=batch, epochs=epochs, shuffle=shuffle).get_dataset()
    validation = None
    if spec.validation_split is not None:
        held = split_at(len(scenario.x), spec.validation_split)
        validation = tf.data.Dataset.from_tensor_slices((scenario.x[held:], scenario.y[held:])).batch(batch)
    return (data,), steps, validation


def _array_adapter(keras: Any) -> Any:
    """The class this Keras's `fit` hands numpy arrays to (Keras 3: ArrayDataAdapter; Keras 2 and tf_keras:
    TensorLikeDataAdapter, outside `src` on Keras 2.12). Private to Keras: where it moved, FastPathError — never
    the scenario's own error — and `auto` trains on the arrays."""
    root = keras.__name__.split(".")[0]
    if keras_major_of(keras) >= 3:
        places = [(f"{root}.src.trainers.data_adapters.array_data_adapter", "ArrayDataAdapter")]
    else:
        places = [(f"{root}.src.engine.data_adapter", "TensorLikeDataAdapter")]
        places.append((f"{root}.engine.data_adapter", "TensorLikeDataAdapter"))
    for module, name in places:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise FastPathError(
        f"{root} {keras.__version__} has no array adapter where this plugin looks ({', '.join(m for m, _ in places)})"
    )


@functools.cache
def _recorder(keras: Any, timed: bool) -> type:
    """A Callback class (made once per Keras) recording losses, metrics and times per epoch,
    and stopping training as soon as the expectations are decided. `timed` adds the per-batch
    time-limit check; without a limit there is no batch hook, which lets Keras skip its per-batch
    callback work (measurable on Keras 3 for tiny models)."""

    class Recorder(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(
            self, record: SeedRun, expect: Any, deadline: float | None, reference: SeedRun | None = None
        ) -> None:
            super().__init__()
            self.record, self.expect, self.deadline, self.started = record, expect, deadline, 0.0
            self.reference = reference

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            record = self.record
            if record.stop_reason == TIME_LIMIT:
                return  # the epoch was cut short: its mean loss is not comparable
            record.epoch_seconds.append(time.perf_counter() - self.started)
            for key, value in (logs or {}).items():
                if key == "loss":
                    record.losses.append(float(value))
                else:
                    record.metrics.setdefault(key, []).append(float(value))
            reason = stop_reason(self.expect, record.losses) if self.expect else None
            reference = self.reference
            if (
                reference is not None
                and epoch < reference.epochs_run
                and epoch_difference(reference, record, epoch + 1)
            ):
                reason = UNEQUAL  # the rest of this run would be thrown away: auto trains the arrays instead
            if reason and (reason != EXPECTATIONS_DECIDED or epoch + 1 < record.epochs_planned):
                record.stop_reason = reason
                self.model.stop_training = True
            elif (
                self.deadline is not None and epoch + 1 < record.epochs_planned and time.perf_counter() >= self.deadline
            ):
                record.stop_reason = TIME_LIMIT  # this epoch was whole and is kept; training stops here
                self.model.stop_training = True

    if not timed:
        return Recorder

    class TimedRecorder(Recorder):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if self.deadline is not None and time.perf_counter() >= self.deadline:
                self.record.stop_reason = TIME_LIMIT
                self.model.stop_training = True

    return TimedRecorder
