"""The stability diagnosis without Keras: the analytic Hessian against an independent one, the bound,
the predicted and measured loss factors, and when the bound is exact or advisory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_convergence.diagnose import Optimizer, estimated, exact, linear_hessian, measured_factor
from pytest_convergence.expect import judge_seed
from pytest_convergence.record import SeedRun
from pytest_convergence.spec import Expect

SGD = Optimizer("sgd", 0.01)
XS_20 = np.arange(1, 21, dtype=np.float64).reshape(-1, 1)


def mse(x: np.ndarray, y: np.ndarray, params: np.ndarray, bias: bool, outputs: int) -> float:
    """Keras's MSE written out directly: mean over samples and outputs of the squared error."""
    features = x.shape[1]
    kernel = params[: features * outputs].reshape(features, outputs)
    offset = params[features * outputs :] if bias else np.zeros(outputs)
    return float(np.mean((x @ kernel + offset - y) ** 2))


def finite_difference_hessian(x: np.ndarray, bias: bool, outputs: int, h: float = 1e-3) -> np.ndarray:
    """The Hessian of `mse` by central differences: no formula shared with the code under test."""
    rng = np.random.default_rng(0)
    y = rng.standard_normal((len(x), outputs))
    size = x.shape[1] * outputs + (outputs if bias else 0)
    at = rng.standard_normal(size)
    hessian = np.empty((size, size))
    for i in range(size):
        for j in range(size):
            e_i, e_j = np.eye(size)[i] * h, np.eye(size)[j] * h
            hessian[i, j] = (
                mse(x, y, at + e_i + e_j, bias, outputs)
                - mse(x, y, at + e_i - e_j, bias, outputs)
                - mse(x, y, at - e_i + e_j, bias, outputs)
                + mse(x, y, at - e_i - e_j, bias, outputs)
            ) / (4 * h * h)
    return hessian


DATASETS = {
    "xs 1..20, bias": (XS_20, True, 1),
    "xs 1..10, bias": (XS_20[:10], True, 1),
    "2 features, no bias": (np.random.default_rng(1).normal(3, 2, (30, 2)), False, 1),
    "3 features, bias, 2 outputs": (np.random.default_rng(2).uniform(-5, 5, (25, 3)), True, 2),
}


@pytest.mark.parametrize("name", DATASETS)
def test_analytic_lambda_max_matches_the_eigenvalues_of_an_independent_hessian(name: str) -> None:
    x, bias, outputs = DATASETS[name]
    reference = np.linalg.eigvalsh(finite_difference_hessian(x, bias, outputs))
    diagnosis = exact(x, bias, outputs, SGD, steps=1)
    assert diagnosis.lam_max == pytest.approx(reference[-1], rel=1e-4)
    assert diagnosis.lam_min == pytest.approx(reference[0], rel=1e-3, abs=1e-6)
    assert np.linalg.eigvalsh(linear_hessian(x, bias, outputs))[-1] == pytest.approx(reference[-1], rel=1e-4)


def test_the_motivating_case_matches_the_numbers_worked_by_hand() -> None:
    # H = [[287, 21], [21, 2]]: λ = (289 ± √(289² − 4·133)) / 2
    lam_max = (289 + math.sqrt(289**2 - 4 * 133)) / 2
    d = exact(XS_20, True, 1, SGD, steps=1)
    assert d.lam_max == pytest.approx(lam_max, rel=1e-9) == pytest.approx(288.54, abs=0.01)
    assert d.bound == pytest.approx(0.006931, rel=1e-3)
    assert d.ratio == pytest.approx(1.4427, rel=1e-3)
    assert d.predicted_factor == pytest.approx((1 - 0.01 * lam_max) ** 2) == pytest.approx(3.5547, rel=1e-3)
    assert d.exact and not d.lr_below_bound and d.steps_per_epoch == 1
    assert d.suggested_lr == pytest.approx(2 / (d.lam_max + d.lam_min))
    assert d.standardised == pytest.approx((2.0, 1.0))  # standardised x with a bias: H = 2·I


@pytest.mark.parametrize(("points", "stable"), [(10, True), (16, True), (17, False), (20, False)])
def test_the_threshold_between_16_and_17_points(points: int, stable: bool) -> None:
    assert exact(XS_20[:points], True, 1, SGD, steps=1).lr_below_bound is stable


def test_converging_runs_predict_the_slowest_direction() -> None:
    d = exact(XS_20[:10], True, 1, SGD, steps=1)
    assert d.predicted_factor == pytest.approx((1 - 0.01 * d.lam_min) ** 2)
    assert "λmin" in (d.predicted_by or "")


def test_mini_batches_momentum_and_adam_are_advisory() -> None:
    batches = exact(XS_20, True, 1, SGD, steps=3)  # 20 points, batches of 8
    assert batches.steps_per_epoch == 3 and not batches.exact
    assert batches.predicted_factor == pytest.approx(3.5547**3, rel=1e-3)
    assert any("3 mini-batches" in note for note in batches.advisory)

    momentum = exact(XS_20, True, 1, Optimizer("sgd", 0.01, momentum=0.9), steps=1)
    assert momentum.bound == pytest.approx(2 * 1.9 / momentum.lam_max)
    assert momentum.bound_formula == "2(1+β)/λmax" and momentum.predicted_factor is None and not momentum.exact

    adam = exact(XS_20, True, 1, Optimizer("adam", 0.001), steps=1)
    assert not adam.exact and any("adapts its step" in note for note in adam.advisory)
    assert "advisory" in adam.lines()[0]


def test_estimates_say_so() -> None:
    d = estimated(11.97, Optimizer("sgd", 3.0), steps=2)  # 64 samples, batches of 32
    assert d.method == "estimate" and not d.exact and d.lam_min is None
    assert d.bound == pytest.approx(2 / 11.97) and d.ratio == pytest.approx(3.0 * 11.97 / 2)
    text = "\n".join(d.lines())
    assert "estimate" in text and "initial weights" in text and "2 mini-batches" in text


def test_measured_factor() -> None:
    assert measured_factor([28.5 * 3.55**k for k in range(60)] + [math.inf]) == pytest.approx(3.55)
    decaying = [5.0 * 0.99**k for k in range(300)]
    assert measured_factor(decaying) == pytest.approx(0.99)
    # stalled at float32 rounding: the stall is left out
    assert measured_factor([1.0 * 0.5**k for k in range(40)] + [1e-12] * 100) == pytest.approx(0.5)
    assert measured_factor([1.0, 2.0]) is None
    assert measured_factor([math.nan]) is None


def test_stable_expectation() -> None:
    d = exact(XS_20, True, 1, SGD, steps=1)
    run = SeedRun(seed=0, losses=[1.0])

    def check(**stable: object) -> tuple[bool, str]:
        (c,) = judge_seed(Expect.model_validate({"stable": stable}), run, diagnosis=d).checks
        return c.ok, c.message

    assert check(lr_below_bound=False) == (
        True,
        "lr 0.01 is ×1.443 the exact bound 0.006931 (as expected)",
    )
    ok, message = check(lr_below_bound=True)
    assert not ok and "expected below it" in message
    assert check(bound=0.00693)[0] and not check(bound=0.0102)[0]
    ok, message = check(bound=0.0102, rel_tol=0.01)
    assert message == "exact bound 2/λmax = 0.006931, expected 0.0102 ± 1% (MISS)"
    (c,) = judge_seed(Expect.model_validate({"stable": {"bound": 1.0}}), run).checks
    assert not c.ok and c.message == "no stability diagnosis was made"
