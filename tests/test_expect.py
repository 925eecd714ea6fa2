"""expect + failure_text: every expectation kind passing and failing, early stops, pass rates, failure text."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pytest_convergence.expect import judge, judge_seed, stop_reason
from pytest_convergence.failure_text import failure, sparkline
from pytest_convergence.record import SeedRun
from pytest_convergence.spec import Expect

INF, NAN = math.inf, math.nan
GROWING = [28.5 * 3.55**k for k in range(12)]  # the motivating case's divergence


def run(losses: list[float], seed: int = 0, **kw: Any) -> SeedRun:
    return SeedRun(seed=seed, losses=losses, epochs_planned=kw.pop("planned", len(losses)), **kw)


def expect(**kw: Any) -> Expect:
    return Expect.model_validate(kw)


def check(e: Expect, r: SeedRun) -> tuple[bool, str]:
    (c,) = judge_seed(e, r).checks
    return c.ok, c.message


def test_converges_final_loss() -> None:
    e = expect(converges={"loss_below": 0.01})
    assert check(e, run([5.0, 0.1, 0.005])) == (True, "final loss 0.005 < 0.01 at epoch 3")
    ok, msg = check(e, run([5.0, 0.001, 0.5]))
    assert not ok and msg == "final loss 0.5 at epoch 3 is not below 0.01 (lowest 0.001 at epoch 2)"
    ok, msg = check(e, run([5.0, 50.0, INF], stop_reason="non-finite loss"))
    assert not ok and "the loss became inf at epoch 3 (lowest 5 at epoch 1)" in msg


def test_converges_within_epochs() -> None:
    e = expect(converges={"loss_below": 1.0, "within_epochs": 3})
    assert check(e, run([5.0, 0.5])) == (True, "loss 0.5 < 1 at epoch 2 (within 3)")
    ok, msg = check(e, run([5.0, 4.0, 3.0, 0.1]))
    assert not ok and "did not get below 1 within 3 epochs (lowest 3 at epoch 3)" in msg
    ok, msg = check(e, run([5.0], planned=1))
    assert not ok and "only 1 epochs were trained (epochs: 1)" in msg


def test_diverges_by_non_finite_loss_or_growth() -> None:
    e = expect(diverges={"within_epochs": 100})
    ok, msg = check(e, run([1.0, 3.0, NAN]))
    assert ok and msg == "loss became nan at epoch 3 (within 100)"
    ok, msg = check(e, run(GROWING))
    assert ok and msg.startswith("loss grew to 3.216e+07 at epoch 12, over 1e+06× the first epoch's 28.5")
    ok, msg = check(expect(diverges={"within_epochs": 5, "growth_factor": 10}), run(GROWING))
    assert ok and "at epoch 3, over 10×" in msg


def test_diverges_fails_when_the_loss_stays_bounded() -> None:
    e = expect(diverges={"within_epochs": 3})
    ok, msg = check(e, run([10.0, 20.0, 5.0, NAN]))
    assert not ok
    assert msg == (
        "loss stayed finite and under 1e+06× the first epoch's 10 through epoch 3: largest 20 at epoch 2, last 5"
    )


def test_predict_within_tolerance() -> None:
    e = expect(predict={"x": [25, 30], "y": [12.5, 15], "abs_tol": 0.1})
    ok, msg = check(e, run([1.0], predictions=[[12.45], [15.2]]))
    assert not ok
    assert msg == "f(25) = 12.45, expected 12.5 ± 0.1 ok; f(30) = 15.2, expected 15 ± 0.1 MISS"
    assert check(e, run([1.0], predictions=[[12.45], [15.05]]))[0]
    assert not check(e, run([NAN], predictions=[[NAN], [NAN]]))[0]
    rel = expect(predict={"x": 25, "y": 100, "rel_tol": 0.01})
    assert check(rel, run([1.0], predictions=[[100.9]]))[0]
    assert not check(rel, run([1.0], predictions=[[101.1]]))[0]


def test_predict_output_width_mismatch() -> None:
    e = expect(predict={"x": [[1, 2]], "y": [[1, 2]], "abs_tol": 0.1})
    ok, msg = check(e, run([1.0], predictions=[[1.0]]))
    assert not ok and "gives 1 output(s) per point; expect.predict.y gives 2" in msg


def test_metric_bounds() -> None:
    e = expect(metric={"name": "accuracy", "above": 0.9})
    assert check(e, run([1.0, 0.5], metrics={"accuracy": [0.5, 0.95]})) == (
        True,
        "final accuracy 0.95 (epoch 2) is > 0.9",
    )
    ok, msg = check(e, run([1.0, 0.5], metrics={"accuracy": [0.5, 0.85]}))
    assert not ok and msg == "final accuracy 0.85 (epoch 2) is not > 0.9"
    both = expect(metric=[{"name": "mae", "below": 0.2, "above": 0.1}])
    assert not check(both, run([1.0], metrics={"mae": [0.25]}))[0]
    ok, msg = check(e, run([1.0], metrics={}))
    assert not ok and "Keras reported no 'accuracy' values" in msg


def test_min_pass_rate_over_seeds() -> None:
    e = expect(predict={"x": 25, "y": 12.5, "abs_tol": 0.1}, min_pass_rate=0.25)
    runs = [run([1.0], seed=s, predictions=[[p]]) for s, p in enumerate([10.2, 12.51, 9.1, -4.3])]
    verdict = judge(e, runs)
    assert (verdict.passed, verdict.pass_rate, verdict.ok) == (1, 0.25, True)
    strict = judge(expect(predict={"x": 25, "y": 12.5, "abs_tol": 0.1}), runs)
    assert not strict.ok
    text = failure("adam", "s.yaml:3", strict, runs)
    first, second, *rest = text.splitlines()
    assert (
        first == "predict: f(25) = 10.2, expected 12.5 ± 0.1 MISS (seed 0) [1 of 4 seed(s) passed, min_pass_rate 100%]"
    )
    assert second == "s.yaml:3: scenario 'adam'"
    assert [line.strip() for line in rest if line.strip().startswith("seed")] == [
        "seed 0: FAIL",
        "seed 1: pass",
        "seed 2: FAIL",
        "seed 3: FAIL",
    ]


def test_failure_text_has_the_numbers_and_the_curve() -> None:
    losses = [*GROWING, INF]
    r = run(losses, stop_reason="non-finite loss", planned=500)
    verdict = judge(expect(converges={"loss_below": 0.01}), [r])
    text = failure("sgd", "s.yaml:8", verdict, [r])
    assert (
        "loss: first 28.5, lowest 28.5 (epoch 1), last inf (epoch 13); "
        "first non-finite at epoch 13; stopped: non-finite loss" in text
    )
    assert "curve (log scale, epochs 1..13): ▁▂▂▃▄▄▅▅▆▇▇█×" in text


@pytest.mark.parametrize(
    ("e", "losses", "reason"),
    [
        ({"diverges": {"within_epochs": 100}}, GROWING[:11], None),
        ({"diverges": {"within_epochs": 100}}, GROWING, "expectations decided"),
        ({"diverges": {"within_epochs": 3}}, [1.0, 1.0, 1.0], "expectations decided"),
        ({"converges": {"loss_below": 0.1, "within_epochs": 50}}, [1.0, 0.05], "expectations decided"),
        ({"converges": {"loss_below": 0.1}}, [1.0, 0.05], None),
        ({"converges": {"loss_below": 0.1}}, [1.0, NAN], "non-finite loss"),
        ({"diverges": {"within_epochs": 3}, "predict": {"x": 1, "y": 1, "abs_tol": 1}}, GROWING, None),
        ({"metric": {"name": "accuracy", "above": 0.5}}, [1.0, INF], "non-finite loss"),
    ],
)
def test_training_stops_once_decided(e: dict[str, Any], losses: list[float], reason: str | None) -> None:
    assert stop_reason(expect(**e), losses) == reason


def test_sparkline() -> None:
    assert sparkline([100.0, 10.0, 1.0]) == "█▅▁"
    assert sparkline([1.0, 1.0]) == "▁▁"
    assert sparkline([1.0, NAN]) == "▁×"
    assert len(sparkline([float(i + 1) for i in range(500)])) == 40
