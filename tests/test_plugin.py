"""The plugin end to end, with pytester and real Keras training."""

from __future__ import annotations

import fnmatch
import json
import re

import jsonschema
import pytest
from texts import CONVERGES_BUT_DIVERGES, DIVERGES, HEADER, PREDICTS

from pytest_convergence import results, schemas

# every test here trains with real Keras, in pytester runs inside this process
pytestmark = [pytest.mark.keras, pytest.mark.usefixtures("tensorflow_imported_once")]


HEAVY = ("tensorflow", "keras", "numpy", "pydantic", "yaml", "packaging", "scipy", "ray", "re2")


def test_ordinary_runs_are_unaffected(pytester: pytest.Pytester, scenario_file) -> None:
    scenario_file(DIVERGES)
    pytester.makepyfile(
        test_plain=f"def test_plain():\n    import sys\n    assert not [m for m in {HEAVY!r} if m in sys.modules]\n"
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*linear.yaml*")


def test_collect_only_lists_one_item_per_scenario(pytester: pytest.Pytester, scenario_file) -> None:
    scenario_file(DIVERGES, PREDICTS)
    result = pytester.runpytest("--scenarios", "linear.yaml", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["linear.yaml::sgd-default-lr-diverges", "linear.yaml::sgd-scaled-data-predicts"])
    assert result.ret == 0


def test_scenarios_alone_unless_other_paths_are_given(pytester: pytest.Pytester) -> None:
    pytester.mkdir("scenarios")
    (pytester.path / "scenarios" / "deep").mkdir()
    (pytester.path / "scenarios" / "deep" / "s.yml").write_text(HEADER + DIVERGES)
    pytester.makepyfile(test_plain="def test_plain(): pass")
    alone = pytester.runpytest("--scenarios", "scenarios", "--collect-only", "-q")
    alone.stdout.fnmatch_lines(["scenarios/deep/s.yml::sgd-default-lr-diverges", "1 test collected*"])
    both = pytester.runpytest("test_plain.py", "--scenarios", "scenarios", "--collect-only", "-q")
    both.stdout.fnmatch_lines(["test_plain.py::test_plain", "scenarios/deep/s.yml::*", "2 tests collected*"])
    # a project whose testpaths name its unit tests: --scenarios alone collects the scenarios, and the header says so
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    pytester.mkdir("tests")
    (pytester.path / "tests" / "test_unit.py").write_text("def test_unit(): pass\n")
    header = pytester.runpytest("--scenarios", "scenarios", "--collect-only")
    header.stdout.fnmatch_lines(["convergence: scenarios from scenarios", "*1 test collected*"])
    header.stdout.no_fnmatch_line("*testpaths*")


def test_ini_key_makes_scenarios_part_of_a_plain_run(pytester: pytest.Pytester) -> None:
    pytester.mkdir("scenarios")
    (pytester.path / "scenarios" / "s.yaml").write_text(HEADER + DIVERGES)
    pytester.makeini("[pytest]\nconvergence_scenarios = scenarios\n")
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["scenarios/s.yaml::sgd-default-lr-diverges"])


def test_outcomes_and_failure_message(pytester: pytest.Pytester, scenario_file) -> None:
    scenario_file(DIVERGES, CONVERGES_BUT_DIVERGES, PREDICTS)
    result = pytester.runpytest("--scenarios", "linear.yaml")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ sgd-default-lr-converges (linear.yaml:11) _*",
            "converges: final loss * at epoch 30 is not below 0.01 (lowest 28.5 at epoch 1) (seed 0)"
            " ?0 of 1 seed(s) passed, min_pass_rate 100%?",
            "linear.yaml:11: scenario 'sgd-default-lr-converges'",
            "  seed 0: FAIL",
            "    loss: first 28.5, lowest 28.5 (epoch 1), last * (epoch 30)",
            "    curve (log scale, epochs 1..30): ▁*█",
            "FAILED linear.yaml::sgd-default-lr-converges - converges: final loss*",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


