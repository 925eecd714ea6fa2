"""Real models and real data: N-D and integer data, datasets, validation, schedules, callbacks, precision and XLA
settings — the format (without Keras) and real training (marked keras)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from texts import HEADER

from pytest_convergence import compare, diagnose, expect, failure_text
from pytest_convergence import keras as keras_side
from pytest_convergence.cli import main
from pytest_convergence.conditions import VersionCondition
from pytest_convergence.errors import Problem, ScenarioError
from pytest_convergence.record import SeedRun
from pytest_convergence.scenario import Scenario, load_file
from pytest_convergence.spec import MetricCheck


def load(tmp_path: Path, entries: str) -> dict[str, Scenario]:
    path = tmp_path / "s.yaml"
    path.write_text(HEADER + entries, encoding="utf-8")
    return {s.name: s for s in load_file(path, display="s.yaml")}


def only_problem(tmp_path: Path, entries: str) -> Problem:
    with pytest.raises(ScenarioError) as err:
        load(tmp_path, entries)
    (problem,) = err.value.problems
    return problem


def save_npz(folder: Path, name: str, x: np.ndarray, y: np.ndarray) -> None:
    np.savez(folder / name, x=x, y=y)


# ---- the format: N-D and integer data ----


def test_npz_data_keeps_its_shape_and_integer_tokens_stay_integer(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    save_npz(tmp_path, "images.npz", rng.normal(size=(10, 4, 4, 1)), np.arange(10.0))
    save_npz(tmp_path, "tokens.npz", rng.integers(0, 9, (10, 6)), np.ones(10))
    found = load(
        tmp_path,
        """\
  - name: images
    data: {file: images.npz}
    expect: {converges: {loss_below: 1}}
  - name: tokens
    data: {file: tokens.npz}
    expect: {converges: {loss_below: 1}}
  - name: tokens-as-floats
    data: {file: tokens.npz, x_dtype: float32}
    expect: {converges: {loss_below: 1}}
""",
    )
    assert found["images"].x.shape == (10, 4, 4, 1) and found["images"].x.dtype == np.float32
    assert found["images"].y.shape == (10, 1)
    assert found["tokens"].x.shape == (10, 6) and found["tokens"].x.dtype == np.int32
    assert found["tokens-as-floats"].x.dtype == np.float32


def test_x_shape_reshapes_each_sample_and_x_dtype_int32_needs_whole_numbers(tmp_path: Path) -> None:
    found = load(
        tmp_path,
        """\
  - name: rows-as-images
    data: {x: [[1, 2, 3, 4], [5, 6, 7, 8]], y: [0, 1], x_shape: [2, 2, 1]}
    expect: {converges: {loss_below: 1}}
  - name: tokens-inline
    data: {x: [[1, 2, 3], [4, 5, 6]], y: [0, 1], x_dtype: int32}
    expect: {converges: {loss_below: 1}}
""",
    )
    assert found["rows-as-images"].x.shape == (2, 2, 2, 1)
    np.testing.assert_array_equal(found["rows-as-images"].x[1, :, :, 0], [[5, 6], [7, 8]])
    assert found["tokens-inline"].x.dtype == np.int32
    bad = only_problem(
        tmp_path,
        """\
  - name: not-tokens
    data: {x: [[1.5, 2], [3, 4]], y: [0, 1], x_dtype: int32}
    expect: {converges: {loss_below: 1}}
""",
    )
    assert (bad.line, bad.key) == (10, "scenarios[0].data.x_dtype") and "whole numbers" in bad.message
    bad = only_problem(
        tmp_path,
        """\
  - name: wrong-shape
    data: {x: [[1, 2, 3], [4, 5, 6]], y: [0, 1], x_shape: [2, 2]}
    expect: {converges: {loss_below: 1}}
""",
    )
    assert bad.key == "scenarios[0].data.x_shape" and "holds 4 values per sample, but x has 3" in bad.message


def test_shuffle_seed_permutes_rows_once_keeping_pairs(tmp_path: Path) -> None:
    (plain, shuffled, again) = (
        load(
            tmp_path,
            f"""\
  - name: s
    data: {{x: {{arange: [0, 50]}}, y: "2 * x"{extra}}}
    expect: {{converges: {{loss_below: 1}}}}
