"""Scenario files as an attacker writes them (issue 26): text that would start a CI log line or clear a terminal,
regular expressions that backtrack forever, files and models that grow without bound, a file changed under an
isolated run. Each is refused where it is written, bounded by an operator's cap, or made harmless on the way out."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from texts import HEADER

from pytest_convergence import limits as limits_mod
from pytest_convergence.errors import ScenarioError
from pytest_convergence.limits import Limits
from pytest_convergence.scenario import load_file
from pytest_convergence.text import one_line, printable

ONE = "  - name: a\n    expect: {diverges: {within_epochs: 30}}\n"


def only_problem(tmp_path: Path, text: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_file(path, display="s.yaml")
    (problem,) = err.value.problems
    return str(problem)


def injected(lines: list[str]) -> list[str]:
    """The lines a CI log would read as a command, or that hold a terminal escape."""
    return [line for line in lines if line.lstrip().startswith("::") or "\x1b" in line]


# ---- text that reaches terminals, CI logs and job summaries


@pytest.mark.parametrize(
    ("where", "value", "shown"),
    [
        ("description", '"ok \\x1b[2J"', "s.yaml:11: scenarios[0].description: the control character '\\x1b'"),
        ("skip", '{reason: "x\\r::error::X"}', "s.yaml:11: scenarios[0].skip.reason: the control character '\\r'"),
        ("xfail", '{reason: "\\u202e evil"}', "s.yaml:11: scenarios[0].xfail.reason: the control character '\\u202e'"),
        ('"na\\x07me"', "1", "s.yaml:11: scenarios[0]: the control character '\\x07'"),
    ],
)
def test_control_characters_in_a_scenario_file_are_refused_where_written(
    tmp_path: Path, where: str, value: str, shown: str
) -> None:
    message = only_problem(tmp_path, HEADER + ONE + f"    {where}: {value}\n")
    assert message.startswith(shown)
    assert "\x1b" not in message and "\r" not in message and "\u202e" not in message


def test_marks_are_names_pytest_takes(tmp_path: Path) -> None:
    newline = only_problem(tmp_path, HEADER + ONE + '    marks: ["\\n::error::MARK"]\n')
    assert newline.startswith("s.yaml:11: scenarios[0].marks[0]: the control character '\\n' is not allowed")
    assert "\n" not in newline
    underscore = only_problem(tmp_path, HEADER + ONE + "    marks: [_x]\n")  # pytest.mark._x raises AttributeError
    assert underscore.startswith("s.yaml:11: scenarios[0].marks[0]: String should match pattern")
    own = only_problem(tmp_path, HEADER + ONE + "    marks: [slow, skip]\n")
    assert "marks: 'skip' is one of pytest's own marks" in own


def test_reasons_fold_onto_one_line_and_specifiers_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(HEADER + ONE + '    skip: {reason: "\\n::error::SKIP  now"}\n')
    (scenario,) = load_file(path)
    assert scenario.spec.skip[0].reason == "::error::SKIP now"
    digits = only_problem(tmp_path, HEADER + ONE + f"    skip: {{tensorflow: '=={'9' * 5000}'}}\n")
    assert digits.startswith("s.yaml:11: scenarios[0].skip[0].tensorflow: String should have at most 200 characters")


def test_unforeseen_values_are_located_problems_not_tracebacks(tmp_path: Path) -> None:
    seed = only_problem(tmp_path, HEADER + ONE + "    data: {x: {arange: [1, 5]}, noise: {std: 0.1, seed: -1}}\n")
    assert seed.startswith("s.yaml:11: scenarios[0].data.noise.seed: Input should be greater than or equal to 0")


def test_problems_are_printable_and_bounded() -> None:
    from pytest_convergence.errors import MAX_MESSAGE, Problem

    shown = str(Problem("s.yaml", 3, "data.y", "bad \x1b[2J\n::error::X" + "y" * 50_000))
    assert "\n" not in shown and "\x1b" not in shown and "\\x1b[2J\\n::error::X" in shown
    assert len(shown) < MAX_MESSAGE + 100
    assert one_line("a\n::error \x1b[31m") == "a ::error \\x1b[31m"
    assert printable("tab\tstays, é stays, bidi \u202e goes") == "tab\tstays, é stays, bidi \\u202e goes"


@pytest.mark.keras
@pytest.mark.usefixtures("tensorflow_imported_once")
def test_pytest_output_holds_no_injected_line(pytester: pytest.Pytester) -> None:
    """End to end: a file whose NAME holds a newline and '::error' is not collected (pytest would print its path in
    its own lines, as it is); the other files' reasons, marks and failures print on lines of their own."""
    pytester.makefile(".yaml", ok=HEADER + ONE + '    skip: {reason: "\\n::error::SKIP"}\n')
    bad = pytester.path / "x\n::error title=PR::FROM-FILENAME.yaml"
    bad.write_text(HEADER + ONE)
    folder = pytester.path / "d\n::error::DIR \x1b[31m"
    folder.mkdir()
    (folder / "a.yaml").write_text(HEADER + ONE)
    named = '  - name: named\n    model: [{Dense: {units: 1, name: "c\\n::error title=PR::NAME"}}]\n'
    pytester.makefile(".yaml", layer=HEADER + named + "    expect: {diverges: {within_epochs: 30}}\n")
    outside = pytester.path.parent / f"{pytester.path.name}-secret.yaml"
    outside.write_text("token: ghp_SECRET\n")
    (pytester.path / "linked.yaml").symlink_to(outside)
    result = pytester.runpytest_subprocess(
        "--scenarios", ".", "-rA", "-W", "default", "-v", "--continue-on-collection-errors"
    )
    out = result.stdout.lines + result.stderr.lines
    assert injected(out) == []
    assert not [line for line in out if "ghp_SECRET" in line]
    for line in (
        "layer.yaml:10: scenarios?0?.model?0?.Dense.name: the control character '\\n' is not allowed*",
        "*not collected: the scenario file *x\\n::error title=PR::FROM-FILENAME.yaml has a control character*",
        "*not collected: the scenario file *d\\n::error::DIR \\x1b[[]31m/a.yaml has a control character*",
        "*not collected: the scenario file *linked.yaml resolves outside the rootdir*",
        "SKIPPED * ::error::SKIP ?skip where always?",
    ):
        result.stdout.fnmatch_lines([line])
    result.assert_outcomes(skipped=1, errors=1, warnings=3)