def test_selection_marks_and_exitfirst(pytester: pytest.Pytester, scenario_file) -> None:
    scenario_file(
        CONVERGES_BUT_DIVERGES,
        DIVERGES.replace("expect:", "marks: [slow]\n    expect:"),
    )
    pytester.makeini("[pytest]\nmarkers = slow\n")
    result = pytester.runpytest("--scenarios", "linear.yaml", "-k", "diverges", "-q")
    result.assert_outcomes(passed=1, deselected=1)
    result = pytester.runpytest("--scenarios", "linear.yaml", "-m", "slow", "--strict-markers")
    result.assert_outcomes(passed=1, deselected=1)
    result = pytester.runpytest("--scenarios", "linear.yaml", "-m", "not convergence")
    result.assert_outcomes(deselected=2)
    result = pytester.runpytest("--scenarios", "linear.yaml", "-x")
    result.assert_outcomes(failed=1)


def test_junitxml(pytester: pytest.Pytester, scenario_file) -> None:
    scenario_file(DIVERGES, CONVERGES_BUT_DIVERGES)
    pytester.runpytest("--scenarios", "linear.yaml", "--junitxml", "out.xml")
    xml = (pytester.path / "out.xml").read_text()
    assert 'name="sgd-default-lr-diverges"' in xml and 'name="sgd-default-lr-converges"' in xml
    assert xml.count("<failure") == 1 and "is not below 0.01" in xml


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        ("optimizer: sgdd", 10, "optimizer.name: unknown Keras optimizer 'sgdd'; did you mean 'sgd'? Known: *adam*"),
        (
            "optimizer: {name: sgd, momentom: 0.9}",
            10,
            "optimizer: sgd: no keyword 'momentom'; did you mean 'momentum'? Its keywords: learning_rate, momentum*",
        ),
        (
            "loss: mean_squared_eror",
            10,
            "loss: unknown Keras loss 'mean_squared_eror'; did you mean 'mean_squared_error'*",
        ),
        ("model: [{Dence: {units: 1}}]", 10, "model[0]: unknown Keras layer 'Dence'; did you mean 'Dense'*"),
        (
            "model: [{Dense: {units: 1, unitz: 1}}]",
            10,
            "model[0]: Dense(units=1, unitz=1) is refused by Keras: *unitz*",
        ),
        ("model: [{InputLayer: {}}]", 10, "model[0]: leave out the input layer*"),
        # a scenario file builds only layers that compute: refused before the layer is made (making a TFSMLayer
        # loads and runs a SavedModel; a lookup layer reads its vocabulary file)
        ("model: [{Lambda: {function: x}}, Dense]", 10, "model[0]: Keras layer 'Lambda' is not one a scenario*"),
        (
            "model: [{IntegerLookup: {vocabulary: /etc/passwd}}, Dense]",
            10,
            "model*: keyword 'vocabulary': '/etc/passwd' looks like a file path*",
        ),
        ("metrics: [acuracy]", 10, "metrics[0]: unknown Keras metric 'acuracy'; did you mean 'accuracy'*"),
        ("model: 'no_such_module:build'", 10, "model: cannot find 'no_such_module' for the model factory*"),
        ("model: 'factories:nope'", 10, "model: module 'factories' (factories.py) defines no function 'nope'*"),
        ("model: 'os:fork'", 10, "model: cannot find 'os' for the model factory 'os:fork': a factory is a function*"),
        (
            "data: {file: ../../../../etc/passwd.csv, x_columns: [a], y_columns: [b]}",
            10,
            "data.file: data.file must stay inside * (the run's root directory); '../../../../etc/passwd.csv' leads*",
        ),
    ],
)
def test_keras_names_are_checked_at_collection(pytester: pytest.Pytester, change: str, line: int, message: str) -> None:
    pytester.makepyfile(factories="def build(): pass\n")
    pytester.makefile(
        ".yaml", bad=HEADER + "  - name: a\n    " + change + "\n    expect: {diverges: {within_epochs: 3}}\n"
    )
    result = pytester.runpytest("--scenarios", "bad.yaml")
    expected = re.escape(f"bad.yaml:{line}: scenarios[0].{message}").replace(r"\*", ".*")
    result.stdout.re_match_lines([".*ERROR collecting bad.yaml.*", expected])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_a_collection_error_shows_no_tensorflow_start_up_chatter(pytester: pytest.Pytester) -> None:
    """In a fresh process TensorFlow (2.16 on) writes absl/oneDNN lines to stderr as it starts, which pytest would
    show under the collection error: only the problem itself is shown."""
    pytester.makefile(
        ".yaml", bad=HEADER + "  - name: a\n    loss: mean_squared_eror\n    expect: {converges: {loss_below: 1}}\n"
    )
    result = pytester.runpytest_subprocess("--scenarios", "bad.yaml")
    result.stdout.fnmatch_lines(["bad.yaml:10: scenarios[[]0[]].loss: unknown Keras loss 'mean_squared_eror'*"])
    for chatter in ("*absl::InitializeLog*", "*oneDNN*", "*Captured stderr*"):
        result.stdout.no_fnmatch_line(chatter)