""",
        )["s"]
        for extra in ("", ", shuffle_seed: 3", ", shuffle_seed: 3")
    )
    assert not np.array_equal(plain.x, shuffled.x)
    np.testing.assert_array_equal(shuffled.x, again.x)
    np.testing.assert_array_equal(shuffled.y, 2 * shuffled.x)
    assert sorted(shuffled.x[:, 0].tolist()) == plain.x[:, 0].tolist()


def test_a_dataset_needs_scikit_learn_and_says_which_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn raises ImportError
    bad = only_problem(
        tmp_path,
        """\
  - name: d
    data: {dataset: digits}
    expect: {converges: {loss_below: 1}}
""",
    )
    assert bad.key == "scenarios[0].data.dataset" and "pytest-convergence[datasets]" in bad.message


def test_datasets_are_read_by_scikit_learn_s_bundled_loaders(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    found = load(
        tmp_path,
        """\
  - name: digits
    data: {dataset: digits, x_shape: [8, 8, 1]}
    expect: {converges: {loss_below: 1}}
  - name: iris
    data: {dataset: iris, shuffle_seed: 0}
    expect: {converges: {loss_below: 1}}
""",
    )
    assert found["digits"].x.shape == (1797, 8, 8, 1) and found["digits"].y.shape == (1797, 1)
    assert set(np.unique(found["digits"].y)) == set(range(10))
    assert found["iris"].x.shape == (150, 4)
    bad = only_problem(
        tmp_path,
        """\
  - name: d
    data: {dataset: mnist}
    expect: {converges: {loss_below: 1}}
""",
    )
    assert bad.key == "scenarios[0].data.dataset" and "'digits'" in bad.message
    both = only_problem(
        tmp_path,
        """\
  - name: d
    data: {dataset: iris, x_columns: [a]}
    expect: {converges: {loss_below: 1}}
""",
    )
    assert both.key == "scenarios[0].data.x_columns" and "either data.dataset or data.x_columns" in both.message


@pytest.mark.parametrize(
    ("entry", "key", "words"),
    [
        ("validation_split: 1.5", "validation_split", "less than 1"),
        ("validation_split: 0.97", "validation_split", "leaves 0 to train on and 20 to validate on"),
        ("metrics: [mae]\n    expect: {metric: {name: val_mae, below: 1}}", "", "give validation_split"),
        (
            "validation_split: 0.2\n    metrics: [mae]\n    expect: {metric: {name: val_mse, below: 1}}",
            "",
            "did you mean 'val_mae'",
        ),
        ("dtype_policy: bfloat16", "dtype_policy", "'mixed_float16'"),
        ("jit_compile: maybe", "jit_compile", "true or false"),
        (
            "optimizer: {name: sgd, learning_rate: {ExponentialDcay: {initial_learning_rate: 0.1}}}",
            "optimizer.learning_rate",
            "did you mean 'ExponentialDecay'",
        ),
        (
            "optimizer: {name: sgd, learning_rate: {ExponentialDecay: {initial_learning_rate: {a: 1}}}}",
            "optimizer.learning_rate",
            "values must be numbers",
        ),
        ("callbacks: [ModelCheckpoint]", "callbacks[0]", "Allowed: EarlyStopping, ReduceLROnPlateau, TerminateOnNaN"),
        ("callbacks: [{EarlyStopping: {monitor: [1, {a: 1}]}}]", "callbacks[0]", "values must be numbers"),
        ("loss: {name: SparseCategoricalCrossentropy, from_logits: {a: 1}}", "loss", "values must be numbers"),
        ("expect: {metric: {name: loss, below: 1, within_epochs: 0}}", "expect.metric[0].within_epochs", "1 or more"),
    ],
)
def test_new_keys_refuse_bad_values_with_the_key_and_what_is_allowed(
    tmp_path: Path, entry: str, key: str, words: str
) -> None:
    expectation = "" if "expect:" in entry else "\n    expect: {converges: {loss_below: 1}}"
    bad = only_problem(tmp_path, f"  - name: s\n    {entry}{expectation}\n")
    assert bad.line >= 9 and words in bad.message, bad
    if key:
        assert bad.key == f"scenarios[0].{key}", bad


def test_a_schedule_callbacks_and_a_loss_with_keywords_are_read(tmp_path: Path) -> None:
    (s,) = load(
        tmp_path,
        """\
  - name: s
    optimizer:
      name: sgd
      learning_rate: {ExponentialDecay: {initial_learning_rate: 0.1, decay_steps: 10, decay_rate: 0.5}}
    callbacks: [TerminateOnNaN, {EarlyStopping: {monitor: loss, patience: 3}}]
    loss: {name: MeanSquaredError}
    dtype_policy: float64
    jit_compile: false
    expect: {converges: {loss_below: 1}}
