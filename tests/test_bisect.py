"""bisect: the ordering of builds, the search with fake probes (skips, a change that comes and goes), the judgement
of a probe against the good end, and the command's input errors; rounds of several probes at once, and probes on Ray
(their command, the sibling check, one real probe through a local Ray). The real runs are in docs/gate.md (they
install TensorFlow builds: minutes each, not for the test suite)."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_convergence import bisect, results, workspaces
from pytest_convergence.bisect import Build, Probe, Search, builds_between, parse_build
from pytest_convergence.cli import main
from pytest_convergence.errors import ProbeFailed
from pytest_convergence.record import Document, ScenarioRecord

NIGHTLIES = [f"3.16.0.dev202607{day:02d}04" for day in range(1, 31)]


def build(version: str, package: str = "keras-nightly") -> Build:
    return parse_build(f"{package}=={version}", "test")


def test_builds_are_ordered_by_pep_440_with_dev_pre_and_post_releases() -> None:
    published = ["3.16.0", "3.16.0rc1", "3.16.0.dev2026070104", "3.15.0.dev2026040704", "3.16.0a1", "3.16.0.post1",
                 "3.16.0.dev2026063004", "not-a-version", "3.17.0.dev2026110104"]  # fmt: skip
    found = builds_between(build("3.15.1", "keras"), build("3.16.0.post1"), published)
    assert [str(b.version) for b in found] == [
        "3.16.0.dev2026063004",
        "3.16.0.dev2026070104",
        "3.16.0a1",
        "3.16.0rc1",
        "3.16.0",
        "3.16.0.post1",
    ]
    assert {b.package for b in found} == {"keras-nightly"}  # the bad end's package: the release is the good end


@pytest.mark.parametrize(
    ("good", "bad", "message"),
    [
        ("keras==3.15.1", "tf-nightly==2.23.0.dev20261026", "not versions of the same module"),
        ("keras-nightly==3.16.0.dev2026070304", "keras-nightly==3.16.0.dev2026070104", "must come before"),
        ("keras==3.15.1", "keras-nightly==3.16.0.dev2099010104", "is not published"),
    ],
)
def test_ends_that_cannot_be_searched(good: str, bad: str, message: str) -> None:
    with pytest.raises(bisect.BisectInputError, match=message):
        builds_between(parse_build(good, "--good"), parse_build(bad, "--bad"), NIGHTLIES)


@pytest.mark.parametrize("text", ["keras", "keras>=3", "keras==3.*", "numpy==2.0", "keras==three"])
def test_an_end_names_one_build_of_a_known_package(text: str) -> None:
    with pytest.raises(bisect.BisectInputError, match="--good"):
        parse_build(text, "--good")


def fake(is_bad: Callable[[int], bool], skip: set[int] = frozenset()) -> tuple[Callable[[Build], Probe], list[int]]:  # type: ignore[assignment]
    """A probe that calls a build (by its day of July) bad when `is_bad(day)`; days in `skip` fail to install."""
    probed: list[int] = []

    def probe(b: Build) -> Probe:
        day = int(str(b.version.dev)[6:8])
        probed.append(day)
        if day in skip:
            return Probe(b, "skip", detail="install failed")
        return Probe(b, "bad" if is_bad(day) else "good")

    return probe, probed


def run_search(probe: Callable[[Build], Probe]) -> Search | None:
    candidates = builds_between(build("3.15.1", "keras"), build(NIGHTLIES[-1]), NIGHTLIES)
    steps = bisect.search(candidates, probe)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


@pytest.mark.parametrize("first_bad", [1, 2, 15, 29, 30])
def test_binary_search_finds_the_first_bad_build_in_about_log2_probes(first_bad: int) -> None:
    probe, probed = fake(lambda day: day >= first_bad)
    state = run_search(probe)
    assert state is not None and state.first_bad.version.dev == int(f"202607{first_bad:02d}04")
    assert (state.last_good is None) == (first_bad == 1) and not state.unresolved
    assert len(probed) <= 1 + 5 and len(set(probed)) == len(probed)  # the bad end, then ⌈log2 30⌉; none twice


def test_skipped_builds_are_stepped_around_and_reported_when_they_hide_the_answer() -> None:
    probe, probed = fake(lambda day: day >= 16, skip={15, 16, 14})
    state = run_search(probe)
    assert state is not None
    assert state.last_good is not None and state.last_good.version.dev == 2026071304
    assert state.first_bad.version.dev == 2026071704
    # 14 … 16 could not be installed: the first bad build is 17 or one of 14, 15, 16; never a guess
    assert [b.version.dev for b in state.unresolved] == [2026071404, 2026071504, 2026071604]
    assert {14, 15, 16} <= set(probed)


def test_a_change_that_comes_and_goes_ends_on_one_good_to_bad_step_the_probes_saw() -> None:
    bad_days = set(range(5, 11)) | set(range(20, 31))  # bad from the 5th, good again from the 11th, bad from the 20th
    probe, probed = fake(lambda day: day in bad_days)
    state = run_search(probe)
    assert state is not None and state.last_good is not None
    good_day, bad_day = int(str(state.last_good.version.dev)[6:8]), int(str(state.first_bad.version.dev)[6:8])
    assert bad_day == good_day + 1 and bad_day in bad_days and good_day not in bad_days
    assert good_day in probed and bad_day in probed  # both ends of the step were measured, not inferred


def test_a_bad_end_that_does_not_differ_or_cannot_be_probed_ends_the_search() -> None:
    probe, probed = fake(lambda day: False)
    assert run_search(probe) is None and probed == [30]
    probe, probed = fake(lambda day: True, skip={30})
    assert run_search(probe) is None and probed == [30]


def doc(losses: list[float], floor: float = 1e-7, outcome: str = "passed") -> Document:
    record: ScenarioRecord = {
        "id": "s.yaml::logistic",
        "outcome": outcome,  # type: ignore[typeddict-item]
        "error": None,
        "seeds": [{"seed": 0, "losses": losses, "rounding_floor": floor, "summary": {"final_loss": losses[-1]}}],
    }
    return results.document([record], [], dt.datetime.now(dt.timezone.utc), 0)


def test_a_probe_differs_only_beyond_the_noise_and_only_in_the_kinds_asked_for() -> None:
    good = doc([0.7, 0.5, 0.3])
    assert bisect.differences(good, doc([0.7, 0.5, 0.3]), bisect.DEFAULT_KINDS) == []
    # within ten times its rounding floor: the same build as far as anyone can tell
    assert bisect.differences(good, doc([0.7, 0.5, 0.3 * (1 + 5e-7)]), bisect.DEFAULT_KINDS) == []
    moved = bisect.differences(good, doc([0.7, 0.52, 0.3]), bisect.DEFAULT_KINDS)
    assert [c.kind for c in moved] == ["drift"] and "epoch 2" in moved[0].message
    assert bisect.differences(good, doc([0.7, 0.52, 0.3]), ("outcome", "error")) == []
    assert [c.kind for c in bisect.differences(good, doc([0.7, 0.5, 0.3], outcome="failed"), ("outcome",))] == [
        "outcome"
    ]


def test_probes_exclude_the_siblings_of_what_they_install(tmp_path: Path) -> None:
    """keras-nightly and keras both install `keras`; TensorFlow requires keras: the release must not come along."""
    space = workspaces.Workspace(tmp_path, ["s.yaml"], ["s.yaml"], ["tensorflow-cpu==2.21.0"])
    # one distribution per module: the release of Keras, and every TensorFlow but the pinned one
    assert space.excluded(build("3.16.0.dev2026070104")) == [
        "keras", "tensorflow", "tf-nightly", "tf-nightly-cpu"
    ]  # fmt: skip
    nightly_tf = workspaces.Workspace(tmp_path, ["s.yaml"], ["s.yaml"], ["keras==3.15.1"])
    assert nightly_tf.excluded(build("2.23.0.dev20261026", "tf-nightly")) == [
        "keras-nightly", "tensorflow", "tensorflow-cpu", "tf-nightly-cpu"
    ]  # fmt: skip
    install = space.install_commands(build("3.16.0.dev2026070104"))[1]
    assert "keras-nightly==3.16.0.dev2026070104" in install and "--excludes" in install
    assert any(r.startswith("pydantic") for r in install)  # the plugin's own requirements; its code is on PYTHONPATH


def test_the_command_names_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "s.yaml").write_text("scenarios: []\n")
    target = str(tmp_path / "s.yaml")
    assert main(["bisect", target, "--good", "keras>=3", "--bad", "keras-nightly==3.16.0.dev2026070104"]) == 2
    assert "--good 'keras>=3': write one build as PACKAGE==VERSION" in capsys.readouterr().err
    assert main(["bisect", "nope.yaml", "--good", "keras==3.15.1", "--bad", "keras==3.15.2"]) == 2
    assert "nope.yaml: no such file" in capsys.readouterr().err


def results_of(tf: str, keras: str, losses: list[float]) -> Document:
    made = doc(losses)
    made["environment"].update(tensorflow=tf, keras=keras, keras_package="keras")
    return made


def test_a_change_between_two_results_files_plans_its_own_bisect() -> None:
    """What the nightly job hands over: two results files. The scenario that changed and the one package whose
    version moved come from them; the other package stays at the good file's version."""
    release = results_of("2.21.0", "3.15.1", [0.7, 0.5, 0.3])
    keras_nightly = results_of("2.21.0", "3.16.0.dev2026102704", [0.7, 0.52, 0.3])
    plan = bisect.plan_from_results(release, keras_nightly, None)
    assert plan.targets == ["s.yaml::logistic"] and "drift" in plan.why
    assert (str(plan.good), str(plan.bad)) == ("keras 3.15.1", "keras-nightly 3.16.0.dev2026102704")
    assert plan.pins == [f"{bisect.distribution('tensorflow', '2.21.0')}==2.21.0"]

    both = results_of("2.23.0-dev20261026", "3.16.0.dev2026102704", [0.7, 0.52, 0.3])  # tf.__version__ spelling
    with pytest.raises(bisect.BisectInputError, match="--package tensorflow or --package keras"):
        bisect.plan_from_results(release, both, None)
    tf_side = bisect.plan_from_results(release, both, "tensorflow")
    assert str(tf_side.bad) == "tf-nightly 2.23.0.dev20261026" and tf_side.pins == ["keras==3.15.1"]
    with pytest.raises(bisect.BisectInputError, match="do not differ"):
        bisect.plan_from_results(release, results_of("2.21.0", "3.16.0.dev2026102704", [0.7, 0.5, 0.3]), None)