# ---- regular expressions


def test_an_untrusted_regular_expression_is_matched_in_linear_time() -> None:
    """`(.+)+Z` against a long message backtracks for ever in Python's re; the matcher is RE2's. In a subprocess
    with a time limit, so that a regression fails instead of hanging the suite."""
    code = textwrap.dedent(
        """
        from pytest_convergence.spec import Raises
        r = Raises(error="Exception", match="(.+)+Z")
        assert not r.matches("x" * 100_000)
        assert Raises(error="ValueError", match="Unrecognized data type").matches("ValueError: Unrecognized data type")
        """
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert time.perf_counter() - started < 60


@pytest.mark.parametrize(
    ("pattern", "said"),
    [
        ("(a)\\1", "invalid escape sequence"),  # a backreference
        ("(?=a)", "invalid perl operator"),  # a lookahead
        ("a{1001}", "invalid repetition size"),
    ],
)
def test_regular_expressions_re2_cannot_run_are_refused(tmp_path: Path, pattern: str, said: str) -> None:
    message = only_problem(
        tmp_path, HEADER + f"  - name: a\n    expect: {{raises: {{error: E, match: '{pattern}'}}}}\n"
    )
    assert message.startswith("s.yaml:10: scenarios[0].expect.raises.match: match is not a regular")
    assert said in message and "RE2 syntax" in message


# ---- the operator's caps


def test_limits_parse_and_name_what_is_allowed() -> None:
    assert limits_mod.parse(["params=5_000", "memory_mib=0"], "x") == Limits(params=5000, memory_mib=0)
    with pytest.raises(
        ValueError, match="'colour=1' is not NAME=VALUE with NAME one of params, activations, scenario_file"
    ):
        limits_mod.parse(["colour=1"], "--convergence-limit")
    with pytest.raises(ValueError, match="params must be a whole number >= 1"):
        limits_mod.parse(["params=" + "9" * 5000], "--convergence-limit")


def test_timeout_s_is_finite(tmp_path: Path) -> None:
    message = only_problem(tmp_path, HEADER + ONE + "    timeout_s: .inf\n")
    assert message.startswith("s.yaml:11: scenarios[0].timeout_s: Input should be a finite number")


@pytest.mark.keras
@pytest.mark.usefixtures("tensorflow_imported_once")
def test_the_operator_caps_win_over_the_scenario(pytester: pytest.Pytester) -> None:
    """--convergence-timeout is a ceiling (a scenario's larger timeout_s does not raise it; a smaller one lowers it),
    and a model above --convergence-limit params fails untrained with what to do."""
    pytester.makefile(
        ".yaml",
        caps=HEADER
        + "  - name: asks-for-a-day\n    timeout_s: 86400\n    epochs: 1\n    expect: {converges: {loss_below: 1e9}}\n"
        + "  - name: asks-for-less\n    timeout_s: 2\n    epochs: 1\n    expect: {converges: {loss_below: 1e9}}\n"
        + "  - name: wide\n    model: [{Dense: {units: 1000}}, {Dense: {units: 1}}]\n    epochs: 1\n"
        + "    expect: {converges: {loss_below: 1e9}}\n",
    )
    result = pytester.runpytest(
        "--scenarios", "caps.yaml", "--convergence-timeout", "5", "--convergence-limit", "params=1500",
        "--convergence-json", "r.json",
    )  # fmt: skip
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*scenario 'wide': training raised ModelTooLarge: the model has 3,001 parameters; this run allows 1,500 "
            "(--convergence-limit params=N raises it)"
        ]
    )
    import json

    records = {r["name"]: r for r in json.loads((pytester.path / "r.json").read_text())["scenarios"]}
    assert records["asks-for-a-day"]["runtime"]["timeout_s"] == 5
    assert records["asks-for-less"]["runtime"]["timeout_s"] == 2
    bad = pytester.runpytest("--scenarios", "caps.yaml", "--convergence-limit", "params")
    bad.stderr.fnmatch_lines(["*--convergence-limit: 'params' is not NAME=VALUE with NAME one of params*"])
    assert bad.ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.keras