""",
    ).values()
    schedule = s.spec.optimizer.schedule
    assert schedule is not None and schedule.class_name == "ExponentialDecay" and schedule.kwargs["decay_rate"] == 0.5
    assert [c.class_name for c in s.spec.callbacks] == ["TerminateOnNaN", "EarlyStopping"]
    assert s.spec.callbacks[1].kwargs == {"monitor": "loss", "patience": 3}
    assert s.spec.loss.name == "MeanSquaredError"
    assert s.settings == {"dtype_policy": "float64", "jit_compile": False}
    # a run's defaults fill in only what a scenario leaves open
    assert s.with_run_defaults("mixed_float16", True).settings == s.settings
    (plain,) = load(tmp_path, "  - name: p\n    expect: {converges: {loss_below: 1}}\n").values()
    assert plain.settings == {"dtype_policy": "float32", "jit_compile": None}
    assert plain.with_run_defaults("mixed_float16", True).settings == {
        "dtype_policy": "mixed_float16",
        "jit_compile": True,
    }


def test_conditions_on_the_settings_a_scenario_trains_under() -> None:
    versions = {"tensorflow": "2.21.0", "keras": "3.15.1"}
    xla = VersionCondition(keras=">=3", jit_compile=True)
    assert xla.applies(versions, {"dtype_policy": "float32", "jit_compile": True})
    assert not xla.applies(versions, {"dtype_policy": "float32", "jit_compile": None})
    assert not xla.applies({"keras": "2.15.0"}, {"jit_compile": True})
    mixed = VersionCondition(dtype_policy="mixed_float16")
    assert mixed.applies(versions, {"dtype_policy": "mixed_float16"}) and not mixed.applies(versions, {})
    assert xla.describe() == "keras >=3, jit_compile true"


# ---- judging validation metrics, per epoch ----


def run_with(**metrics: list[float]) -> SeedRun:
    return SeedRun(seed=0, losses=[1.0] * len(next(iter(metrics.values()))), metrics=dict(metrics), epochs_planned=5)


def test_a_metric_within_epochs_holds_at_some_epoch_up_to_that_one() -> None:
    run = run_with(val_accuracy=[0.5, 0.8, 0.96, 0.9, 0.97])
    hit = expect._metric(MetricCheck(name="val_accuracy", above=0.95, within_epochs=3), run)
    assert hit.ok and "0.96 > 0.95 at epoch 3 (within 3)" in hit.message
    miss = expect._metric(MetricCheck(name="val_accuracy", above=0.95, within_epochs=2), run)
    assert not miss.ok and "was not > 0.95 within 2 epochs (best 0.8, last 0.8" in miss.message
    final = expect._metric(MetricCheck(name="val_accuracy", above=0.95), run)
    assert final.ok and "final val_accuracy 0.97 (epoch 5)" in final.message
    lower = expect._metric(MetricCheck(name="loss", below=0.5, within_epochs=5), run)
    assert not lower.ok and "best 1" in lower.message


# ---- the diagnosis says what fits the case ----


def test_zero_curvature_says_zero_gradient_and_gives_no_learning_rate() -> None:
    flat = diagnose.estimated(0.0, diagnose.Optimizer("adam", 0.1), 3, [2.0, 2.0, 2.0, 2.0])
    text = "\n".join(flat.lines())
    assert flat.flat and "zero gradient" in text and "dead units" in text
    assert "try lr" not in text and "inf" not in text


def test_a_scenario_that_expects_divergence_is_not_told_how_to_converge() -> None:
    x = np.arange(1.0, 21.0).reshape(-1, 1)
    sgd = diagnose.Optimizer("sgd", 0.01)
    converges = diagnose.exact(x, True, 1, sgd, 1)
    assert any("try lr" in line for line in converges.lines())
    diverges = diagnose.exact(x, True, 1, sgd, 1)
    diverges = type(diverges)(**{**diverges.__dict__, "goal": "diverges"})
    assert not any("try" in line for line in diverges.lines())  # lr is above the bound: nothing to advise
    slow = diagnose.exact(x, True, 1, diagnose.Optimizer("sgd", 0.001), 1)
    slow = type(slow)(**{**slow.__dict__, "goal": "diverges"})
    assert any(
        "to diverge as expected, the learning rate must exceed the bound 0.006931" in line for line in slow.lines()
    )
    pinned = type(slow)(**{**slow.__dict__, "goal": "other"})  # a metric alone may pin a failure down
    assert not any("try" in line or "to diverge" in line for line in pinned.lines())


def test_a_schedule_is_named_where_the_diagnosis_states_the_learning_rate() -> None:
    sgd = diagnose.Optimizer("sgd", 0.005, learning_rate_source="ExponentialDecay at step 0")
    found = diagnose.exact(np.arange(1.0, 21.0).reshape(-1, 1), True, 1, sgd, 1)
    assert "learning rate 0.005 (sgd; ExponentialDecay at step 0)" in "\n".join(found.lines())


def test_stuck_units_are_reported_per_layer() -> None:
    run = SeedRun(seed=0, losses=[1.0])
    run.units = [
        {"layer": "dense", "activation": "relu", "units": 16, "stuck": 16},
        {"layer": "dense_1", "activation": "relu", "units": 16, "stuck": 0},
    ]
    line = failure_text.units_summary(run)
    assert line.startswith("units at the end of training: dense 16 of 16 relu dead") and "dense_1" not in line
    run.units[0]["stuck"] = 0
    assert failure_text.units_summary(run) == ""


def test_runs_under_other_settings_have_their_curves_left_uncompared() -> None:
    def record(policy: str, jit: bool | None) -> dict:
        seeds = [{"seed": 0, "losses": [1.0, 0.5], "rounding_floor": 0.0, "jit_compile": jit, "summary": {}}]
        return {"id": "s.yaml::a", "outcome": "passed", "seeds": seeds, "runtime": {"dtype_policy": policy}}

    rules = compare.Rules()
    same = list(compare._drift(record("float32", False), record("float32", False), rules, [], _change))
    assert not same
    moved = list(compare._drift(record("float32", False), record("mixed_float16", False), rules, [], _change))
    assert moved == [
        ("drift", "trained under different settings (dtype_policy float32 → mixed_float16): curves not compared")
    ]
    unstated = record("float32", None)  # a record written before jit_compile was recorded: not taken to differ
    assert not list(compare._drift(unstated, record("float32", False), rules, [], _change))
    xla = list(compare._drift(record("float32", True), record("float32", False), rules, [], _change))
    assert xla == [("drift", "trained under different settings (jit_compile true → false): curves not compared")]


def _change(kind: str, message: str, worse: bool, *args: object, **kwargs: object) -> tuple[str, str]:
    assert not worse and kwargs.get("noise")
    return kind, message


# ---- real training ----

REAL = """\
  - name: images-both-paths
    data: {file: images.npz}
    model:
      - Conv2D: {filters: 4, kernel_size: 3, activation: relu}
      - Flatten
      - Dense: {units: 3, activation: softmax}
    loss: sparse_categorical_crossentropy
    metrics: [accuracy]
    optimizer: {name: adam, learning_rate: 0.01}
    batch_size: 16
    shuffle: false
    epochs: 4
    validation_split: 0.25
    expect: {metric: {name: val_accuracy, above: 0.0}}
  - name: tokens
    data: {file: tokens.npz}
    model:
      - Embedding: {input_dim: 10, output_dim: 4}
      - GlobalAveragePooling1D
      - Dense: {units: 1, activation: sigmoid}
    loss: binary_crossentropy
    metrics: [accuracy]
    optimizer: {name: adam, learning_rate: 0.05}
    epochs: 30
    expect: {metric: {name: accuracy, above: 0.9}}
  - name: schedule-and-early-stop
    optimizer:
      name: sgd
      learning_rate: {ExponentialDecay: {initial_learning_rate: 0.005, decay_steps: 5, decay_rate: 0.5}}
    callbacks: [{EarlyStopping: {monitor: loss, min_delta: 1.0e-3, patience: 2}}]
    epochs: 200
    expect: {converges: {loss_below: 10}}
  - name: plateau
    optimizer: {name: sgd, learning_rate: 1.0e-4}
    callbacks: [{ReduceLROnPlateau: {monitor: loss, factor: 0.5, patience: 1, min_delta: 10}}]
    epochs: 4
    expect: {converges: {loss_below: 100}}
  - name: mixed-precision
    data: {x: {linspace: [0, 1, 20]}}
    optimizer: {name: sgd, learning_rate: 0.3}
    dtype_policy: mixed_float16
    jit_compile: true
    epochs: 5
    expect: {converges: {loss_below: 100}}
  - name: dead-relu
    data: {x: {linspace: [0, 1, 20]}}
    model: [{Dense: {units: 8, activation: relu, bias_initializer: {}}}, {Dense: {units: 1}}]
    expect: {converges: {loss_below: 100}}