def test_the_command_from_results_files_names_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    same = tmp_path / "a.json"
    results.write(same, results_of("2.21.0", "3.15.1", [0.7, 0.5, 0.3]))
    assert main(["bisect", "--results", str(same), str(same)]) == 2
    assert "the two results files do not differ in what bisect looks at" in capsys.readouterr().err
    assert main(["bisect", "s.yaml", "--results", str(same), str(same)]) == 2
    assert "give either --results GOOD.json BAD.json, or a target with --good and --bad" in capsys.readouterr().err
    assert main(["bisect", "s.yaml", "--good", "keras==3.15.1"]) == 2
    assert "bisect needs a target with --good and --bad, or --results" in capsys.readouterr().err
    bad_pin = ["bisect", "s.yaml", "--good", "keras==3.15.1", "--bad", "keras==3.15.2", "--with", "tensorflow=="]
    assert main(bad_pin) == 2
    assert "--with 'tensorflow==': not a requirement such as tensorflow-cpu==2.21.0" in capsys.readouterr().err


def test_a_fidelity_flip_alone_is_no_difference_the_curves_are() -> None:
    """Both ends trained fit's own batches — one on the arrays (its sentinel refused the fast path, or none ran), one
    on the proven fast path — so their curves are compared as they are: equal curves make no difference to bisect
    (a moved adapter module is the plugin's business), a moved curve does."""
    good, probe = doc([0.7, 0.5, 0.3]), doc([0.7, 0.5, 0.3])
    good["scenarios"][0]["runtime"] = {"fit_input": "dataset", "fit_batches": True}
    probe["scenarios"][0]["runtime"] = {"fit_input": "numpy", "fit_batches": True}
    probe["scenarios"][0]["fidelity"] = {
        "agrees": False,
        "epochs": 21,
        "largest_difference": 0.05,
        "at_epoch": 2,
        "reason": "differs",
    }
    assert bisect.differences(good, probe, bisect.DEFAULT_KINDS) == []
    moved = doc([0.7, 0.6, 0.5])
    moved["scenarios"][0]["runtime"] = probe["scenarios"][0]["runtime"]
    (change,) = bisect.differences(good, moved, bisect.DEFAULT_KINDS)
    assert change.kind == "drift"