@pytest.mark.usefixtures("tensorflow_imported_once")
def test_the_diagnosis_stops_at_the_time_limit(tmp_path: Path) -> None:
    from pytest_convergence.keras import probes

    path = tmp_path / "s.yaml"
    path.write_text(HEADER + "  - name: a\n    model: [{Dense: {units: 8, activation: tanh}}, {Dense: {units: 1}}]\n"
                    "    expect: {diverges: {within_epochs: 30}}\n")  # fmt: skip
    (scenario,) = load_file(path)
    assert probes.sharpness(scenario, 0, deadline=None) != 0
    with pytest.raises(TimeoutError, match="the time limit was reached during it"):
        probes.sharpness(scenario, 0, deadline=time.perf_counter())


@pytest.mark.keras
@pytest.mark.slow
def test_an_isolated_child_trains_the_file_collection_checked(pytester: pytest.Pytester) -> None:
    """The file rewritten after collection (here by a conftest hook; in life, by anything that writes the checkout
    during a long run): the child does not train what nobody checked; the scenario fails and says why."""
    pytester.makefile(".yaml", s=HEADER + ONE)
    pytester.makeconftest(
        """
        from pathlib import Path

        def pytest_collection_finish(session):
            path = Path("s.yaml")
            path.write_text(path.read_text().replace("units: 1}", "units: 2}"))
        """
    )
    result = pytester.runpytest_subprocess("--scenarios", "s.yaml", "--convergence-isolate", "1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*s.yaml changed since collection; run the tests again to check and train it*"])


