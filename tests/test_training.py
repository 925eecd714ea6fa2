"""Training paths with real Keras: the fast `fit.input: dataset` path trains the batches `fit` makes of the arrays."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from texts import HEADER

from pytest_convergence import expect
from pytest_convergence import keras as keras_side
from pytest_convergence.keras import fit as keras_fit
from pytest_convergence.scenario import Scenario, load_file

pytestmark = pytest.mark.keras


def scenarios(tmp_path: Path, entries: str) -> dict[str, Scenario]:
    path = tmp_path / "s.yaml"
    path.write_text(HEADER + entries, encoding="utf-8")
    return {s.name: s for s in load_file(path)}


# 20 points in batches of 8: three steps per epoch, the last one partial.
MINI_BATCHES = """\
  - name: unshuffled
    optimizer: {name: sgd, learning_rate: 1.0e-4}
    batch_size: 8
    shuffle: false
    epochs: 40
    expect: {converges: {loss_below: 0.05}}
  - name: shuffled
    optimizer: {name: sgd, learning_rate: 1.0e-4}
    batch_size: 8
    epochs: 150
    seeds: [0, 1]
    expect: {converges: {loss_below: 0.05}}
  - name: diverges
    epochs: 500
    expect: {diverges: {within_epochs: 500}}
  - name: momentum-predicts
    data: {x: {linspace: [0, 1, 20]}}
    optimizer: {name: sgd, learning_rate: 0.3, momentum: 0.5}
    batch_size: 5
    epochs: 60
    expect: {predict: {x: 2, y: 1.0, abs_tol: 0.05}}
"""


@pytest.fixture(scope="module")
def both_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list, list]]:
    found = scenarios(tmp_path_factory.mktemp("fit"), MINI_BATCHES)
    return {
        name: (keras_side.run(s, fit_input="numpy"), keras_side.run(s, fit_input="dataset"))
        for name, s in found.items()
    }


def test_the_fast_path_trains_fit_s_own_batches_shuffled_or_not(both_paths) -> None:
    """Keras's own array adapter makes the batches, in fit's order: the curves are the same, bit for bit, on Keras 2
    and 3 (a dataset shuffled with an order of its own moved the loss by 5 % from epoch 2)."""
    for name, (numpy_runs, dataset_runs) in both_paths.items():
        for on_numpy, on_dataset in zip(numpy_runs, dataset_runs, strict=True):
            assert on_numpy.epochs_run == on_dataset.epochs_run > 0, name
            assert on_dataset.losses == on_numpy.losses, (name, on_numpy.seed)


@pytest.mark.parametrize("name", ["shuffled", "diverges", "momentum-predicts"])
def test_shuffled_and_early_stopped_runs_reach_the_same_verdicts(tmp_path: Path, both_paths, name: str) -> None:
    spec = scenarios(tmp_path, MINI_BATCHES)[name].spec
    numpy_runs, dataset_runs = both_paths[name]
    by_numpy = expect.judge(spec.expect, numpy_runs)
    by_dataset = expect.judge(spec.expect, dataset_runs)
    assert by_numpy.ok and by_dataset.ok
    assert [r.stop_reason for r in numpy_runs] == [r.stop_reason for r in dataset_runs]
    assert [r.epochs_run for r in numpy_runs] == [r.epochs_run for r in dataset_runs]


def test_shuffling_differs_per_seed_and_from_the_unshuffled_curve(both_paths) -> None:
    """A fast path that ignored `shuffle` or the seed would give the unshuffled curve, or one curve for every seed
    (whether fit draws a new order every epoch is Keras's own business: Keras 3 draws one per seed and keeps it)."""
    (unshuffled,), _ = both_paths["unshuffled"]
    _, (seed0, seed1) = both_paths["shuffled"]
    assert seed0.losses != unshuffled.losses
    assert seed0.losses != seed1.losses


def test_a_scenario_chooses_its_input_over_the_run_default(tmp_path: Path) -> None:
    found = scenarios(
        tmp_path, MINI_BATCHES.replace("    shuffle: false\n", "    shuffle: false\n    fit: {input: dataset}\n")
    )
    assert found["unshuffled"].fit_input("numpy") == "dataset"
    assert found["shuffled"].fit_input("numpy") == "numpy"
    assert found["shuffled"].fit_input("dataset") == "dataset"


HESSIAN = """\
  - name: one-feature
    epochs: 80
    expect: {converges: {loss_below: 0.01}}
  - name: two-features-no-bias
    data: {x: [[1, 2], [2, 0.5], [3, -1], [0.5, 4], [2.5, 2.5]], y: [1, 2, 3, 4, 5]}
    model: [{Dense: {units: 1, use_bias: false}}]
    epochs: 5
    expect: {converges: {loss_below: 100}}
"""


@pytest.mark.parametrize("name", ["one-feature", "two-features-no-bias"])
def test_hessian_vector_estimate_matches_the_analytic_lambda_max(tmp_path: Path, name: str) -> None:
    scenario = scenarios(tmp_path, HESSIAN)[name]
    analytic = keras_side.diagnose(scenario, [])
    assert analytic.method == "exact"
    assert keras_side.sharpness(scenario, seed=0) == pytest.approx(analytic.lam_max, rel=0.01)
    assert keras_side.sharpness(scenario, seed=3) == pytest.approx(analytic.lam_max, rel=0.01)  # any weights


def test_measured_growth_of_the_motivating_case_matches_the_prediction(tmp_path: Path) -> None:
    """xs = 1..20, lr 0.01: Keras's own curve grows by (1 − lr·λmax)² ≈ 3.55 per epoch."""
    scenario = scenarios(tmp_path, HESSIAN)["one-feature"]
    runs = keras_side.run(scenario)
    d = keras_side.diagnose(scenario, runs)
    assert d.predicted_factor == pytest.approx(3.5547, rel=1e-3)
    assert d.measured_factor == pytest.approx(d.predicted_factor, rel=0.02)
    assert d.optimizer == "sgd" and d.learning_rate == pytest.approx(0.01)


def test_a_verdict_reached_at_the_last_epoch_is_not_an_early_stop(tmp_path: Path) -> None:
    """`stopped: expectations decided` is for runs cut short; one decided at its last epoch simply completed."""
    found = scenarios(
        tmp_path,
        "  - name: last\n    epochs: 5\n    expect: {converges: {loss_below: 1.0e-9, within_epochs: 5}}\n"
        "  - name: early\n    epochs: 10\n    expect: {converges: {loss_below: 1.0e-9, within_epochs: 5}}\n",
    )
    (last,) = keras_side.run(found["last"])
    assert (last.epochs_run, last.stop_reason) == (5, "completed")
    (early,) = keras_side.run(found["early"])
    assert (early.epochs_run, early.stop_reason) == (5, "expectations decided")


def test_tensorflow_start_up_chatter_is_filtered_and_real_errors_pass(capfd: pytest.CaptureFixture[str]) -> None:
    import os

    chatter = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1795638572.578023   25332 port.cc:153] oneDNN custom operations are on. You may see ...\n"
    )
    with keras_side.native_chatter_filtered():
        os.write(2, chatter.encode())
        os.write(2, b"E0000 something really went wrong\n")
    err = capfd.readouterr().err
    assert err == "E0000 something really went wrong\n"