def test_versions_come_from_file_names_where_the_index_lists_none(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import json

    page = {"files": [{"filename": "keras_nightly-3.16.0.dev2026070104-py3-none-any.whl"},
                      {"filename": "keras_nightly-3.16.0.dev2026070204.tar.gz"},
                      {"filename": "keras_nightly-3.16.0.dev2026070304-py3-none-any.whl", "yanked": True}]}  # fmt: skip
    monkeypatch.setattr(bisect.urllib.request, "urlopen", lambda *a, **k: io.BytesIO(json.dumps(page).encode()))
    assert bisect.published_versions("keras-nightly") == ["3.16.0.dev2026070104", "3.16.0.dev2026070204"]
    page["versions"] = ["3.16.0.dev2026070104", "3.16.0.dev2026070204", "3.16.0.dev2026070304"]  # PEP 700
    assert bisect.published_versions("keras-nightly") == ["3.16.0.dev2026070104", "3.16.0.dev2026070204"]


def test_bisect_says_when_uv_is_missing(tmp_path: Path) -> None:
    space = workspaces.Workspace(tmp_path, ["s.yaml"], ["s.yaml"], [], uv="no-such-uv-here")
    lines = bisect.bisect(space, build("3.15.1", "keras"), build(NIGHTLIES[-1]), versions=lambda name: NIGHTLIES)
    with pytest.raises(bisect.BisectInputError, match="makes its probes with uv, not found as 'no-such-uv-here'"):
        next(lines)


def test_probe_runs_take_scenario_ids_as_paths_and_no_factories_unless_asked(tmp_path: Path) -> None:
    """The ids come from a results file (data): after `--`, never read as pytest options; and a probe runs the
    scenario in a throwaway environment with model factories refused unless the operator turned them on."""
    space = workspaces.Workspace(tmp_path, ["s.yaml::logistic"], ["s.yaml"], [])
    command = space.run_command(build("3.15.1", "keras"))
    assert command[-2:] == ["--", "s.yaml::logistic"] and "--convergence-no-factories" in command
    assert "--convergence-no-factories" in space.reproduce(build("3.15.1", "keras"))
    trusted = workspaces.Workspace(tmp_path, ["s.yaml::logistic"], ["s.yaml"], [], factories=True)
    assert "--convergence-no-factories" not in trusted.run_command(build("3.15.1", "keras"))


@pytest.mark.parametrize("target", ["--config-file=evil.ini", "-pevil", "-p::x"])
def test_a_scenario_id_that_pytest_would_read_as_an_option_is_refused(target: str, tmp_path: Path) -> None:
    """pytest loads `-p NAME` even after `--`: such an id is refused before anything is installed."""
    with pytest.raises(bisect.BisectInputError, match=f"{target!r} cannot be a scenario: .* starts with '-'"):
        workspaces.Workspace(tmp_path, [target], [target.partition("::")[0]], [])


def test_bisect_from_results_files_refuses_an_id_that_is_an_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "--config-file=evil.ini").write_text("[pytest]\naddopts = -p evil\n")  # the file the id names exists
    files = []
    for name, keras in (("good.json", "3.15.1"), ("bad.json", "3.16.0.dev2026102704")):
        made = results_of("2.21.0", keras, [0.7, 0.5, 0.3] if name == "good.json" else [0.7, 0.52, 0.3])
        made["scenarios"][0]["id"] = "--config-file=evil.ini"
        results.write(tmp_path / name, made)
        files.append(str(tmp_path / name))
    monkeypatch.setattr(bisect, "published_versions", lambda *a, **k: pytest.fail("nothing may be listed"))
    assert main(["bisect", "--results", *files, "--workdir", str(tmp_path / "work")]) == 2
    assert "'--config-file=evil.ini' cannot be a scenario" in capsys.readouterr().err