"""


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scenario]:
    folder = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(0)
    images = rng.normal(size=(48, 6, 6, 1)).astype(np.float32)
    save_npz(folder, "images.npz", images, (images.mean(axis=(1, 2, 3)) > 0).astype(int) + (images[:, 0, 0, 0] > 1))
    tokens = rng.integers(0, 10, (200, 8))
    save_npz(folder, "tokens.npz", tokens, (tokens == 3).any(axis=1).astype(np.float32))
    path = folder / "s.yaml"
    path.write_text(HEADER + REAL.replace("bias_initializer: {}", "bias_initializer: zeros"), encoding="utf-8")
    return {s.name: s for s in load_file(path)}


@pytest.mark.keras
def test_images_train_on_both_paths_with_keras_own_validation_split(real: dict[str, Scenario]) -> None:
    scenario = real["images-both-paths"]
    assert keras_side.check(scenario) == []
    (on_numpy,) = keras_side.run(scenario, fit_input="numpy")
    (on_dataset,) = keras_side.run(scenario, fit_input="dataset")
    assert set(on_numpy.metrics) == set(on_dataset.metrics) == {"accuracy", "val_accuracy", "val_loss"}
    assert len(on_numpy.metrics["val_loss"]) == len(on_dataset.metrics["val_loss"]) == 4
    # the dataset path holds out the same last 12 samples as fit(validation_split=0.25), and trains fit's batches
    assert on_dataset.losses == on_numpy.losses
    assert on_dataset.metrics["val_loss"] == on_numpy.metrics["val_loss"]


@pytest.mark.keras
def test_integer_tokens_feed_an_embedding(real: dict[str, Scenario]) -> None:
    scenario = real["tokens"]
    (run,) = keras_side.run(scenario, fit_input="dataset")
    assert expect.judge(scenario.spec.expect, [run]).ok, run.metrics["accuracy"][-3:]


@pytest.mark.keras
def test_a_schedule_and_an_early_stop_are_built_by_the_plugin(real: dict[str, Scenario]) -> None:
    scenario = real["schedule-and-early-stop"]
    (run,) = keras_side.run(scenario, fit_input="numpy")
    assert run.stop_reason == "callback EarlyStopping" and run.epochs_run < 200
    diagnosis = keras_side.diagnose(scenario, [run])
    assert diagnosis.learning_rate == pytest.approx(0.005)
    assert "ExponentialDecay at step 0" in diagnosis.optimizer
    (plateau,) = keras_side.run(real["plateau"], fit_input="dataset")
    rates = plateau.metrics.get("learning_rate") or plateau.metrics.get("lr")  # Keras 3 / Keras 2 name it so
    assert rates is not None and rates[-1] < rates[0] == pytest.approx(1e-4)


@pytest.mark.keras
def test_keras_refuses_what_the_file_cannot_know_located(tmp_path: Path) -> None:
    found = load(
        tmp_path,
        """\
  - name: s
    optimizer: {name: sgd, learning_rate: {ExponentialDecay: {initial_learning_rate: 0.1, decay_stepz: 3}}}
    callbacks: [{EarlyStopping: {monitr: loss}}]
    loss: {name: mean_squared_error, reduction: sum}
    expect: {converges: {loss_below: 1}}