def test_the_fidelity_sentinel_falls_back_to_numpy_when_the_paths_train_differently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stand-in for a Keras that feeds arrays differently from our fast path: the fast path here sees the samples in
    reverse order (other batches, so other losses); the sentinel, which trains with the scenario's own shuffling,
    must notice and train every seed on the arrays instead. On Keras 2 `auto` fits the arrays without a sentinel;
    the sentinel is made to run there too."""
    from pytest_convergence.evaluate import evaluate

    monkeypatch.setattr(keras_side, "fast_path_pays", lambda: True)
    scenario = scenarios(tmp_path, MINI_BATCHES)["shuffled"]
    taken = evaluate(scenario, "auto", calibrate=False)
    assert taken.fit_input == "dataset" and taken.ok and taken.fidelity is not None
    assert taken.fidelity["agrees"] and taken.fidelity["epochs"] == keras_side.SENTINEL_EPOCHS
    assert taken.fidelity["largest_difference"] == 0.0
    assert len(taken.numpy_epoch_seconds) == keras_side.SENTINEL_EPOCHS

    real = keras_fit._fit_dataset

    def reversed_dataset(tf, keras, scenario, epochs):  # type: ignore[no-untyped-def]
        flipped = dataclasses.replace(scenario, x=scenario.x[::-1].copy(), y=scenario.y[::-1].copy())
        return real(tf, keras, flipped, epochs)

    monkeypatch.setattr(keras_fit, "_fit_dataset", reversed_dataset)
    result = evaluate(scenario, "auto", calibrate=False)
    assert result.fidelity is not None and not result.fidelity["agrees"]
    # the fast run stopped at its first unequal epoch: nothing more of it was trained, to be thrown away
    assert result.fidelity["largest_difference"] > 0 and result.fidelity["at_epoch"] == result.fidelity["epochs"] == 1
    assert "differs from fit on the numpy arrays from epoch 1 of 1" in result.fidelity["reason"]
    assert result.fit_input == "numpy" and result.ok  # trained as fit on arrays does, and judged on that
    assert [r.losses for r in result.runs] == [r.losses for r in keras_side.run(scenario, fit_input="numpy")]


def test_the_fast_path_s_own_failure_is_never_the_scenario_s_expected_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scenario expecting a ValueError must not pass because the fast path could not be built."""
    from pytest_convergence.evaluate import evaluate

    def no_adapter(*args: object) -> None:
        raise keras_side.FastPathError("ValueError: no array adapter")

    monkeypatch.setattr(keras_side, "fast_path_pays", lambda: True)
    monkeypatch.setattr(keras_fit, "_fit_dataset", no_adapter)
    entry = MINI_BATCHES.split("  - name: diverges")[0].split("  - name: shuffled")[1]
    scenario = scenarios(
        tmp_path,
        "  - name: shuffled"
        + entry.replace("expect: {converges: {loss_below: 0.05}}", "expect: {raises: {error: ValueError}}"),
    )["shuffled"]
    with pytest.raises(keras_side.FastPathError):
        keras_side.run(scenario, fit_input="dataset")
    result = evaluate(scenario, "auto", calibrate=False)
    assert result.fit_input == "numpy" and result.fidelity is not None
    assert result.fidelity["reason"].startswith("the run on the fast path raised FastPathError")
    assert not result.ok  # fit on the arrays raises nothing: the expected ValueError did not come