def test_file_loading_layers_are_refused_before_they_are_made(pytester: pytest.Pytester) -> None:
    """TFSMLayer loads a SavedModel (whose graph runs in training) when it is made: the scenario is refused at
    collection without making it. An empty folder stands where a SavedModel would be: had the layer been made,
    Keras would have complained about that folder instead."""
    from pytest_convergence import keras as keras_side

    if not hasattr(keras_side.frameworks()[1].layers, "TFSMLayer"):
        pytest.skip("this Keras has no TFSMLayer")
    pytester.mkdir("evil_sm")
    pytester.makefile(
        ".yaml",
        s=HEADER.replace(
            "model: [{Dense: {units: 1}}]", "model: [{TFSMLayer: {filepath: evil_sm}}, {Dense: {units: 1}}]"
        )
        + DIVERGES,
    )
    result = pytester.runpytest("--scenarios", "s.yaml", "--collect-only")
    result.stdout.fnmatch_lines(["s.yaml:3: defaults.model[[]0[]]: Keras layer 'TFSMLayer' is not one a scenario*"])
    result.stdout.no_fnmatch_line("*evil_sm*")
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_bad_yaml_is_one_collection_error_and_the_other_files_still_run(
    pytester: pytest.Pytester, scenario_file
) -> None:
    scenario_file(DIVERGES, name="good")
    pytester.makefile(".yaml", bad=HEADER + "  - name: a\n    epochs: [1,\n")
    result = pytester.runpytest("--scenarios", ".", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting bad.yaml*", "bad.yaml:10: not valid YAML*"])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_model_factory_next_to_the_yaml(pytester: pytest.Pytester) -> None:
    pytester.mkdir("s")
    (pytester.path / "s" / "my_models.py").write_text(
        "def linear():\n"
        "    import keras\n"
        "    return keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(1)])\n"
        "def not_a_model():\n"
        "    return 42\n"
        "def compiled():\n"
        "    model = linear()\n"
        "    model.compile(optimizer='sgd', loss='mse')\n"
        "    return model\n"
    )
    (pytester.path / "s" / "f.yaml").write_text(
        HEADER
        + "  - name: factory\n    model: 'my_models:linear'\n    expect: {diverges: {within_epochs: 30}}\n"
        + "  - name: not-a-model\n    model: 'my_models:not_a_model'\n    expect: {diverges: {within_epochs: 30}}\n"
        + "  - name: compiled\n    model: 'my_models:compiled'\n    expect: {diverges: {within_epochs: 30}}\n"
    )
    result = pytester.runpytest("--scenarios", "s")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*TypeError: model factory 'my_models:not_a_model' returned int, not a keras.Model*"])
    result.stdout.fnmatch_lines(
        ["*TypeError: model factory 'my_models:compiled' returned a compiled model; return it*"]
    )


def test_factories_are_project_code_found_without_importing(pytester: pytest.Pytester) -> None:
    """A factory is looked up by parsing its file at collection (also --collect-only), imported only when its
    scenario runs, must live inside the rootdir, and can be refused altogether for untrusted scenario files."""
    project = pytester.mkdir("project")
    (project / "models.py").write_text(
        "import pathlib\n"
        "pathlib.Path('imported').write_text('module code ran')\n"
        "def linear():\n"
        "    import keras\n"
        "    return keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(1)])\n"
    )
    outside = pytester.mkdir("elsewhere")
    (outside / "stray.py").write_text("def linear(): pass\n")
    (project / "stray.py").symlink_to(outside / "stray.py")
    (project / "f.yaml").write_text(
        HEADER + "  - name: factory\n    model: 'models:linear'\n    expect: {diverges: {within_epochs: 30}}\n"
    )
    listed = pytester.runpytest("--rootdir", str(project), "--scenarios", "project", "--collect-only", "-q")
    listed.stdout.fnmatch_lines(["f.yaml::factory"])
    assert not (pytester.path / "imported").exists()  # collection did not import it
    ran = pytester.runpytest("--rootdir", str(project), "--scenarios", "project")
    ran.assert_outcomes(passed=1)
    assert (pytester.path / "imported").exists()  # the scenario's run did
    refused = pytester.runpytest("--rootdir", str(project), "--scenarios", "project", "--convergence-no-factories")
    refused.stdout.fnmatch_lines(["*f.yaml:10: scenarios[[]0[]].model: model factories are turned off here*"])
    assert refused.ret == pytest.ExitCode.INTERRUPTED
    (project / "f.yaml").write_text(
        HEADER + "  - name: stray\n    model: 'stray:linear'\n    expect: {diverges: {within_epochs: 30}}\n"
    )
    stray = pytester.runpytest("--rootdir", str(project), "--scenarios", "project", "--collect-only")
    stray.stdout.fnmatch_lines(["*model: the model factory's module 'stray' leads outside*"])


def test_metric_expectation_on_a_real_classifier(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml",
        cls="""\
defaults:
  data: {x: {linspace: [-2, 2, 40]}, y: "x > 0"}
  model: [{Dense: {units: 1, activation: sigmoid}}]
  optimizer: {name: adam, learning_rate: 0.1}
  loss: binary_crossentropy
  metrics: [accuracy]
  batch_size: 40
scenarios:
  - name: separable
    epochs: 40
    expect: {metric: {name: accuracy, above: 0.9}}
  - name: impossible
    epochs: 5
    expect: {metric: {name: accuracy, above: 1.01}}
""",
    )
    result = pytester.runpytest("--scenarios", "cls.yaml")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*FAIL metric accuracy: final accuracy * (epoch 5) is not > 1.01"])


def test_json_record(pytester: pytest.Pytester, scenario_file) -> None:
    scenario_file(DIVERGES, CONVERGES_BUT_DIVERGES, PREDICTS)
    pytester.runpytest("--scenarios", "linear.yaml", "--convergence-json", "out/r.json")
    doc = results.read(pytester.path / "out" / "r.json")
    # the file as written (NaN and Infinity as strings) is what the published schema describes
    raw = json.loads((pytester.path / "out" / "r.json").read_text())
    jsonschema.validate(raw, schemas.results_file(), cls=jsonschema.Draft202012Validator)
    env = doc["environment"]
    assert env["tensorflow"] and env["keras"] and env["numpy"] and env["python"]
    by_name = {s["name"]: s for s in doc["scenarios"]}
    assert {n: s["outcome"] for n, s in by_name.items()} == {
        "sgd-default-lr-diverges": "passed",
        "sgd-default-lr-converges": "failed",
        "sgd-scaled-data-predicts": "passed",
    }
    diverged = by_name["sgd-default-lr-diverges"]["seeds"][0]
    # the early verdict: 1e6× growth is reached at epoch 12 and training stops there
    assert (diverged["epochs_run"], diverged["stop_reason"], diverged["epochs_planned"]) == (
        12,
        "expectations decided",
        30,
    )
    assert len(diverged["losses"]) == len(diverged["epoch_seconds"]) == 12
    assert diverged["losses"][0] == pytest.approx(28.5019, rel=1e-4)
    assert diverged["fit_seconds"] > 0
    predicted = by_name["sgd-scaled-data-predicts"]["seeds"][0]
    assert predicted["predictions"][0][0] == pytest.approx(1.0, abs=0.05)
    assert by_name["sgd-default-lr-converges"]["line"] == 11


def test_noise_floor_seeds_and_timing_in_the_record(pytester: pytest.Pytester, scenario_file) -> None:
    """--convergence-noise-floor trains each seed again from weights moved one ulp; --convergence-seeds adds seeds;
    every record carries its machine calibration and per-seed summaries for the comparison."""
    scenario_file(DIVERGES, PREDICTS)
    result = pytester.runpytest(
        "--scenarios",
        "linear.yaml",
        "--convergence-noise-floor",
        "--convergence-seeds",
        "3",
        "--convergence-json",
        "r.json",
    )
    result.assert_outcomes(passed=2)
    by_name = {s["name"]: s for s in results.read(pytester.path / "r.json")["scenarios"]}
    predicts = by_name["sgd-scaled-data-predicts"]
    assert [s["seed"] for s in predicts["seeds"]] == [0, 1, 2]
    for seed in predicts["seeds"]:
        # a linear model under full-batch SGD is not chaotic: one ulp moves its curve by rounding only
        assert 0 <= seed["rounding_floor"] < 1e-4 and 1 <= seed["rounding_floor_epoch"] <= 100
        assert seed["summary"]["passed"] == 1.0 and seed["summary"]["prediction_error"] < 0.05
    assert by_name["sgd-default-lr-diverges"]["seeds"][0]["summary"]["diverges_epoch"] == 12.0
    assert predicts["runtime"]["noise_floor"] is True
    timing = predicts["timing"]
    assert len(timing["calibration_s"]) == 10 and all(t > 0 for t in timing["calibration_s"])
    assert timing["epochs"]["n"] == 3 * 99 and timing["epochs"]["p10_s"] <= timing["epochs"]["median_s"]
    # without the option no floor is measured (it costs a second training per seed)
    pytester.runpytest("--scenarios", "linear.yaml", "--convergence-json", "plain.json")
    plain = results.read(pytester.path / "plain.json")["scenarios"][0]
    assert plain["seeds"][0]["rounding_floor"] is None and plain["runtime"]["noise_floor"] is False


def test_seeded_runs_are_identical(pytester: pytest.Pytester, scenario_file) -> None:
    scenario_file(PREDICTS.replace("expect:", "seeds: 2\n    expect:"))
    curves = []
    for i in range(2):
        pytester.runpytest("--scenarios", "linear.yaml", "--convergence-json", f"r{i}.json")
        doc = results.read(pytester.path / f"r{i}.json")
        curves.append([s["losses"] for s in doc["scenarios"][0]["seeds"]])
    assert curves[0] == curves[1]
    assert curves[0][0] != curves[0][1]  # different seeds do start differently


def test_xdist_gives_the_serial_verdicts_and_one_complete_record(pytester: pytest.Pytester, scenario_file) -> None:
    pytest.importorskip("xdist")
    scenario_file(DIVERGES, CONVERGES_BUT_DIVERGES, PREDICTS)
    pytester.makefile(".yaml", other=HEADER + DIVERGES.replace("sgd-default", "other"))
    serial = pytester.runpytest("--scenarios", ".", "--convergence-json", "serial.json")
    parallel = pytester.runpytest("--scenarios", ".", "-n", "2", "--convergence-json", "parallel.json")
    serial.assert_outcomes(passed=3, failed=1)
    parallel.assert_outcomes(passed=3, failed=1)
    parallel.stdout.fnmatch_lines(["*sgd-default-lr-converges (linear.yaml:11)*", "*is not below 0.01*"])
    one, two = (results.read(pytester.path / f) for f in ("serial.json", "parallel.json"))
    assert [(s["id"], s["outcome"]) for s in one["scenarios"]] == [(s["id"], s["outcome"]) for s in two["scenarios"]]
    # the same seeded curves, computed in other processes
    assert [s["seeds"][0]["losses"] for s in one["scenarios"]] == [s["seeds"][0]["losses"] for s in two["scenarios"]]
    assert two["environment"]["tensorflow"] == one["environment"]["tensorflow"]
    assert json.loads((pytester.path / "parallel.json").read_text())["schema"] == results.SCHEMA


def test_baseline_lifecycle(pytester: pytest.Pytester, scenario_file) -> None:
    """First run without a baseline, record it, compare unchanged, change a scenario, stale entries.

    Slowdowns are left out of what counts (--convergence-fail-on): a rerun on a busy machine is slower, and no
    test may depend on the machine's speed. The timing judgement has its own tests on hand-made records."""
    gate = ("--convergence-baseline", "base", "--convergence-fail-on", "outcome,error,shift,drift")
    scenario_file(DIVERGES, PREDICTS)
    first = pytester.runpytest("--scenarios", "linear.yaml", *gate)
    first.stdout.fnmatch_lines(["*no baseline at *base/convergence-baseline.json yet (first run?)*"])
    assert first.ret == 0
    pytester.runpytest("--scenarios", "linear.yaml", "--convergence-record", "base")
    assert (pytester.path / "base" / "convergence-baseline.json").is_file()
    same = pytester.runpytest("--scenarios", "linear.yaml", *gate)
    same.stdout.fnmatch_lines(["*compared with the baseline*", "Decision: PASSES — nothing that counts changed*"])
    same.stdout.no_fnmatch_line("*[[]drift*")
    assert same.ret == 0
    # a different learning rate changes the curve: drift, and the run fails although every test passed
    scenario_file(DIVERGES, PREDICTS.replace("learning_rate: 0.6", "learning_rate: 0.5"))
    changed = pytester.runpytest("--scenarios", "linear.yaml", *gate)
    changed.assert_outcomes(passed=2)
    changed.stdout.fnmatch_lines(["*[[]drift, regression[]] linear.yaml::sgd-scaled-data-predicts*loss curve*"])
    assert changed.ret == pytest.ExitCode.TESTS_FAILED
    # a scenario removed from the file is listed as stale, not as a regression
    scenario_file(DIVERGES)
    stale = pytester.runpytest("--scenarios", "linear.yaml", *gate)
    stale.stdout.fnmatch_lines(["stale baseline entries*", "  linear.yaml::sgd-scaled-data-predicts"])
    assert stale.ret == 0


def test_version_conditions_and_api_expectations(pytester: pytest.Pytester) -> None:
    from pytest_convergence import keras as keras_side

    keras3 = keras_side.versions()["keras"].startswith("3")
    pytester.makefile(
        ".yaml",
        api=HEADER
        + """\
  - name: list-predict-works
    xfail: {keras: ">=3", reason: "Keras 3 rejects lists"}
    epochs: 3
    expect: {predict: {x: 25, y: 0, abs_tol: 1.0e9, input: list}}
  - name: list-predict-raises
    skip: {keras: "<3", reason: "Keras 2 accepts lists"}
    epochs: 3
    expect:
      predict: {x: 25, y: 0, abs_tol: 1.0e9, input: list}
      raises: {error: ValueError, match: "Unrecognized data type"}
  - name: raises-but-nothing-does
    epochs: 3
    expect:
      predict: {x: 25, y: 0, abs_tol: 1.0e9}
      raises: {error: ValueError}
  - name: wrongly-declared-xfail
    xfail: {tensorflow: ">=2", reason: "not really failing"}
    epochs: 3
    expect: {predict: {x: 25, y: 0, abs_tol: 1.0e9}}
  - name: skipped-on-no-version
    skip: {tensorflow: "<1", reason: "never"}
    epochs: 3
    expect: {predict: {x: 25, y: 0, abs_tol: 1.0e9}}
""",
    )
    result = pytester.runpytest("--scenarios", "api.yaml", "-rA", "--convergence-json", "r.json")
    if keras3:
        result.assert_outcomes(passed=2, failed=2, xfailed=1)
        result.stdout.fnmatch_lines(
            ["XFAIL api.yaml::list-predict-works - Keras 3 rejects lists [[]xfail where keras >=3[]]"]
        )
    else:
        result.assert_outcomes(passed=2, failed=2, skipped=1)
        result.stdout.fnmatch_lines(["SKIPPED * Keras 2 accepts lists [[]skip where keras <3[]]"])
    result.stdout.fnmatch_lines(
        [
            "*FAIL raises: expected ValueError, but the run raised nothing*",
            "FAILED api.yaml::wrongly-declared-xfail - [[]XPASS(strict)[]] not really failing*",
        ]
    )
    raw = json.loads((pytester.path / "r.json").read_text())  # skipped, xfailed, xpassed, failed records too
    jsonschema.validate(raw, schemas.results_file(), cls=jsonschema.Draft202012Validator)
    records = {s["name"]: s for s in results.read(pytester.path / "r.json")["scenarios"]}
    outcomes = {name: s["outcome"] for name, s in records.items()}
    assert outcomes["wrongly-declared-xfail"] == "xpassed"
    assert outcomes["list-predict-works"] == ("xfailed" if keras3 else "passed")
    assert outcomes["list-predict-raises"] == ("passed" if keras3 else "skipped")
    # what the scenario declares for this version travels with the record, for compare to tell declared changes
    declared = records["list-predict-works" if keras3 else "list-predict-raises"]["declared"]
    assert declared == (
        {"kind": "xfail", "where": "keras >=3", "reason": "Keras 3 rejects lists"}
        if keras3
        else {"kind": "skip", "where": "keras <3", "reason": "Keras 2 accepts lists"}
    )
    assert "declared" not in records["raises-but-nothing-does"]


def test_failure_explains_the_divergence_with_the_stability_bound(pytester: pytest.Pytester, scenario_file) -> None:
    """The motivating case expected to converge: the message states the bound, ×k and the growth factors."""
    scenario_file(CONVERGES_BUT_DIVERGES)
    result = pytester.runpytest("--scenarios", "linear.yaml", "--convergence-json", "r.json")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    lam_max = (289 + (289**2 - 4 * 133) ** 0.5) / 2  # H = [[287, 21], [21, 2]] for xs = 1..20
    bound = float(re.search(r"bound lr < 2/λmax = ([\d.e+-]+)", text)[1])
    ratio = float(re.search(r"is ×([\d.]+) the bound, above it", text)[1])
    predicted, measured = map(
        float, re.search(r"predicted ×([\d.]+) = \(1 − lr·λmax\)², measured ×([\d.]+)", text).groups()
    )
    assert bound == pytest.approx(2 / lam_max, rel=0.02)
    assert ratio == pytest.approx(0.01 * lam_max / 2, rel=0.02)
    assert predicted == pytest.approx((1 - 0.01 * lam_max) ** 2, rel=0.02)
    assert measured == pytest.approx((1 - 0.01 * lam_max) ** 2, rel=0.02)
    result.stdout.fnmatch_lines(["why — stability (exact: linear model under MSE*", "  try lr ≈ 0.00692*"])
    (record,) = results.read(pytester.path / "r.json")["scenarios"]
    assert record["diagnosis"]["bound"] == pytest.approx(bound, rel=1e-3) and record["diagnosis"]["exact"]


def test_stable_expectation_checks_the_threshold_against_theory(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml",
        threshold=HEADER
        + """\
  - name: sixteen-points-below-the-bound
    data: {x: {arange: [1, 17]}}
    expect: {stable: {lr_below_bound: true, bound: 0.01061}}
  - name: seventeen-points-claimed-stable
    data: {x: {arange: [1, 18]}}
    expect: {stable: {lr_below_bound: true}}
""",
    )
    result = pytester.runpytest("--scenarios", "threshold.yaml")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["stable: lr 0.01 is ×1.058 the exact bound 0.009454 (expected below it) (seed 0)*", "why — stability*"]
    )