""",
    )
    problems = keras_side.check(found["s"])
    assert [(p.line, p.key) for p in problems] == [
        (10, "scenarios[0].optimizer.learning_rate"),
        (12, "scenarios[0].loss"),
        (11, "scenarios[0].callbacks[0]"),
    ]
    assert "decay_stepz" in problems[0].message and "monitr" in problems[2].message
    assert "keywords need a loss class" in problems[1].message


@pytest.mark.keras
def test_precision_and_xla_are_set_for_the_run_recorded_and_restored(real: dict[str, Scenario]) -> None:
    _, keras = keras_side.frameworks()
    (run,) = keras_side.run(real["mixed-precision"], fit_input="dataset")
    assert all(math.isfinite(v) for v in run.losses)
    assert keras.mixed_precision.global_policy().name == "float32"  # set back after the run
    major = int(keras.__version__.split(".")[0])
    # Keras 3 turns XLA off under op determinism (which the plugin enables); Keras 2 compiles with it
    assert run.jit_compile is (major < 3)


@pytest.mark.keras
def test_dead_units_are_counted_at_the_end_of_training(real: dict[str, Scenario]) -> None:
    scenario = real["dead-relu"]
    tf, keras = keras_side.frameworks()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.layers[0].set_weights([-np.ones((1, 8), np.float32), -np.ones(8, np.float32)])  # every unit below zero
    (state,) = keras_side.unit_states(tf, model, scenario.x)
    assert state == {"layer": model.layers[0].name, "activation": "relu", "units": 8, "stuck": 8}
    (run,) = keras_side.run(scenario, fit_input="numpy")
    assert [u["activation"] for u in run.units] == ["relu"] and run.units[0]["units"] == 8


@pytest.mark.keras
@pytest.mark.usefixtures("tensorflow_imported_once")  # in-process pytester runs would import it twice otherwise
def test_the_same_suite_under_two_settings_side_by_side(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makefile(
        ".yaml",
        s=HEADER
        + """\
  - name: held-out
    data: {x: {linspace: [0, 1, 20]}}
    optimizer: {name: sgd, learning_rate: 0.3}
    validation_split: 0.2
    epochs: 20
    expect: {metric: {name: val_loss, below: 1.0}}
  - name: not-under-xla
    skip: {jit_compile: true, reason: "pinned to the plain train step"}
    epochs: 2
    expect: {converges: {loss_below: 1.0e9}}
