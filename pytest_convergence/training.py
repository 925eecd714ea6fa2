"""Keras side: check a scenario's names against the installed Keras, build, compile, fit → SeedRun.

The only module that imports TensorFlow/Keras, and only inside functions, so that loading the
plugin stays cheap for every pytest run in the environment.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import importlib
import inspect
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import diagnose as diagnose_mod
from .errors import Problem
from .expect import EXPECTATIONS_DECIDED, stop_reason
from .record import TIME_LIMIT, Fidelity, Runtime, SeedRun, UnitState, relative_difference
from .scenario import CallbackSpec, LossSpec, Scenario, ScheduleSpec, split_at
from .text import did_you_mean, one_line, without_native_chatter

LEGACY_ENV = "TF_USE_LEGACY_KERAS"


KERAS_BATCH_SIZE = 32  # what model.fit uses when batch_size is not given


def fit_batches(samples: int, batch_size: int | None) -> tuple[int, int]:
    """(the batch size fit uses, the steps in one epoch: the last batch may be partial)."""
    batch = batch_size or KERAS_BATCH_SIZE
    return batch, -(-samples // batch)


@functools.cache
def frameworks() -> tuple[Any, Any]:
    """(tensorflow, keras) as `tf.keras` would resolve it: tf_keras when TF_USE_LEGACY_KERAS is set."""
    # TensorFlow's C++ start-up chatter (oneDNN, CPU features) buries the test output; errors stay.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_chatter_filtered():
        import tensorflow as tf

        legacy = os.environ.get(LEGACY_ENV, "").lower() in ("1", "true")
        keras = importlib.import_module("tf_keras" if legacy else "keras")
        # Seeded runs must be reproducible; this makes TF pick deterministic kernels.
        tf.config.experimental.enable_op_determinism()
        # Several xdist workers on a small machine must not each start a thread per core.
        threads = threads_per_process()
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf, keras


@contextlib.contextmanager
def native_chatter_filtered() -> Iterator[None]:
    """Run the block with file descriptor 2 sent to a temporary file; afterwards write back every line of it except
    TensorFlow's chatter (text.NATIVE_CHATTER). Around TensorFlow's start-up, and around `explain`'s training; not
    around a test's training, where a native crash must print its message at once (pytest's captured stderr is
    filtered instead, see collect.attach_record)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                caught.seek(0)
                kept = without_native_chatter(caught.read().decode(errors="replace"))
                if kept:
                    os.write(2, kept.encode())
    finally:
        os.close(saved)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """native_chatter_filtered, with TensorFlow's Python-side warnings held back as well (logger 'tensorflow' at
    ERROR): `explain` trains one model per learning rate of its sweep, which TensorFlow reports as retracing."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with native_chatter_filtered():
            yield
    finally:
        logger.setLevel(level)


def threads_per_process() -> int:
    """The CPUs this process may use, shared among the xdist workers of the run (at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // _xdist_workers())


def _xdist_workers() -> int:
    """How many xdist workers this run has (xdist tells each worker); 1 without xdist."""
    return max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))


def runtime_settings() -> Runtime:
    """What a difference between two runs could come from, besides the versions: stored in each record."""
    tf, _ = frameworks()
    return Runtime(
        op_determinism=True,
        intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
        inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads(),
        xdist_workers=_xdist_workers(),
        PYTHONHASHSEED=os.environ.get("PYTHONHASHSEED"),
        TF_USE_LEGACY_KERAS=os.environ.get(LEGACY_ENV),
    )


def versions() -> dict[str, str]:
    """What actually trains: TensorFlow and Keras versions, and which Keras package."""
    tf, keras = frameworks()
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_package": keras.__name__.split(".")[0],
    }