def test_pytest_obeys_the_double_dash_except_for_p_which_is_why_such_ids_are_refused(tmp_path: Path) -> None:
    """The oracle for the two rules above, on the real pytest: after `--` an id `--config-file=…` is a path, but
    `-pNAME` still loads a plugin."""
    import os
    import subprocess
    import sys

    (tmp_path / "evilplugin.py").write_text("import pathlib\npathlib.Path('marker').write_text('ran')\n")
    (tmp_path / "evil.ini").write_text("[pytest]\naddopts = -p evilplugin\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("PYTEST_ADDOPTS", None)

    def marked(*args: str) -> bool:
        (tmp_path / "marker").unlink(missing_ok=True)
        pytest_run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
        subprocess.run(pytest_run, cwd=tmp_path, env=env, capture_output=True, timeout=120)
        return (tmp_path / "marker").exists()

    assert marked("--config-file=evil.ini") and not marked("--", "--config-file=evil.ini")
    assert marked("--", "-pevilplugin")


def run_rounds(at_once: int, verdict: Callable[[int], bisect.Verdict]) -> tuple[Search, list[list[int]]]:
    """The batched search alone (pure): rounds of up to `at_once` builds, by day of July, judged by `verdict(day)`."""
    state = Search(builds_between(build("3.15.1", "keras"), build(NIGHTLIES[-1]), NIGHTLIES))
    rounds = []
    while builds := state.next_round(at_once):
        rounds.append([int(str(b.version.dev)[6:8]) for b in builds])
        state.record_round({b: verdict(int(str(b.version.dev)[6:8])) for b in builds})
    return state, rounds


def bad_from(first_bad: int) -> Callable[[int], bisect.Verdict]:
    return lambda day: "bad" if day >= first_bad else "good"


@pytest.mark.parametrize("at_once", [1, 2, 3, 5])
def test_rounds_of_k_probes_find_every_first_bad_build_in_about_log_k_plus_1_rounds(at_once: int) -> None:
    for first_bad in range(1, 31):
        state, rounds = run_rounds(at_once, bad_from(first_bad))
        assert state.first_bad.version.dev == int(f"202607{first_bad:02d}04"), first_bad
        assert (state.last_good is None) == (first_bad == 1) and not state.unresolved
        assert state.rounds == len(rounds) <= math.ceil(math.log(30, at_once + 1) - 1e-9), (first_bad, rounds)
        probed = [day for r in rounds for day in r]
        assert all(len(r) <= at_once and r == sorted(r) for r in rounds) and len(set(probed)) == len(probed)
        assert first_bad == 1 or first_bad - 1 in probed  # the last good build was measured, not inferred
        # the bad end (30) is probed before the rounds: inside them only builds before it
        assert first_bad == 30 or first_bad in probed


def test_one_probe_a_round_is_the_binary_search() -> None:
    _, rounds = run_rounds(1, bad_from(15))
    assert [r for (r,) in rounds] == [15, 7, 11, 13, 14]  # the middle of (good, bad) each time, the lower on a tie


def test_the_first_round_splits_the_builds_into_k_plus_1_parts() -> None:
    _, rounds = run_rounds(2, lambda day: "good")
    assert rounds[0] == [10, 20]  # 30 builds, the bad end at 30: thirds
    _, rounds = run_rounds(4, lambda day: "good")
    assert rounds[0] == [6, 12, 18, 24]


def test_a_round_that_sees_the_change_come_and_go_goes_on_in_its_first_good_to_bad_step() -> None:
    candidates = builds_between(build("3.15.1", "keras"), build(NIGHTLIES[-1]), NIGHTLIES)
    state = Search(candidates)
    first, middle, last = state.next_round(3)
    state.record_round({first: "bad", middle: "good", last: "bad"})  # bad, good again, bad
    assert state.last_good is None and state.first_bad == first  # between the good end and the first: one step
    state = Search(candidates)
    first, middle, last = state.next_round(3)
    state.record_round({first: "good", middle: "bad", last: "good"})  # good, bad, good again, then the bad end
    assert (state.last_good, state.first_bad) == (first, middle)


@pytest.mark.parametrize("at_once", [2, 3, 4])
def test_a_change_that_comes_and_goes_ends_on_one_step_the_probes_saw_with_rounds(at_once: int) -> None:
    bad_days = set(range(5, 11)) | set(range(20, 31))
    probe, probed = fake(lambda day: day in bad_days)
    candidates = builds_between(build("3.15.1", "keras"), build(NIGHTLIES[-1]), NIGHTLIES)
    steps = bisect.search(candidates, probe, at_once)  # each round's probes in threads, as bisect runs them
    state = None
    while state is None:
        try:
            next(steps)
        except StopIteration as done:
            state = done.value
    assert state.last_good is not None
    good_day, bad_day = int(str(state.last_good.version.dev)[6:8]), int(str(state.first_bad.version.dev)[6:8])
    assert bad_day == good_day + 1 and bad_day in bad_days and good_day not in bad_days
    assert good_day in probed and bad_day in probed and len(set(probed)) == len(probed)


@pytest.mark.parametrize("at_once", [2, 3])
def test_skipped_builds_are_stepped_around_in_rounds_too(at_once: int) -> None:
    skip = {14, 15, 16}
    state, rounds = run_rounds(at_once, lambda day: "skip" if day in skip else "bad" if day >= 16 else "good")
    assert state.last_good is not None and state.last_good.version.dev == 2026071304
    assert state.first_bad.version.dev == 2026071704
    assert [b.version.dev for b in state.unresolved] == [2026071404, 2026071504, 2026071604]
    assert skip <= {day for r in rounds for day in r}


def ray_space(tmp_path: Path, **kwargs: Any) -> workspaces.RayWorkspace:
    return workspaces.RayWorkspace(
        tmp_path,
        ["s.yaml::logistic"],
        ["s.yaml"],
        ["tensorflow-cpu==2.21.0"],
        ray="auto",
        gcs="10.0.0.7:6379",
        **kwargs,
    )


def test_a_ray_probe_is_a_pytest_controller_here_with_the_build_as_its_runtime_environment(tmp_path: Path) -> None:
    space = ray_space(tmp_path)
    nightly = build("3.16.0.dev2026070104")
    out = str(tmp_path / "results" / "keras-nightly-3.16.0.dev2026070104.json")
    assert space.run_command(nightly) == [
        sys.executable, "-m", "pytest", "--convergence-ray", "10.0.0.7:6379",
        "--convergence-ray-pip", "keras-nightly==3.16.0.dev2026070104",
        "--convergence-ray-pip", "tensorflow-cpu==2.21.0",
        "-p", "no:cacheprovider", "-q", "--scenarios", "s.yaml",
        "--convergence-noise-floor", "--convergence-json", out, "--convergence-no-factories",
        "--", "s.yaml::logistic",
    ]  # fmt: skip
    assert space.run_variables() == {"PYTHONSAFEPATH": "1"}  # the installed plugin, which the workers import too
    # to reproduce: the cluster as given (GCS addresses of a Ray started for the bisect are gone), one command
    (line,) = space.reproduce(nightly).splitlines()
    assert line.startswith(f"PYTHONSAFEPATH=1 {sys.executable} -m pytest ")
    assert "--convergence-ray auto --convergence-ray-pip keras-nightly==3.16.0.dev2026070104" in line
    assert "10.0.0.7" not in line and "uv" not in line.split()
    trusted = ray_space(tmp_path, factories=True, extra_pytest=["--convergence-seeds", "8"])
    command = trusted.run_command(nightly)
    assert "--convergence-no-factories" not in command and command[-4:] == [
        "--convergence-seeds",
        "8",
        "--",
        "s.yaml::logistic",
    ]


def test_a_ray_environment_holding_a_sibling_of_the_build_cannot_probe_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ray runtime environment keeps the nodes' packages and uv cannot take one out: keras beside keras-nightly
    (inherited, or pulled in by tensorflow's requirement) skips the probe; so does a build that is not what imports."""
    space = ray_space(tmp_path)
    nightly = build("3.16.0.dev2026070104")
    clean = [("keras-nightly", "3.16.0.dev2026070104"), ("tensorflow-cpu", "2.21.0")]
    assert space.mixture(nightly, clean) == ""
    mixed = space.mixture(nightly, [*clean, ("keras", "3.15.1")])
    assert mixed.startswith("its Ray runtime environment holds keras 3.15.1 beside keras-nightly 3.16.0.dev2026070104")
    assert space.mixture(nightly, [("keras-nightly", "3.16.0.dev2026063004"), *clean]) == (
        "its Ray runtime environment imports keras-nightly 3.16.0.dev2026063004, not 3.16.0.dev2026070104"
    )  # the first the Python finds is what imports
    assert "tf-nightly 2.23.0.dev20261026" in space.mixture(nightly, [*clean, ("tf-nightly", "2.23.0.dev20261026")])
    # with --ray local the workers run this Python: a sibling here is refused before anything is listed
    monkeypatch.setattr(workspaces, "visible_distributions", lambda: [("keras", "3.15.1")])
    local = workspaces.RayWorkspace(tmp_path, ["s.yaml"], ["s.yaml"], [], ray="local")
    with pytest.raises(
        bisect.BisectInputError, match=r"--ray local: this Python .* holds keras 3\.15\.1, which a probe"
    ):
        local.preflight(build("3.15.1", "keras"), nightly)
    local.preflight(build("3.14.0", "keras"), build("3.15.1", "keras"))  # a release over a release: uv replaces it


class FakeRay(workspaces.RayWorkspace):
    """RayWorkspace without Ray: install does nothing, run writes the results a probe of that day would."""

    bad_from = 15

    @contextlib.contextmanager
    def session(self) -> Iterator[object]:
        self.gcs = "10.0.0.7:6379"
        yield self

    def install(self, b: Build) -> float:
        return 0.5

    def run(self, b: Build) -> tuple[Document, float]:
        day = int(str(b.version.dev)[6:8]) if b.version.dev else 0
        made = results_of("2.21.0", str(b.version), [0.7, 0.52, 0.3] if day >= self.bad_from else [0.7, 0.5, 0.3])
        made["environment"]["numpy"] = "2.4.6"
        self.results_path(b).parent.mkdir(parents=True, exist_ok=True)
        results.write(self.results_path(b), made)
        return made, 1.0


def test_bisect_on_ray_says_where_and_how_many_at_once_and_reads_environments_from_the_results(
    tmp_path: Path,
) -> None:
    space = FakeRay(tmp_path, ["s.yaml::logistic"], ["s.yaml"], ["tensorflow-cpu==2.21.0"], ray="auto")
    lines = bisect.bisect(
        space, build("3.15.1", "keras"), build(NIGHTLIES[-1]), versions=lambda name: NIGHTLIES, at_once=3
    )
    out = []
    while True:
        try:
            out.append(next(lines))
        except StopIteration as done:
            assert done.value == 0, out
            break
    text = "\n".join(out)
    assert "3 probes at once: both ends, then about 3 rounds of up to 3" in out[1]
    assert out[2].startswith("  probes on Ray: the cluster at 10.0.0.7:6379 (auto) installs each build in a uv ")
    assert out[2].endswith(f"results in {tmp_path / 'results'}")
    assert "first build that differs: keras-nightly 3.16.0.dev2026071504" in text
    assert "last build like the good end: keras-nightly 3.16.0.dev2026071404" in text
    assert "  9 probes: both ends, then 3 rounds of up to 3 at once" in out
    # what the workers trained, from the results' environment (no `uv pip freeze` of a cluster's environment)
    assert "between the two environments: keras 3.16.0.dev2026071404 → 3.16.0.dev2026071504" in text
    reproduce = out[out.index("reproduce the first bad build:") + 1]
    assert "--convergence-ray auto --convergence-ray-pip keras-nightly==3.16.0.dev2026071504" in reproduce


def test_bisect_on_ray_refuses_options_of_local_probes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("scenarios: []\n")
    ends = ["s.yaml", "--good", "keras==3.15.1", "--bad", "keras==3.15.2"]
    assert main(["bisect", *ends, "--ray", "local", "--python", sys.executable]) == 2
    assert "bisect --ray: the probes train in the Ray workers' Python" in capsys.readouterr().err
    assert main(["bisect", *ends, "--ray", "auto", "--index-url", "https://example.org/simple/"]) == 2
    assert "not with --python or --index-url" in capsys.readouterr().err
    assert main(["bisect", *ends, "--probes-at-once", "0"]) == 2
    assert "--probes-at-once 0: give 1 or more" in capsys.readouterr().err


@pytest.mark.keras
def test_a_probe_runs_on_a_real_local_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One real probe through `--ray local`: Ray makes the build's uv runtime environment (the installed Keras and
    TensorFlow pinned exactly, so uv finds them there and installs nothing), the environment check finds no sibling,
    and the probe's controller (a pytest here) sends the scenario to the cluster, whose worker trains it."""
    from importlib import metadata

    from texts import DIVERGES, HEADER

    pytest.importorskip("ray")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(HEADER + DIVERGES)
    installed = build(metadata.version("keras"), "keras")
    space = workspaces.RayWorkspace(
        tmp_path / "work",
        ["s.yaml"],
        ["s.yaml"],
        [f"tensorflow-cpu=={metadata.version('tensorflow-cpu')}"],
        ray="local",
    )
    space.preflight(installed, installed)
    with space.session():  # a Ray started here, in a folder of its own that goes with it (its runtime environments)
        assert space.gcs and space.where().startswith(f"probes on Ray: the cluster at {space.gcs} (started here)")
        install_s = space.install(installed)
        doc, run_s = space.run(installed)
    (record,) = doc["scenarios"]
    assert record["outcome"] == "passed" and record["runtime"]["ray_node"]  # trained by a Ray worker
    assert doc["environment"]["keras"] == str(installed.version)
    assert f"keras=={installed.version}" in space.freeze(installed)
    print(f"install (runtime environment) {install_s:.1f} s, run {run_s:.1f} s")


def test_a_stopped_workspace_starts_no_further_step(tmp_path: Path) -> None:
    """After `stop()` (Ctrl-C, an error: the probes still running are killed) a probe thread between two steps
    starts no new process: its next step fails at once instead of running for up to the probe timeout."""
    space = workspaces.Workspace(tmp_path, ["s.yaml"], ["s.yaml"], [])
    space.stop()
    with pytest.raises(ProbeFailed, match="run: bisect stopped"):
        space._call([sys.executable, "-c", "raise SystemExit(3)"], "run", 0.0)