""",
    )
    plain = pytester.runpytest("--scenarios", "s.yaml", "--convergence-json", "plain.json")
    plain.assert_outcomes(passed=2)
    mixed = pytester.runpytest(
        "--scenarios",
        "s.yaml",
        "--convergence-dtype-policy",
        "mixed_float16",
        "--convergence-jit-compile",
        "on",
        "--convergence-json",
        "mixed.json",
        "-rs",
    )
    mixed.assert_outcomes(passed=1, skipped=1)
    mixed.stdout.fnmatch_lines(["*pinned to the plain train step [[]skip where jit_compile true[]]*"])
    document = json.loads((pytester.path / "mixed.json").read_text())
    (record,) = [r for r in document["scenarios"] if r["name"] == "held-out"]
    assert record["runtime"]["dtype_policy"] == "mixed_float16" and record["runtime"]["jit_compile"] is True
    assert len(record["seeds"][0]["metrics"]["val_loss"]) == 20
    page = pytester.path / "compare.html"
    files = [str(pytester.path / "plain.json"), str(pytester.path / "mixed.json")]
    code = main(["compare", *files, "--width", "0", "--html", str(page)])
    out = capsys.readouterr().out
    assert "trained under different settings (dtype_policy float32 → mixed_float16" in out
    assert code == 0, out
    assert page.read_text().count("validation loss (val_loss)") == 1  # held-out has a validation curve, the other not
