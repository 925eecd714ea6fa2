"""Looking into a trained model: stuck units (dead ReLUs, saturated sigmoids), the sharpness estimate from
Hessian-vector products, and the stability diagnosis handed to `diagnose`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from .. import diagnose as diagnose_mod
from ..record import SeedRun, UnitState
from ..scenario import Scenario
from ..spec import ScheduleSpec
from .build import fit_batches, fresh_model, make_loss, make_optimizer, make_schedule, train_part
from .environment import dtype_policy, frameworks

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


def diagnose(
    scenario: Scenario, runs: list[SeedRun], seed: int | None = None, deadline: float | None = None
) -> diagnose_mod.Diagnosis:
    """The stability diagnosis for `seed` (default: the first): exact for a linear model under MSE,
    else estimated from the sharpness at that seed's initial weights. Past `deadline` (time.perf_counter), the
    scenario's time limit, it stops with TimeoutError."""
    _, keras = frameworks()
    spec = scenario.spec
    seed = scenario.seeds[0] if seed is None else seed
    losses = next((r.losses for r in runs if r.seed == seed), [])
    optimizer = _optimizer_facts(keras, spec.optimizer.name, spec.optimizer.kwargs)
    x, _ = train_part(scenario)
    _, steps = fit_batches(len(x), spec.batch_size)
    if deadline is not None and time.perf_counter() >= deadline:
        raise TimeoutError("the time limit was reached before it")
    linear = _linear_layer(scenario)
    if linear is not None:
        units, bias = linear
        found = diagnose_mod.exact(x, bias, units, optimizer, steps, losses)
    else:
        lam = sharpness(scenario, seed, deadline=deadline)
        found = diagnose_mod.estimated(lam, optimizer, steps, losses)
    goal = diagnose_mod.goal_of(spec.expect)
    return dataclasses.replace(found, seed=seed, goal=goal)


EXACT_MAX_FEATURES = 1024  # the exact Hessian is features²; its eigenvalues features³: above, the estimate (timed)


def _linear_layer(scenario: Scenario) -> tuple[int, bool] | None:
    """(units, use_bias) when the model is one Dense layer without activation under MSE, else None."""
    spec = scenario.spec
    if isinstance(spec.model, str) or len(spec.model) != 1 or spec.loss.name not in diagnose_mod.MSE_NAMES:
        return None
    if scenario.x.ndim != 2 or spec.dtype_policy not in (None, "float32") or scenario.x.shape[1] > EXACT_MAX_FEATURES:
        return None
    (layer,) = spec.model
    plain_keys = {"units", "activation", "use_bias", "kernel_initializer", "bias_initializer", "name", "dtype"}
    if layer.class_name != "Dense" or not set(layer.kwargs) <= plain_keys:
        return None
    if layer.kwargs.get("activation") not in (None, "linear") or layer.kwargs.get("dtype") not in (None, "float32"):
        return None
    return int(layer.kwargs.get("units", 1)), bool(layer.kwargs.get("use_bias", True))


def _optimizer_facts(keras: Any, name: str, kwargs: dict[str, Any]) -> diagnose_mod.Optimizer:
    optimizer = make_optimizer(keras, name, kwargs)
    config = optimizer.get_config()
    schedule = kwargs.get("learning_rate")
    if isinstance(schedule, ScheduleSpec):  # the rate in force at the first step, where the bound matters first
        learning_rate = float(make_schedule(keras, schedule)(0))
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


def sharpness(
    scenario: Scenario, seed: int, iterations: int = 100, rtol: float = 1e-5, deadline: float | None = None
) -> float:
    """λmax of the Hessian of the full-batch loss at `seed`'s initial weights, by power iteration
    on Hessian-vector products (nested gradient tapes). An estimate: the largest-magnitude eigenvalue,
    converged to `rtol` or after `iterations` products; TimeoutError past `deadline`."""
    tf, keras = frameworks()
    with dtype_policy(keras, scenario.spec.dtype_policy):
        model = fresh_model(keras, scenario, seed)
    loss_fn = make_loss(keras, scenario.spec.loss)
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
        if deadline is not None and time.perf_counter() >= deadline:
            raise TimeoutError("the time limit was reached during it")
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
