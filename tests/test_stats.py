"""Seed statistics, calibration arithmetic and per-seed summaries: pure functions, known answers."""

from __future__ import annotations

import math

import pytest

from pytest_convergence import stats, timing
from pytest_convergence.expect import summarize
from pytest_convergence.record import SeedRun, relative_difference
from pytest_convergence.spec import Expect


def test_mann_whitney_matches_the_exact_distribution() -> None:
    # complete separation of 4 vs 4: 2 of the C(8, 4) = 70 orderings are as extreme → p = 2/70
    assert stats.mann_whitney([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(2 / 70)
    assert stats.mann_whitney([1, 1, 1], [1, 1, 1]) == 1.0


def test_smallest_p_and_seeds_needed() -> None:
    assert stats.smallest_p(3, 3) == pytest.approx(0.1)
    assert stats.smallest_p(8, 8) == pytest.approx(2 / 12870)
    assert stats.seeds_needed(0.05) == 4 and stats.seeds_needed(0.01) == 5


def test_cliffs_delta_and_holm() -> None:
    assert stats.cliffs_delta([1, 2], [3, 4]) == 1.0
    assert stats.cliffs_delta([3, 4], [1, 2]) == -1.0
    assert stats.cliffs_delta([1, 3], [2, 2]) == 0.0
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def summaries(values: list[float], key: str = "final_loss") -> list[dict[str, float]]:
    return [{key: v} for v in values]


def test_a_shift_counts_only_when_significant_large_and_worse() -> None:
    base = summaries([1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 6e-4])
    ten_times = summaries([1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3])
    (shift,) = stats.compare_summaries(base, ten_times, 0.05)
    assert shift.counts and shift.verdict == "shifted" and shift.delta == 1.0
    assert shift.size == pytest.approx(1.0)  # one decade
    (better,) = stats.compare_summaries(ten_times, base, 0.05)
    assert better.verdict == "shifted" and not better.counts
    tight = [1e-4 * (1 + i / 1000) for i in range(6)]
    (tiny,) = stats.compare_summaries(summaries(tight), summaries([v * 1.02 for v in tight]), 0.05)
    assert tiny.p < 0.05 and not tiny.large and tiny.verdict == "none"


def test_metric_direction_and_pass_rate() -> None:
    base = summaries([0.99, 0.985, 0.99, 0.995], "metric:accuracy")
    worse = summaries([0.80, 0.82, 0.79, 0.81], "metric:accuracy")
    (shift,) = stats.compare_summaries(base, worse, 0.05)
    assert shift.worse and shift.counts
    (mae,) = stats.compare_summaries(summaries([0.1] * 4, "metric:mae"), summaries([0.2] * 4, "metric:mae"), 0.05)
    assert mae.worse
    (rate,) = stats.compare_summaries(summaries([1.0] * 8, "passed"), summaries([0.0] * 8, "passed"), 0.05)
    assert rate.worse and rate.size == -1.0 and "pass rate 100% → 0%" in rate.describe()


def test_identical_samples_are_not_compared() -> None:
    assert stats.compare_summaries(summaries([1.0, 2.0]), summaries([2.0, 1.0]), 0.05) == []


def test_calibration_spread_and_epoch_summary() -> None:
    samples = timing.calibrate(3)
    assert len(samples) == 3 and all(s > 0 for s in samples)
    assert timing.spread([0.005, 0.0075, 0.006]) == pytest.approx(1.5)
    summary = timing.epoch_summary([[9.0, 1.0, 2.0, 3.0], [9.0, 4.0]])  # first epochs (9 s) left out
    assert summary is not None and summary["median_s"] == 2.5 and summary["n"] == 4
    assert timing.epoch_summary([[1.0, 2.0]]) is None


def test_rounding_floor_is_the_largest_relative_difference() -> None:
    run = SeedRun(seed=0, losses=[1.0, 0.5, 0.25])
    run.measure_floor([1.0, 0.5000001, 0.26])
    assert run.rounding_floor == pytest.approx(0.01 / 0.26) and run.rounding_floor_epoch == 3
    assert relative_difference(math.inf, math.inf) == 0.0 and relative_difference(1.0, math.nan) == math.inf


def test_summaries_of_a_seed() -> None:
    expect = Expect.model_validate({"converges": {"loss_below": 0.3}, "predict": {"x": 25, "y": 12.5, "abs_tol": 0.1}})
    run = SeedRun(seed=0, losses=[1.0, 0.5, 0.25, 0.2], predictions=[[12.45]], metrics={"mae": [0.3, 0.1]})
    out = summarize(expect, run, ok=True)
    assert out == {
        "passed": 1.0,
        "final_loss": 0.2,
        "lowest_loss": 0.2,
        "converges_epoch": 3.0,
        "prediction_error": pytest.approx(0.05),
        "metric:mae": 0.1,
    }
    diverging = Expect.model_validate({"diverges": {"within_epochs": 10}})
    out = summarize(diverging, SeedRun(seed=0, losses=[1.0, 1e7, math.nan]), ok=True)
    assert out["diverges_epoch"] == 2.0 and out["final_loss"] == math.inf