def check(scenario: Scenario, factories: bool = True) -> list[Problem]:
    """Problems with the Keras names a scenario uses (layers and their keywords, optimizer, loss, metrics) and with
    its model factory, found without importing it. `factories=False` refuses factories altogether."""
    _, keras = frameworks()
    spec = scenario.spec
    problems: list[Problem] = []
    if isinstance(spec.model, str):
        try:
            if not factories:
                raise FactoryError(
                    f"model factories are turned off here (--convergence-no-factories): {spec.model!r} would run "
                    "project code; write the model as a list of layers"
                )
            locate_factory(spec.model, scenario.file.parent, scenario.root)
        except FactoryError as exc:
            problems.append(scenario.problem(("model",), str(exc)))
    else:
        for i, layer in enumerate(spec.model):
            message = _layer_problem(keras, layer.class_name, layer.kwargs)
            if message:
                problems.append(scenario.problem(("model", i), message))
    schedule = spec.optimizer.schedule
    refused = schedule is not None and _refused(lambda: _schedule(keras, schedule), schedule)
    if refused:  # the optimizer cannot be built to check it
        problems.append(scenario.problem(("optimizer", "learning_rate"), refused))
    try:
        if not refused:
            _optimizer(keras, spec.optimizer.name, spec.optimizer.kwargs)
    except _UnknownName as exc:
        problems.append(scenario.problem(("optimizer", "name"), str(exc)))
    except Exception as exc:  # Keras raises TypeError or ValueError, varying by version
        message = _keyword_problem(keras, spec.optimizer.name, spec.optimizer.kwargs) or one_line(exc)
        problems.append(scenario.problem(("optimizer",), f"{spec.optimizer.name}: {message}"))
    try:
        keras.losses.get(spec.loss.name)
    except Exception:
        where = ("loss", "name") if spec.loss.kwargs else ("loss",)  # written {name: …, …} or as the name alone
        problems.append(scenario.problem(where, _unknown("loss", spec.loss.name, _loss_names(keras))))
    else:
        loss = _refused(lambda: _loss(keras, spec.loss), spec.loss)
        if loss:
            problems.append(scenario.problem(("loss",), loss))
    for i, callback in enumerate(spec.callbacks):
        made = _refused(functools.partial(_callback, keras, callback), callback)
        if made:
            problems.append(scenario.problem(("callbacks", i), made))
    for i, metric in enumerate(spec.metrics):
        try:
            # Keras 2 hands an unknown name back unchanged instead of raising
            if not callable(keras.metrics.get(metric)):
                raise ValueError(metric)
        except Exception:
            problems.append(scenario.problem(("metrics", i), _unknown("metric", metric, _metric_names(keras))))
    return problems


