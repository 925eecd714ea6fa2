"""Reliability end to end: time limits, training that raises, dying workers, interrupted runs, run settings."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from texts import DIVERGES, HEADER, PREDICTS

from pytest_convergence import errors, isolation, results

# every test here trains with real Keras, in pytester runs inside this process
pytestmark = [pytest.mark.keras, pytest.mark.usefixtures("tensorflow_imported_once")]

FACTORIES = """\
import os, signal

def raises():
    raise RuntimeError("the factory broke: shape (3, 4) does not fit")

def dies():
    os.kill(os.getpid(), signal.SIGKILL)

def interrupts():
    raise KeyboardInterrupt
"""


def factory_scenario(name: str, func: str) -> str:
    return f"  - name: {name}\n    model: 'factories:{func}'\n    expect: {{diverges: {{within_epochs: 30}}}}\n"


def test_time_limit_stops_training_and_the_rest_goes_on(pytester: pytest.Pytester, scenario_file) -> None:
    slow = PREDICTS.replace("sgd-scaled-data-predicts", "slow").replace(
        "epochs: 100", "epochs: 100000\n    timeout_s: 2"
    )
    scenario_file(slow, DIVERGES)
    # numpy: no fidelity sentinel, which counts against the limit too and on a busy machine can take all of 2 s
    result = pytester.runpytest(
        "--scenarios", "linear.yaml", "--convergence-input", "numpy", "--convergence-json", "r.json"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["timeout: the time limit of 2 s was reached after * of 100000 epochs, last loss *"])
    doc = results.read(pytester.path / "r.json")
    slow_record = next(s for s in doc["scenarios"] if s["name"] == "slow")
    seed = slow_record["seeds"][0]
    assert seed["stop_reason"] == "time limit" and 0 < seed["epochs_run"] < 100000
    assert sum(seed["epoch_seconds"]) < 2.5 and slow_record["runtime"]["timeout_s"] == 2


def test_default_time_limit_from_the_command_line_and_ini(pytester: pytest.Pytester, scenario_file) -> None:
    scenario_file(PREDICTS.replace("epochs: 100", "epochs: 100000"))
    result = pytester.runpytest("--scenarios", "linear.yaml", "--convergence-timeout", "1")
    result.stdout.fnmatch_lines(["*the time limit of 1 s was reached*"])
    pytester.makeini("[pytest]\nconvergence_timeout = soon\n")
    bad = pytester.runpytest("--scenarios", "linear.yaml")
    bad.stderr.fnmatch_lines(["*convergence_timeout in *tox.ini: expected a number of seconds > 0, or 0 / none*"])
    assert bad.ret == pytest.ExitCode.USAGE_ERROR


def test_there_is_a_default_time_limit_and_it_can_be_turned_off(pytester: pytest.Pytester, scenario_file) -> None:
    """epochs: 1000000 without a limit would train for hours: one hour per scenario unless told otherwise."""
    scenario_file(DIVERGES)
    pytester.runpytest("--scenarios", "linear.yaml", "--convergence-json", "default.json")
    assert results.read(pytester.path / "default.json")["scenarios"][0]["runtime"]["timeout_s"] == 3600
    pytester.runpytest("--scenarios", "linear.yaml", "--convergence-timeout", "none", "--convergence-json", "off.json")
    assert results.read(pytester.path / "off.json")["scenarios"][0]["runtime"]["timeout_s"] is None


def test_the_default_limit_is_checked_after_each_epoch(tmp_path: Path) -> None:
    """Without a batch hook (it costs Keras 3 a few per cent), the limit stops training after a whole epoch."""
    from pytest_convergence import keras as keras_side
    from pytest_convergence.scenario import load_file

    path = tmp_path / "s.yaml"
    path.write_text(HEADER + PREDICTS.replace("epochs: 100", "epochs: 100000"))
    (scenario,) = load_file(path)
    (run,) = keras_side.run(scenario, timeout_s=1.0, per_batch=False)
    assert run.stop_reason == "time limit" and 1 <= run.epochs_run < 100000
    assert len(run.epoch_seconds) == len(run.losses) and sum(run.epoch_seconds) < 3


def test_training_that_raises_is_summarised_first(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(factories=FACTORIES)
    pytester.makefile(".yaml", s=HEADER + factory_scenario("broken", "raises") + DIVERGES)
    result = pytester.runpytest("--scenarios", "s.yaml", "--convergence-json", "r.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "s.yaml:9: scenario 'broken': training raised RuntimeError: the factory broke: shape (3, 4) does not fit",
            "(run with -v for the traceback)",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    verbose = pytester.runpytest("--scenarios", "s.yaml", "-v")
    verbose.stdout.fnmatch_lines(
        ["*training raised RuntimeError*", "*def raises():*", "E * RuntimeError: the factory*"]
    )
    doc = results.read(pytester.path / "r.json")
    broken = next(s for s in doc["scenarios"] if s["name"] == "broken")
    assert broken["outcome"] == "error" and broken["error"].startswith("RuntimeError: the factory broke")


def test_a_dying_worker_is_named_and_the_other_results_are_kept(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(factories=FACTORIES)
    pytester.makefile(
        ".yaml",
        s=HEADER + factory_scenario("killed", "dies") + DIVERGES + DIVERGES.replace("sgd-default", "another"),
    )
    result = pytester.runpytest("--scenarios", "s.yaml", "-n", "2", "--convergence-json", "r.json")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed while running 's.yaml::killed'*"])
    doc = results.read(pytester.path / "r.json")
    outcomes = {s["name"]: s["outcome"] for s in doc["scenarios"]}
    assert outcomes == {"killed": "error", "sgd-default-lr-diverges": "passed", "another-lr-diverges": "passed"}
    killed = next(s for s in doc["scenarios"] if s["name"] == "killed")
    assert "crashed" in killed["error"]


def test_a_serial_run_that_dies_keeps_what_finished(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    """The process itself dies (no xdist to catch it): the journal beside the results file keeps every result that
    finished and names the scenario it died in; compare reads it and blocks (a crashed run never passes); each next
    run saves it before starting afresh, a second crash's beside the first's."""
    pytester.makepyfile(factories=FACTORIES)
    pytester.makefile(".yaml", s=HEADER + DIVERGES + factory_scenario("killed", "dies"))
    died = pytester.runpytest_subprocess("--scenarios", "s.yaml", "--convergence-json", "r.json")
    assert died.ret == -9 and not (pytester.path / "r.json").exists()
    from pytest_convergence.cli import main

    capsys.readouterr()
    assert main(["compare", str(pytester.path / "r.json"), "--width", "0"]) == 1
    out = capsys.readouterr().out
    assert "did not finish" in out.splitlines()[0] and "(recovered from a run that died)" in out
    assert re.search(r"s\.yaml::sgd-default-lr-diverges +pass", out) and re.search(r"s\.yaml::killed +ERROR", out)
    again = pytester.runpytest_subprocess("--scenarios", "s.yaml", "--convergence-json", "r.json")
    assert again.ret == -9
    pytester.makefile(".yaml", s=HEADER + DIVERGES)
    last = pytester.runpytest_subprocess("--scenarios", "s.yaml", "--convergence-json", "r.json")
    last.stdout.fnmatch_lines(["*an earlier run writing *r.json died before it finished: the 2 result(s) it had*"])
    for name in ("r.interrupted.json", "r.interrupted-2.json"):
        saved = results.read(pytester.path / name)
        assert {x["name"]: x["outcome"] for x in saved["scenarios"]} == {
            "sgd-default-lr-diverges": "passed",
            "killed": "error",
        }
        assert saved["complete"] is False and "never finished" in saved["scenarios"][0]["error"]
    assert (pytester.path / "r.json").exists() and not (pytester.path / "r.json.journal").exists()


def test_a_journal_without_results_is_not_saved(pytester: pytest.Pytester, scenario_file) -> None:
    """A run that stopped before any scenario finished (a usage error, say) left only the journal's first line."""
    scenario_file(DIVERGES)
    (pytester.path / "r.json.journal").write_text('{"started": "2026-11-25T10:00:00+00:00", "argv": []}\n')
    result = pytester.runpytest("--scenarios", "linear.yaml", "--convergence-json", "r.json")
    result.stdout.no_fnmatch_line("*died before it finished*")
    assert not (pytester.path / "r.interrupted.json").exists() and (pytester.path / "r.json").exists()