@pytest.mark.keras
@pytest.mark.slow
def test_the_training_child_memory_cap(pytester: pytest.Pytester) -> None:
    """--convergence-limit memory_mib caps the isolated child's address space: a model that needs more fails its
    scenario with an allocation error; the next scenario trains in a new child."""
    pytester.makefile(
        ".yaml",
        s=HEADER + "  - name: huge\n    model: [{Dense: {units: 300000000}}]\n    epochs: 1\n"
        "    expect: {converges: {loss_below: 1e9}}\n" + "  - name: tiny\n    epochs: 1\n"
        "    expect: {converges: {loss_below: 1e9}}\n",
    )
    result = pytester.runpytest_subprocess(
        "--scenarios", "s.yaml", "--convergence-isolate", "1",
        "--convergence-limit", "params=1000000000", "--convergence-limit", "memory_mib=3000",
    )  # fmt: skip
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*scenario 'huge': *"])


@pytest.mark.keras
def test_the_documented_untrusted_run_loads_no_code_from_the_checkout(tmp_path: Path) -> None:
    """README's line for untrusted pull requests, against a checkout whose conftest.py and pytest.ini (addopts: -p of
    a module in the checkout) would each write a file: neither runs, the scenarios are collected."""
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "s.yaml").write_text(HEADER + ONE)
    (tmp_path / "conftest.py").write_text("import pathlib\npathlib.Path('FROM-CONFTEST').write_text('ran')\n")
    (tmp_path / "evil.py").write_text("import pathlib\npathlib.Path('FROM-PLUGIN').write_text('ran')\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p evil\npythonpath = .\n")
    (tmp_path / "scenarios" / "test_evil.py").write_text(
        "import pathlib\npathlib.Path('FROM-TEST').write_text('ran')\n"
    )
    doctest = ">>> import pathlib\n>>> _ = pathlib.Path('FROM-DOCTEST').write_text('ran')\n"
    (tmp_path / "scenarios" / "test_evil.txt").write_text(doctest)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (line,) = [ln for ln in readme.splitlines() if ln.startswith("pytest -c /dev/null")]
    pytest_command = Path(sys.executable).parent / "pytest"
    args = [str(pytest_command), *line.split()[1:], "--collect-only", "-q"]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "scenarios/s.yaml::a" in done.stdout, done.stdout + done.stderr
    ran = [name for name in ("FROM-CONFTEST", "FROM-PLUGIN", "FROM-TEST") if (tmp_path / name).exists()]
    assert ran == [] and "test_evil" not in done.stdout  # the doctest would run if it were collected
    plain = subprocess.run(
        [str(pytest_command), "--scenarios", "scenarios/", "--collect-only", "-q"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (tmp_path / "FROM-CONFTEST").exists(), plain.stdout + plain.stderr  # what the flags are for
    assert (tmp_path / "FROM-TEST").exists() and "scenarios/test_evil.txt::test_evil.txt" in plain.stdout


@pytest.mark.keras
@pytest.mark.usefixtures("tensorflow_imported_once")
def test_the_journal_a_run_reads_back_is_capped_by_the_operator(pytester: pytest.Pytester) -> None:
    """`--convergence-limit results_bytes`: an earlier run's journal above it is not read (kept whole, named)."""
    pytester.makefile(".yaml", s=HEADER + ONE)
    (pytester.path / "r.json.journal").write_text('{"record": {}}\n' * 100)
    result = pytester.runpytest(
        "--scenarios", "s.yaml", "--convergence-json", "r.json", "--collect-only", "--convergence-limit",
        "results_bytes=1000",
    )  # fmt: skip
    result.stdout.fnmatch_lines(["*/r.json.journal: 1,500 bytes, over the limit of 1,000 bytes: not read"])
    assert (pytester.path / "r.interrupted.journal").stat().st_size == 1500


@pytest.mark.parametrize(
    ("entry", "shown"),
    [
        (
            "    seed: 100000000000000000000000000000000000000\n",
            "scenarios[0].seed: Input should be less than or equal",
        ),
        ("    batch_size: 100000000000000000000\n", "scenarios[0].batch_size: Input should be less than or equal"),
        (
            "    model: [{Dense: {units: 100000000000000000000}}]\n",
            "keyword 'units': 100000000000000000000 is out of range: whole numbers up to 2,147,483,647",
        ),
    ],
)
def test_numbers_beyond_what_training_takes_are_refused_at_collection(tmp_path: Path, entry: str, shown: str) -> None:
    assert shown in only_problem(tmp_path, HEADER + ONE + entry)


def test_a_results_file_nested_too_deeply_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_convergence import cli

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000)
    for command in (
        ["bisect", "--results", str(deep), str(deep)],
        ["compare", str(deep)],
        ["merge", "m.json", str(deep)],
    ):
        assert cli.main(command) == 2, command
        assert "nested too deeply" in capsys.readouterr().err


@pytest.mark.keras
@pytest.mark.usefixtures("tensorflow_imported_once")
def test_a_model_is_measured_before_its_weights_exist(tmp_path: Path) -> None:
    """The caps on weights and on a layer's output are checked on the model built without weights: a model far
    above them fails with what to raise, having allocated nothing of its size."""
    import resource

    from pytest_convergence import keras as keras_side
    from pytest_convergence.errors import ModelTooLarge
    from pytest_convergence.keras.build import fresh_model

    _, keras = keras_side.frameworks()
    path = tmp_path / "s.yaml"
    path.write_text(
        HEADER
        + "  - name: heavy\n    model: [{Dense: {units: 200000000}}, {Dense: {units: 1}}]\n"
        + "    expect: {diverges: {within_epochs: 30}}\n"
        + "  - name: wide\n    data: {x: [[1], [2]], y: [1, 2]}\n"
        + "    model: [{RepeatVector: {n: 20000000}}, {GlobalAveragePooling1D: {}}, {Dense: {units: 1}}]\n"
        + "    expect: {diverges: {within_epochs: 30}}\n"
    )
    heavy, wide = load_file(path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelTooLarge, match="the model has 600,000,001 parameters; this run allows 10,000,000"):
        fresh_model(keras, heavy, 0)
    with pytest.raises(ModelTooLarge, match="outputs 20,000,000 values per sample; this run allows 10,000,000"):
        fresh_model(keras, wide, 0)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 400, f"the peak grew by {grown_mib:.0f} MiB: the weights (1.6 GB) were allocated"


@pytest.mark.keras
@pytest.mark.usefixtures("tensorflow_imported_once")
def test_the_exact_diagnosis_is_kept_to_few_features(tmp_path: Path) -> None:
    """The exact Hessian of a linear model is features² and its eigenvalues features³: above 1 024 features the
    diagnosis is the estimate, which stops at the time limit."""
    import numpy as np

    from pytest_convergence.keras import probes

    np.savez(tmp_path / "wide.npz", x=np.ones((4, 2000)), y=np.ones(4))
    path = tmp_path / "s.yaml"
    path.write_text(HEADER + "  - name: a\n    data: {file: wide.npz}\n    expect: {diverges: {within_epochs: 30}}\n")
    (scenario,) = load_file(path, root=tmp_path)
    assert probes._linear_layer(scenario) is None
    with pytest.raises(TimeoutError):
        probes.diagnose(scenario, [], deadline=time.perf_counter())