def run(
    scenario: Scenario,
    timeout_s: float | None = None,
    fit_input: str = "numpy",
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
    if chosen not in ("numpy", "dataset"):
        raise ValueError(f"fit input {chosen!r}: decide auto first (evaluate.py)")
    return [run_seed(scenario, seed, deadline, chosen, noise_floor, per_batch) for seed in scenario.seeds]


def run_seed(
    scenario: Scenario,
    seed: int,
    deadline: float | None = None,
    fit_input: str = "numpy",
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


class FastPathError(Exception):
    """The fast path cannot be built on this Keras (its array adapter is not where this plugin looks): never a
    scenario's own error, so never what `expect.raises` matches."""


def fast_path_pays() -> bool:
    """Whether `auto` should try the fast path here. Keras 3's `fit` builds a new iterator over the arrays every epoch
    (~25-50 ms for a tiny model on 2 CPUs, against ~3 ms on the fast path). Keras 2 and tf_keras keep one iterator
    for the whole fit (~2 ms an epoch): there only running an epoch's steps in one call saves time, where an epoch
    has several batches (TF 2.15, 64 samples in batches of 8: 9.9 → 4.8 ms an epoch), and the sentinel's extra model
    costs more than that saves in short scenarios (the shipped suite on TF 2.15: 131.6 s fitting the arrays, 151.9 s
    with the sentinel where an epoch has several batches, 2026-12-06). So on Keras 2 `auto` fits the arrays."""
    return keras_major() >= 3


def keras_major() -> int:
    """The major version of the Keras that trains (2 for tf_keras)."""
    return _keras_major(frameworks()[1])


def _keras_major(keras: Any) -> int:
    try:
        return int(str(keras.__version__).split(".")[0])
    except ValueError:
        return 3


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
    fit_input: str,
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
        model = _fresh_model(keras, scenario, record.seed)
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
            options = _array_options(scenario)
        _compile(keras, model, scenario, compiled)
        record.jit_compile = _jit_compile(model)
        callbacks = [_callback(keras, c) for c in spec.callbacks]
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


def _array_options(scenario: Scenario) -> dict[str, Any]:
    """What `fit` on the numpy arrays is given besides them: the scenario's batch size, shuffling, validation split."""
    spec = scenario.spec
    options: dict[str, Any] = {}
    if spec.batch_size is not None:
        options["batch_size"] = spec.batch_size
    if spec.shuffle is not None:
        options["shuffle"] = spec.shuffle
    if spec.validation_split is not None:
        options["validation_split"] = spec.validation_split
    return options


def _compile(keras: Any, model: Any, scenario: Scenario, compiled: dict[str, Any]) -> None:
    spec = scenario.spec
    with warnings.catch_warnings():
        # Keras 3 under op determinism, once per compile; said once per scenario instead (evaluate.unmet_settings)
        warnings.filterwarnings("ignore", "Model doesn't support `jit_compile=True`")
        model.compile(
            optimizer=_optimizer(keras, spec.optimizer.name, spec.optimizer.kwargs),
            loss=_loss(keras, spec.loss),
            metrics=list(spec.metrics) or None,
            **compiled,
        )


def epoch_timer(scenario: Scenario, seed: int) -> Callable[[int], list[float]]:
    """The gate's timing probe (timeprobe.py): the scenario's model built and compiled once, from `seed`'s initial
    weights; each call fits it `epochs` epochs more with `fit` on the numpy arrays, as the scenario asks (batch size,
    shuffling, validation split, callbacks), and returns each epoch's seconds. Only the first call's first epoch
    traces the train step: the calls after it time what a user's `fit` costs per epoch, quickly."""
    _, keras = frameworks()
    spec = scenario.spec
    with dtype_policy(keras, spec.dtype_policy):
        model = _fresh_model(keras, scenario, seed)
        _compile(keras, model, scenario, {} if spec.jit_compile is None else {"jit_compile": spec.jit_compile})
    callbacks = [_callback(keras, c) for c in spec.callbacks]
    recorder = _recorder(keras, timed=False)
    options = _array_options(scenario)

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


STUCK_ACTIVATIONS = ("relu", "sigmoid", "tanh")
SATURATED = 0.01  # a sigmoid output within this of 0 or 1 (tanh: of ±1) passes almost no gradient back
SATURATED_SHARE = 0.99  # of the samples, for a sigmoid/tanh unit to count as saturated (a dead ReLU: all of them)


def unit_states(tf: Any, model: Any, x: np.ndarray, limit: int = 4096) -> list[UnitState]:
    """For each layer of the trained model with a ReLU, sigmoid or tanh activation: how many of its units are stuck
    over the training data (at most `limit` samples) — a ReLU unit that outputs 0 for every sample is dead (its
    gradient is zero), a sigmoid/tanh unit within SATURATED of its asymptotes for SATURATED_SHARE of the samples is
    saturated."""
    try:
        return _unit_states(tf, model, x[:limit])
    except Exception:  # an account of the trained model: it never changes the run's outcome
        return []


def _unit_states(tf: Any, model: Any, x: np.ndarray) -> list[UnitState]:
    states: list[UnitState] = []
    h = tf.constant(x)
    for layer in model.layers:
        h = layer(h, training=False)
        activation = _activation(layer)
        if activation not in STUCK_ACTIVATIONS or len(h.shape) < 2:
            continue
        a = np.asarray(h, dtype=np.float64).reshape(-1, h.shape[-1])
        if activation == "relu":
            stuck = a.max(axis=0) <= 0.0
        elif activation == "sigmoid":
            stuck = ((a < SATURATED) | (a > 1.0 - SATURATED)).mean(axis=0) >= SATURATED_SHARE
        else:
            stuck = (np.abs(a) > 1.0 - SATURATED).mean(axis=0) >= SATURATED_SHARE
        states.append(UnitState(layer=layer.name, activation=activation, units=int(a.shape[1]), stuck=int(stuck.sum())))
    return states


def _activation(layer: Any) -> str | None:
    """The layer's activation by name (a Dense/Conv activation keyword, or a ReLU layer), else None."""
    if type(layer).__name__ == "ReLU":
        return "relu"
    if type(layer).__name__ in ("LSTM", "GRU", "SimpleRNN"):
        return None  # their activation acts inside the cell; the output is not its direct result
    name = (layer.get_config() or {}).get("activation")
    return name if isinstance(name, str) else None


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


@contextlib.contextmanager
def dtype_policy(keras: Any, name: str | None) -> Iterator[None]:
    """Keras's global dtype policy set back to what it was after the block, which builds the model under `name`
    (float32, mixed_float16, float64; `_fresh_model` sets it, after clearing the session) and trains it. None:
    leave it (float32). Layers keep the policy they were built with."""
    if name is None:
        yield
        return
    before = keras.mixed_precision.global_policy().name
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


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
    if _keras_major(keras) >= 3:
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
    if _keras_major(keras) >= 3:
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


def train_part(scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """The samples `fit` trains on: all, or the first ones with validation_split."""
    if scenario.spec.validation_split is None:
        return scenario.x, scenario.y
    held = split_at(len(scenario.x), scenario.spec.validation_split)
    return scenario.x[:held], scenario.y[:held]


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


def weights_hash(weights: Sequence[np.ndarray]) -> str:
    """The first 16 hex digits of sha256 over the weights' shapes, dtypes and bytes: equal on two versions when the
    seed drew the same initial weights there."""
    digest = hashlib.sha256()
    for w in weights:
        array = np.ascontiguousarray(w)
        digest.update(f"{array.shape}{array.dtype.str};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _fresh_model(keras: Any, scenario: Scenario, seed: int) -> Any:
    """The scenario's model with `seed`'s initial weights, in a cleared Keras session."""
    # fresh graph and names; TensorFlow still keeps ~2-3 MiB per model (benchmarks/memory.py)
    keras.backend.clear_session()
    if scenario.spec.dtype_policy is not None:  # Keras 3's clear_session resets the global policy: set it after
        keras.mixed_precision.set_global_policy(scenario.spec.dtype_policy)
    keras.utils.set_random_seed(seed)
    with warnings.catch_warnings():
        # Keras 2 seeds its initialisers with random.randint(1, 1e9), which Python 3.10+ deprecates
        warnings.filterwarnings("ignore", "non-integer arguments to randrange", DeprecationWarning)
        return _model(keras, scenario)


def _model(keras: Any, scenario: Scenario) -> Any:
    spec = scenario.spec
    if isinstance(spec.model, str):
        model = load_factory(spec.model, scenario.file.parent, scenario.root)()
        if not isinstance(model, keras.Model):
            raise TypeError(f"model factory {spec.model!r} returned {type(model).__name__}, not a keras.Model")
        if getattr(model, "optimizer", None) is not None:  # set by compile() on Keras 2 and 3
            raise TypeError(
                f"model factory {spec.model!r} returned a compiled model; return it uncompiled: the scenario's "
                "optimizer, loss and metrics compile it"
            )
        return model
    layers = [getattr(keras.layers, layer.class_name)(**layer.kwargs) for layer in spec.model]
    # shape and dtype from the data: (features,), (steps, features), (h, w, c) …; int32 tokens for Embedding
    return keras.Sequential([keras.Input(shape=scenario.x.shape[1:], dtype=scenario.x.dtype.name), *layers])


def diagnose(scenario: Scenario, runs: list[SeedRun], seed: int | None = None) -> diagnose_mod.Diagnosis:
    """The stability diagnosis for `seed` (default: the first): exact for a linear model under MSE,
    else estimated from the sharpness at that seed's initial weights."""
    _, keras = frameworks()
    spec = scenario.spec
    seed = scenario.seeds[0] if seed is None else seed
    losses = next((r.losses for r in runs if r.seed == seed), [])
    optimizer = _optimizer_facts(keras, spec.optimizer.name, spec.optimizer.kwargs)
    x, _ = train_part(scenario)
    _, steps = fit_batches(len(x), spec.batch_size)
    linear = _linear_layer(scenario)
    if linear is not None:
        units, bias = linear
        found = diagnose_mod.exact(x, bias, units, optimizer, steps, losses)
    else:
        lam = sharpness(scenario, seed)
        found = diagnose_mod.estimated(lam, optimizer, steps, losses)
    goal = diagnose_mod.goal_of(spec.expect)
    return dataclasses.replace(found, seed=seed, goal=goal)


def _linear_layer(scenario: Scenario) -> tuple[int, bool] | None:
    """(units, use_bias) when the model is one Dense layer without activation under MSE, else None."""
    spec = scenario.spec
    if isinstance(spec.model, str) or len(spec.model) != 1 or spec.loss.name not in diagnose_mod.MSE_NAMES:
        return None
    if scenario.x.ndim != 2 or spec.dtype_policy not in (None, "float32"):
        return None
    (layer,) = spec.model
    plain_keys = {"units", "activation", "use_bias", "kernel_initializer", "bias_initializer", "name", "dtype"}
    if layer.class_name != "Dense" or not set(layer.kwargs) <= plain_keys:
        return None
    if layer.kwargs.get("activation") not in (None, "linear") or layer.kwargs.get("dtype") not in (None, "float32"):
        return None
    return int(layer.kwargs.get("units", 1)), bool(layer.kwargs.get("use_bias", True))


def _optimizer_facts(keras: Any, name: str, kwargs: dict[str, Any]) -> diagnose_mod.Optimizer:
    optimizer = _optimizer(keras, name, kwargs)
    config = optimizer.get_config()
    schedule = kwargs.get("learning_rate")
    if isinstance(schedule, ScheduleSpec):  # the rate in force at the first step, where the bound matters first
        learning_rate = float(_schedule(keras, schedule)(0))
        source = f"{schedule.class_name} at step 0"
    else:
        learning_rate, source = float(config["learning_rate"]), ""
    return diagnose_mod.Optimizer(
        name=type(optimizer).__name__.lower(),
        learning_rate=learning_rate,
        momentum=float(config.get("momentum", 0.0) or 0.0),
        nesterov=bool(config.get("nesterov", False)),
        learning_rate_source=source,
    )


def sharpness(scenario: Scenario, seed: int, iterations: int = 100, rtol: float = 1e-5) -> float:
    """λmax of the Hessian of the full-batch loss at `seed`'s initial weights, by power iteration
    on Hessian-vector products (nested gradient tapes). An estimate: the largest-magnitude eigenvalue,
    converged to `rtol` or after `iterations` products."""
    tf, keras = frameworks()
    with dtype_policy(keras, scenario.spec.dtype_policy):
        model = _fresh_model(keras, scenario, seed)
    loss_fn = _loss(keras, scenario.spec.loss)
    x, y = (tf.constant(a) for a in train_part(scenario))
    weights = model.trainable_variables

    def hessian_times(vector: list[Any]) -> list[Any]:
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = tf.reduce_mean(loss_fn(y, model(x, training=False)))
            grads = inner.gradient(loss, weights)
            dot = tf.add_n([tf.reduce_sum(g * v) for g, v in zip(grads, vector, strict=True)])
        return outer.gradient(dot, weights)  # type: ignore[no-any-return]

    hvp = tf.function(hessian_times)

    rng = np.random.default_rng(seed)
    vector: list[np.ndarray] = [rng.standard_normal(tuple(w.shape)).astype(np.float32) for w in weights]
    estimate = 0.0
    for _ in range(iterations):
        norm = float(np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in vector)))
        if norm == 0.0 or not np.isfinite(norm):
            break
        vector = [v / norm for v in vector]
        product = [np.asarray(p) for p in hvp([tf.constant(v) for v in vector])]
        previous, estimate = estimate, float(sum(np.sum(v * p) for v, p in zip(vector, product, strict=True)))
        vector = product
        if previous and abs(estimate - previous) <= rtol * abs(estimate):
            break
    return estimate


class _UnknownName(ValueError):
    pass


def _optimizer(keras: Any, name: str, kwargs: dict[str, Any]) -> Any:
    try:
        default = keras.optimizers.get(name)
    except Exception:
        raise _UnknownName(_unknown("optimizer", name, _optimizer_names(keras))) from None
    built = {k: _schedule(keras, v) if isinstance(v, ScheduleSpec) else v for k, v in kwargs.items()}
    return type(default)(**built) if kwargs else default


def _callback(keras: Any, callback: CallbackSpec) -> Any:
    """A callback of scenario.CALLBACKS, built from its scalar keywords."""
    return getattr(keras.callbacks, callback.class_name)(**callback.kwargs)


def _loss(keras: Any, loss: LossSpec) -> Any:
    """The loss by name; with keywords, an instance of the Keras loss class of that name (from_logits, …)."""
    if not loss.kwargs:
        return keras.losses.get(loss.name)
    cls = getattr(keras.losses, loss.name, None)
    if not (isinstance(cls, type) and issubclass(cls, keras.losses.Loss)):
        raise ValueError(
            f"keywords need a loss class such as SparseCategoricalCrossentropy or BinaryCrossentropy; "
            f"{loss.name!r} is not one"
        )
    return cls(**loss.kwargs)


def _schedule(keras: Any, schedule: ScheduleSpec) -> Any:
    """A learning-rate schedule of scenario.SCHEDULES, built from its scalar keywords. Keras 2.12's
    `keras.optimizers.schedules` holds them in its learning_rate_schedule module only."""
    schedules = keras.optimizers.schedules
    where = schedules if hasattr(schedules, schedule.class_name) else schedules.learning_rate_schedule
    return getattr(where, schedule.class_name)(**schedule.kwargs)


# The layers a scenario file may build: they compute from their inputs and their scalar keywords only. Left out on
# purpose: layers that read files or run code (TFSMLayer, Lambda, the lookup and text layers with a vocabulary,
# TorchModuleWrapper, …) and wrappers of other layers; a model factory is the place for those.
COMPUTE_LAYERS = frozenset(
    [
        "Dense",
        "EinsumDense",
        "Activation",
        "Dropout",
        "Flatten",
        "Reshape",
        "Permute",
        "RepeatVector",
        "Identity",
        "BatchNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "UnitNormalization",
        "Normalization",
        "Rescaling",
        "Conv1D",
        "Conv2D",
        "Conv3D",
        "Conv1DTranspose",
        "Conv2DTranspose",
        "Conv3DTranspose",
        "SeparableConv1D",
        "SeparableConv2D",
        "DepthwiseConv1D",
        "DepthwiseConv2D",
        "MaxPooling1D",
        "MaxPooling2D",
        "MaxPooling3D",
        "AveragePooling1D",
        "AveragePooling2D",
        "AveragePooling3D",
        "MaxPool1D",
        "MaxPool2D",
        "MaxPool3D",
        "AvgPool1D",
        "AvgPool2D",
        "AvgPool3D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "GlobalMaxPooling3D",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalAveragePooling3D",
        "GlobalMaxPool1D",
        "GlobalMaxPool2D",
        "GlobalMaxPool3D",
        "GlobalAvgPool1D",
        "GlobalAvgPool2D",
        "GlobalAvgPool3D",
        "SimpleRNN",
        "LSTM",
        "GRU",
        "Embedding",
        "ReLU",
        "LeakyReLU",
        "PReLU",
        "ELU",
        "Softmax",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "ActivityRegularization",
        "UpSampling1D",
        "UpSampling2D",
        "UpSampling3D",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "ZeroPadding3D",
        "Cropping1D",
        "Cropping2D",
        "Cropping3D",
    ]
)


def _keyword_problem(keras: Any, name: str, kwargs: dict[str, Any]) -> str | None:
    """'no keyword 'momentun'; did you mean 'momentum'? Its keywords: …' when an optimizer keyword is unknown."""
    try:
        signature = inspect.signature(type(keras.optimizers.get(name)).__init__)
    except (TypeError, ValueError):  # no signature to read: Keras's own message is all there is
        return None
    params = [
        p.name
        for p in signature.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    unknown = [k for k in kwargs if k not in params]
    if not unknown:
        return None
    return f"no keyword {unknown[0]!r}{did_you_mean(unknown[0], params, n=1)} Its keywords: {', '.join(params)}."


def _layer_problem(keras: Any, name: str, kwargs: dict[str, Any]) -> str | None:
    cls = getattr(keras.layers, name, None)
    if name in ("Input", "InputLayer"):
        return "leave out the input layer: the input shape comes from the data"
    if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
        return _unknown("layer", name, _layer_names(keras), show_all=False)
    if name not in COMPUTE_LAYERS:  # checked before the layer is made: making one may already read a file
        return (
            f"Keras layer {name!r} is not one a scenario file may build: scenario files build only layers that "
            "compute (see the README's list); for layers that read files or run code, write a model factory"
        )
    return _refused(lambda: cls(**kwargs), _Called(name, kwargs)) or None


class _Called(NamedTuple):
    class_name: str
    kwargs: dict[str, Any]


def _refused(make: Callable[[], Any], named: Any) -> str:
    """'Name(k=v, …) is refused by Keras: <why>' when `make()` (building what `named` — a layer, schedule, loss or
    callback with .class_name or .name and .kwargs — describes) raises, else ''."""
    try:
        make()
    except Exception as exc:
        name = getattr(named, "class_name", None) or named.name
        arguments = ", ".join(f"{k}={v!r}" for k, v in named.kwargs.items())
        return f"{name}({arguments}) is refused by Keras: {one_line(exc)}"
    return ""


def _unknown(kind: str, name: str, known: list[str], show_all: bool = True) -> str:
    hint = did_you_mean(name, known, cutoff=0.5)
    listing = f" Known: {', '.join(known)}." if show_all else " See keras.layers for the names."
    return f"unknown Keras {kind} {name!r}{hint}{listing}"


def _optimizer_names(keras: Any) -> list[str]:
    base = keras.optimizers.Optimizer
    skip = {"Optimizer", "LossScaleOptimizer", "MultiOptimizer"}
    return sorted(
        n.lower()
        for n, v in vars(keras.optimizers).items()
        if isinstance(v, type) and issubclass(v, base) and n not in skip
    )


def _loss_names(keras: Any) -> list[str]:
    skip = {"get", "serialize", "deserialize"}
    return sorted(n for n, v in vars(keras.losses).items() if callable(v) and n[:1].islower() and n not in skip)


def _metric_names(keras: Any) -> list[str]:
    return ["accuracy", "mae", "mse", *(n for n in _loss_names(keras) if "accuracy" in n)]


def _layer_names(keras: Any) -> list[str]:
    return sorted(n for n, v in vars(keras.layers).items() if isinstance(v, type) and issubclass(v, keras.layers.Layer))


class FactoryError(Exception):
    pass


def locate_factory(ref: str, near: Path, root: Path) -> tuple[Path, Path]:
    """'package.module:function' → (the folder to import it from, the module's file), found without importing
    anything: the module is a Python file under the YAML file's folder or the root directory, it resolves (symlinks
    followed) inside the root directory, and it defines the function at its top level."""
    module_name, _, attr = ref.partition(":")
    root = root.resolve()
    for base in dict.fromkeys((near.resolve(), root)):
        if not base.is_relative_to(root):
            continue
        for candidate in (
            base.joinpath(*module_name.split(".")).with_suffix(".py"),
            base.joinpath(*module_name.split("."), "__init__.py"),
        ):
            if not candidate.is_file():
                continue
            real = candidate.resolve()
            if not real.is_relative_to(root):
                raise FactoryError(
                    f"the model factory's module {module_name!r} leads outside {root} (the run's root directory): "
                    "a factory must be project code"
                )
            try:
                tree = ast.parse(real.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
                raise FactoryError(f"cannot parse {candidate.name} for the model factory {ref!r}: {exc}") from None
            if not any(isinstance(node, ast.FunctionDef) and node.name == attr for node in tree.body):
                raise FactoryError(
                    f"module {module_name!r} ({candidate.name}) defines no function {attr!r} at its top level "
                    f"(model factory {ref!r})"
                )
            return base, real
    raise FactoryError(
        f"cannot find {module_name!r} for the model factory {ref!r}: a factory is a function in a Python file "
        f"under {near} or {root} (the run's root directory)"
    )


def load_factory(ref: str, near: Path, root: Path) -> Callable[[], Any]:
    """The factory function, imported when the scenario runs (never at collection), from the file that
    `locate_factory` found."""
    base, real = locate_factory(ref, near, root)
    module_name, _, attr = ref.partition(":")
    with _path_prepended(base):
        module = importlib.import_module(module_name)
    if Path(str(module.__file__)).resolve() != real:
        raise FactoryError(f"{module_name!r} was imported from {module.__file__}, not from {real}: rename the module")
    return getattr(module, attr)  # type: ignore[no-any-return]


@contextlib.contextmanager
def _path_prepended(folder: Path) -> Iterator[None]:
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)