def test_plots_one_png_per_scenario(pytester: pytest.Pytester, scenario_file) -> None:
    scenario_file(DIVERGES, CONVERGES_BUT_DIVERGES)
    result = pytester.runpytest("--scenarios", "linear.yaml", "--convergence-plots", "plots")
    result.assert_outcomes(passed=1, failed=1)
    pngs = sorted(p.relative_to(pytester.path / "plots").as_posix() for p in (pytester.path / "plots").rglob("*"))
    assert pngs == ["linear", "linear/sgd-default-lr-converges.png", "linear/sgd-default-lr-diverges.png"]
    for png in (pytester.path / "plots" / "linear").iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_fit_input_option_ini_and_record(pytester: pytest.Pytester, scenario_file) -> None:
    scenario_file(DIVERGES, PREDICTS.replace("epochs: 100", "epochs: 100\n    fit: {input: numpy}"))
    result = pytester.runpytest(
        "--scenarios", "linear.yaml", "--convergence-input", "dataset", "--convergence-json", "r.json"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["convergence: fit input dataset where a scenario does not set fit.input"])
    inputs = {s["name"]: s["runtime"]["fit_input"] for s in results.read(pytester.path / "r.json")["scenarios"]}
    assert inputs == {"sgd-default-lr-diverges": "dataset", "sgd-scaled-data-predicts": "numpy"}
    pytester.makeini("[pytest]\nconvergence_input = arrays\n")
    result = pytester.runpytest("--scenarios", "linear.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: convergence_input in *tox.ini: expected one of auto, numpy, dataset, got 'arrays'"]
    )