def test_two_runs_cannot_write_one_results_file(pytester: pytest.Pytester, scenario_file) -> None:
    """The journal is locked while its run lasts: a second run on the same path says so instead of overwriting."""
    fcntl = pytest.importorskip("fcntl")
    scenario_file(DIVERGES)
    with (pytester.path / "r.json.journal").open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        second = pytester.runpytest_subprocess("--scenarios", "linear.yaml", "--convergence-json", "r.json")
    second.stderr.fnmatch_lines(["*another run is writing *r.json*give each run its own results file*"])
    assert second.ret == pytest.ExitCode.USAGE_ERROR


def test_an_interrupted_run_writes_what_finished_marked_incomplete(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(factories=FACTORIES)
    pytester.makefile(".yaml", s=HEADER + DIVERGES + factory_scenario("ctrl-c", "interrupts"))
    # in a subprocess: an in-process run would pass the KeyboardInterrupt on to this test session
    result = pytester.runpytest_subprocess("--scenarios", "s.yaml", "--convergence-json", "r.json")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    doc = results.read(pytester.path / "r.json")
    assert doc["complete"] is False and doc["exitstatus"] == int(pytest.ExitCode.INTERRUPTED)
    assert [s["name"] for s in doc["scenarios"]] == ["sgd-default-lr-diverges"]
    pytester.makefile(".yaml", s=HEADER + DIVERGES)
    pytester.runpytest("--scenarios", "s.yaml", "--convergence-json", "r.json")
    again = results.read(pytester.path / "r.json")
    assert again["complete"] is True
    assert [p.name for p in pytester.path.iterdir() if p.name.startswith(".r.json")] == []  # no temporary left


def test_records_say_how_the_run_was_set_up(
    pytester: pytest.Pytester, scenario_file, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the inner run is serial even when this suite runs under xdist, whose worker count is in the environment
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    scenario_file(DIVERGES)
    pytester.runpytest("--scenarios", "linear.yaml", "--convergence-json", "r.json")
    runtime = results.read(pytester.path / "r.json")["scenarios"][0]["runtime"]
    assert runtime["op_determinism"] is True
    assert runtime["intra_op_threads"] >= 1 and runtime["inter_op_threads"] >= 1
    assert runtime["xdist_workers"] == 1 and runtime["timeout_s"] == 3600


def test_threads_are_shared_among_xdist_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_convergence import keras as keras_side
    from pytest_convergence.keras import environment

    monkeypatch.setattr(environment.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    assert keras_side.threads_per_process() == 2
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "16")
    assert keras_side.threads_per_process() == 1
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")
    assert keras_side.threads_per_process() == 8


def test_captured_stderr_keeps_real_errors_and_drops_tensorflow_chatter(pytester: pytest.Pytester) -> None:
    """tf_keras's first fit logs a tf.data notice as an error (E0000 … use_unbounded_threadpool) on fd 2: a failure
    report shows what else was written there, without it."""
    notice = (
        "E0000 00:00:1795639776.125105 24316 node_def_util.cc:682] NodeDef mentions attribute "
        "use_unbounded_threadpool which is not in the op definition"
    )
    pytester.makepyfile(
        factories=f"""
import os
from pytest_convergence.keras import frameworks

def noisy():
    os.write(2, b"{notice}\\n")
    os.write(2, b"a real problem the user must see\\n")
    keras = frameworks()[1]
    return keras.Sequential([keras.layers.Dense(1)])

def quiet():
    os.write(2, b"{notice}\\n")
    keras = frameworks()[1]
    return keras.Sequential([keras.layers.Dense(1)])
"""
    )
    converges = "    expect: {converges: {loss_below: 1.0e-12}}\n"  # fails: the report shows its captured output
    pytester.makefile(
        ".yaml",
        s=HEADER
        + "  - name: noisy\n    model: 'factories:noisy'\n    epochs: 2\n"
        + converges
        + "  - name: quiet\n    model: 'factories:quiet'\n    epochs: 2\n"
        + converges,
    )
    result = pytester.runpytest("--scenarios", "s.yaml", "-p", "no:faulthandler")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*Captured stderr call*", "a real problem the user must see"])
    result.stdout.no_fnmatch_line("*use_unbounded_threadpool*")
    assert result.stdout.str().count("Captured stderr call") == 1  # quiet's section held only the notice: gone


NATIVE_FAILURES = """\
import os, time

def aborts():
    os.abort()  # what a native crash does: no Python exception, the process is gone

def hangs():
    time.sleep(600)  # stands for a hang inside native code: the scenario never reaches an epoch end
"""


TENSORFLOW_IN_PYTEST = """\
import os, sys

def pytest_sessionfinish(session):  # one file per pytest process: the controller and each xdist worker
    with open("tensorflow-in-" + os.environ.get("PYTEST_XDIST_WORKER", "pytest"), "w") as fh:
        fh.write(str("tensorflow" in sys.modules))
"""


def isolated_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(factories=NATIVE_FAILURES)
    pytester.makefile(
        ".yaml",
        s=HEADER
        + DIVERGES.replace("sgd-default-lr-diverges", "ok-before")
        + factory_scenario("crash", "aborts")
        + factory_scenario("hang", "hangs")
        + "    timeout_s: 2\n"
        + DIVERGES.replace("sgd-default-lr-diverges", "ok-after")
        # judged by the versions the training child reported at collection
        + DIVERGES.replace("sgd-default-lr-diverges", "skipped")
        + "    skip: {keras: '>=2', reason: any Keras}\n",
    )


def test_isolated_training_survives_a_native_crash_and_kills_a_hang(pytester: pytest.Pytester) -> None:
    """--convergence-isolate 1: every scenario in a new child process. The crash fails alone, the hang is killed
    within a second of its limit, and the scenarios around them train as usual, each in its own process."""
    isolated_file(pytester)
    pytester.makeconftest(TENSORFLOW_IN_PYTEST)
    # the child checks the Keras names at collection: the same located error as in-process
    pytester.makefile(".yaml", bad=HEADER.replace("{Dense: {units: 1}}", "{Dense: {units: 1, unitz: 1}}") + DIVERGES)
    # in a subprocess: the pytest process that owns the children is a fresh one, as a user's is
    result = pytester.runpytest_subprocess(
        "--scenarios", ".", "--convergence-isolate", "1", "--convergence-json", "r.json",
        "--continue-on-collection-errors",
    )  # fmt: skip
    result.assert_outcomes(passed=2, failed=2, skipped=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "bad.yaml:*: *model[[]0[]]: Dense(units=1, unitz=1) is refused by Keras: *unitz*",
            "s.yaml:*: scenario 'crash': the training process died (a native crash*; the other scenarios go on*",
            "s.yaml:*: scenario 'hang': the time limit of 2 s was reached and training did not stop*: its process "
            "was killed after * s",
        ]
    )
    killed_after = float(re.search(r"killed after ([\d.]+) s", result.stdout.str())[1])  # type: ignore[index]
    assert 2 <= killed_after <= 3.5
    records = {s["name"]: s for s in results.read(pytester.path / "r.json")["scenarios"]}
    assert records["crash"]["error"].startswith("TrainingProcessDied: ")
    assert records["hang"]["error"].startswith("TrainingProcessKilled: ")
    pids = [records[name]["runtime"]["pid"] for name in ("ok-before", "ok-after")]
    assert len(set(pids)) == 2  # each in a child of its own (isolate 1)
    result.stderr.no_fnmatch_line("*Traceback*")  # nothing left behind by the killed and the crashed child
    assert records["ok-after"]["seeds"][0]["losses"] == records["ok-before"]["seeds"][0]["losses"]
    # the children checked the file and reported what trains: the pytest process never imported TensorFlow
    assert (pytester.path / "tensorflow-in-pytest").read_text() == "False"
    assert records["skipped"]["outcome"] == "skipped"
    assert records["ok-before"]["versions"]["tensorflow"] and records["ok-before"]["versions"]["keras"]
    assert records["ok-before"]["runtime"]["intra_op_threads"] >= 1


def test_isolated_training_under_xdist(pytester: pytest.Pytester) -> None:
    isolated_file(pytester)
    pytester.makeconftest(TENSORFLOW_IN_PYTEST)
    result = pytester.runpytest_subprocess("--scenarios", "s.yaml", "--convergence-isolate", "5", "-n", "2")
    result.assert_outcomes(passed=2, failed=2, skipped=1)
    # the workers collected and trained through their children, never importing TensorFlow themselves
    assert {f.name: f.read_text() for f in pytester.path.glob("tensorflow-in-*")} == {
        "tensorflow-in-pytest": "False",
        "tensorflow-in-gw0": "False",
        "tensorflow-in-gw1": "False",
    }
    result.stdout.fnmatch_lines_random(["*scenario 'crash': the training process died*", "*scenario 'hang': the time*"])


def test_a_child_that_dies_while_checking_fails_that_file_and_the_next_gets_a_new_one(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(HEADER + DIVERGES)
    (tmp_path / "bad.yaml").write_text(HEADER.replace("units: 1}", "units: 1, unitz: 1}") + DIVERGES)
    trainer = isolation.Trainer(every=50)
    try:
        good = isolation.CheckJob(str(tmp_path / "s.yaml"), "s.yaml", str(tmp_path), factories=True)
        bad = isolation.CheckJob(str(tmp_path / "bad.yaml"), "bad.yaml", str(tmp_path), factories=True)
        assert trainer.check(good) == []
        (problem,) = trainer.check(bad)
        assert problem.path == "bad.yaml" and "unitz" in problem.message
        first = trainer.pid
        os.kill(first, signal.SIGKILL)  # what a native crash does to it
        with pytest.raises(errors.IsolatedFailure, match=r"died while checking .* new process"):
            trainer.check(good)
        assert trainer.check(good) == [] and trainer.pid not in (0, first)
    finally:
        trainer.close()


def test_an_error_while_checking_comes_back_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the child sends back when checking raises: the error as plain text (an exception object could need
    TensorFlow to be rebuilt in the parent). Run here in-process, as the child would run it."""
    from pytest_convergence import keras as keras_side

    def broken(scenario: object, factories: bool) -> list[object]:
        raise PermissionError("cannot read factories.py")

    monkeypatch.setattr(keras_side, "check", broken)
    (tmp_path / "s.yaml").write_text(HEADER + DIVERGES)
    out = isolation.check_file(isolation.CheckJob(str(tmp_path / "s.yaml"), "s.yaml", str(tmp_path), factories=True))
    assert out["error"]["type"] == "PermissionError" and out["error"]["message"] == "cannot read factories.py"
    assert "Traceback" in out["error"]["trace"] and set(out) == {"error"}
    back = errors.ChildError.from_plain(out["error"])  # what Trainer.check raises in the parent
    assert (back.type_name, str(back)) == ("PermissionError", "cannot read factories.py") and back.trace