def test_auto_input_trains_fit_s_batches_and_says_how_it_knows(pytester: pytest.Pytester, scenario_file) -> None:
    """The default: a sentinel per scenario (fit on the numpy arrays beside the first seed's run on the
    fast path, the scenario's own shuffling) decides the path, and the record says which path trained, that it
    trained fit's batches, and keeps the sentinel's epoch times of fit on the arrays for the gate's slowdown
    judgement. On Keras 2 the fast path saves little: auto trains on the arrays, without a sentinel."""
    from pytest_convergence import keras as keras_side

    scenario_file(DIVERGES, PREDICTS)
    result = pytester.runpytest("--scenarios", "linear.yaml", "--convergence-json", "r.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["convergence: fit input auto: fit's own batches*"])
    keras3 = keras_side.keras_major() >= 3
    for record in results.read(pytester.path / "r.json")["scenarios"]:
        runtime = record["runtime"]
        assert runtime["fit_input_asked"] == "auto" and runtime["fit_batches"] is True
        if not keras3:
            assert runtime["fit_input"] == "numpy" and "fidelity" not in record
            continue
        assert runtime["fit_input"] == "dataset"
        fidelity = record["fidelity"]
        assert fidelity["agrees"] and fidelity["largest_difference"] == 0.0 and fidelity["epochs"] >= 2
        assert record["timing"]["numpy_epochs"]["n"] == 20  # 21 epochs of fit on the arrays, the first traces


def test_a_setting_that_cannot_take_effect_is_said_once(pytester: pytest.Pytester, scenario_file) -> None:
    """jit_compile: true on Keras 3, under op determinism, trains without XLA: one warning of ours per scenario and a
    line in the record, instead of Keras's own warning at every compile (sentinel, seeds). Keras 2 takes XLA."""
    from pytest_convergence import keras as keras_side

    scenario_file(PREDICTS.replace("epochs: 100", "epochs: 100\n    jit_compile: true\n    seeds: 2"))
    result = pytester.runpytest("--scenarios", "linear.yaml", "--convergence-json", "r.json", "-W", "default")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*Model doesn't support `jit_compile=True`*")
    (record,) = results.read(pytester.path / "r.json")["scenarios"]
    if keras_side.keras_major() >= 3:  # Keras 3
        note = (
            "jit_compile: true could not take effect: this Keras turned XLA off, as Keras 3 does under op determinism*"
        )
        result.stdout.fnmatch_lines([f"*linear.yaml::sgd-scaled-data-predicts: {note}"])
        assert len(fnmatch.filter(result.stdout.lines, f"*{note}")) == 1
        assert [fnmatch.fnmatch(n, note) for n in record["unmet_settings"]] == [True]
        assert {s["jit_compile"] for s in record["seeds"]} == {False}
    else:
        assert "unmet_settings" not in record and {s["jit_compile"] for s in record["seeds"]} == {True}
