"""gate: the sequential seed decision and the side-by-side timing on hand-made samples (no test here depends on the
machine's speed), what OLD and NEW may name, the seed window the gate asks pytest for, and one real gate between
this environment and itself."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_convergence import compare, gate, stats
from pytest_convergence.cli import main
from pytest_convergence.gate import Judged, Side, Timing, decide, next_seed_count, parse_side, timing_verdict
from pytest_convergence.record import ScenarioRecord, SeedEntry

SID = "s.yaml::linear"
RULES = compare.Rules()


def seed(n: int, error: float, weights: str | None = "w", final: float | None = None) -> SeedEntry:
    """One seed: a flat loss curve, a summary with the prediction error (and final loss), its initial-weights hash."""
    loss = final if final is not None else 0.01
    return SeedEntry(
        seed=n,
        losses=[1.0, 0.1, loss],
        rounding_floor=0.0,
        summary={"final_loss": loss, "prediction_error": error, "passed": 1.0},
        initial_weights=None if weights is None else f"{weights}{n}",
    )


def column(seeds: Sequence[SeedEntry], outcome: str = "passed", label: str = "TF") -> compare.Column:
    record = ScenarioRecord(id=SID, outcome=outcome, seeds=list(seeds), runtime={"fit_batches": True})  # type: ignore[typeddict-item]
    return compare.Column(label, Path(f"{label}.json"), {}, {SID: record}, {})


def judge(old: Sequence[SeedEntry], new: Sequence[SeedEntry], own: int = 1, max_seeds: int = 16, **kw: Any) -> Judged:
    return decide(SID, column(old[:own], label="OLD"), column(new[:own], label="NEW", **kw), old, new, RULES,
                  max_seeds, own)  # fmt: skip


def test_identical_seeds_are_the_same_at_once() -> None:
    judged = judge([seed(0, 0.02)], [seed(0, 0.02)])
    assert (judged.state, judged.changes, judged.paired) == ("same", [], True)


def test_one_seed_that_moved_a_lot_is_unknown_until_more_seeds_are_trained() -> None:
    judged = judge([seed(0, 0.02)], [seed(0, 0.05)])
    assert judged.state == "unknown"
    assert "prediction error" in judged.undecided and "not significant" in judged.undecided
    assert next_seed_count(1, 16) == 8 and next_seed_count(8, 16) == 16 and next_seed_count(16, 16) is None


def test_every_paired_seed_moving_the_same_way_is_a_shift_the_unpaired_test_misses_at_8_seeds() -> None:
    # the case: an optimizer default moved the f(25) error of all 8 seeds the same way (×2.2), seeds
    # scattered over a wide range (Adam from different starting points)
    base = [0.02, 0.5, 3.0, 0.09, 8.0, 0.3, 1.2, 22.0]
    old = [seed(i, e) for i, e in enumerate(base)]
    new = [seed(i, e * 2.2) for i, e in enumerate(base)]
    paired = judge(old, new, own=8)
    assert paired.paired and paired.state == "different"
    (shift,) = [c for c in paired.changes if c.kind == "shift"]
    assert shift.worse and "Wilcoxon signed-rank" in shift.message
    unpaired = judge(old, [seed(i, e * 2.2, weights="other") for i, e in enumerate(base)], own=8)
    assert unpaired.paired is False and "initial weights differ on 8 of 8" in unpaired.pairs_note
    assert unpaired.state == "unknown"  # Mann–Whitney at 8 vs 8 cannot tell these apart


def test_a_move_below_its_practical_threshold_is_the_same_without_more_seeds() -> None:
    judged = judge([seed(0, 0.020)], [seed(0, 0.025)])  # ×1.25 < ×2 on the log scale
    assert judged.state == "same"


def test_an_outcome_change_is_decided_on_the_first_look() -> None:
    judged = judge([seed(0, 0.02)], [seed(0, 0.02)], outcome="failed")
    assert judged.state == "different"
    assert [(c.kind, c.worse) for c in judged.changes] == [("outcome", True)]


def test_a_declared_change_is_decided_without_seed_statistics() -> None:
    old = column([seed(0, 0.02)], label="OLD")
    new = column([seed(0, 5.0)], outcome="xfailed", label="NEW")
    record = new.scenarios[SID]
    record["declared"] = {"kind": "xfail", "where": "keras >=3", "reason": "predict rejects a list"}
    record["error"] = "ValueError: Unrecognized data type"
    judged = decide(SID, old, new, [seed(0, 0.02)], [seed(0, 5.0)], RULES, 16, 1)
    assert judged.state == "different" and [c.kind for c in judged.changes] == ["declared"]
    assert judged.shifts == [] and not judged.undecided


def test_each_look_tests_at_alpha_over_the_number_of_looks() -> None:
    # 1 seed, then 8, then 16: three looks; a 16-seed scenario has one
    assert gate.looks(16, 1) == 3 and gate.looks(16, 8) == 2 and gate.looks(16, 16) == 1
    # at look 2 (8 pairs) one summary moved on every seed: p = 2/2^8 = 0.0078 < 0.05/3
    old = [seed(i, 0.01 * (i + 1)) for i in range(8)]
    new = [seed(i, 0.03 * (i + 1)) for i in range(8)]
    assert judge(old, new, own=1).state == "different"
    # one seed moved the other way, by the most: signed-rank p = 0.2: more seeds
    new[3] = seed(3, 0.01 * 4 * 0.2)
    assert judge(old, new, own=1).state == "unknown"


def test_seeds_without_recorded_initial_weights_are_compared_unpaired() -> None:
    judged = judge([seed(0, 0.02, weights=None)], [seed(0, 0.02, weights=None)])
    assert judged.paired is False and judged.pairs_note == "the initial weights were not recorded"


def test_the_paired_and_unpaired_statistics_on_known_samples() -> None:
    assert stats.wilcoxon([0.1] * 8) == pytest.approx(2 / 2**8)
    assert stats.wilcoxon([0.0, 0.0]) == 1.0
    assert stats.smallest_paired_p(6) == pytest.approx(2 / 64)
    ratio, low, high = stats.ratio_interval([1.0, 1.0], [2.0, 2.0], 0.95)
    assert (ratio, low, high) == (pytest.approx(2.0), pytest.approx(2.0), pytest.approx(2.0))
    _, low, high = stats.ratio_interval([1.0], [2.0], 0.95)
    assert (low, high) == (0.0, math.inf)


def rounds(old: Sequence[float], new: Sequence[float]) -> Timing:
    return timing_verdict(Timing(old=list(old), new=list(new)), gate.DEFAULT_SLOWDOWN)


def test_a_steady_slowdown_is_slower_an_unchanged_version_the_same_and_a_noisy_one_unknown() -> None:
    assert rounds([1.0, 1.02, 0.98, 1.0], [1.5, 1.49, 1.53, 1.5]).verdict == "slower"
    assert rounds([1.0, 1.02, 0.98, 1.0], [1.01, 0.99, 1.0, 1.0]).verdict == "same"
    assert rounds([1.0, 1.0, 1.0, 1.0], [0.5, 0.52, 0.49, 0.5]).verdict == "faster"
    noisy = rounds([1.0, 1.0, 1.0, 1.0], [1.1, 1.6, 1.3, 1.45])
    assert noisy.verdict == "unknown" and noisy.low < gate.DEFAULT_SLOWDOWN < noisy.high
    assert rounds([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]).verdict == "unknown"  # fewer than MIN_ROUNDS


class FakeWorker:
    """A timing worker whose epochs take `seconds` (per scenario), recording the order it was asked in."""

    def __init__(self, role: str, seconds: dict[str, float], log: list[str]) -> None:
        self.side = Side(role, role, "python")
        self.seconds, self.log = seconds, log

    def time(self, job: dict[str, Any], timeout_s: float = 600.0) -> list[float] | str:
        self.log.append(f"{self.side.role}:{job['name']}")
        value = self.seconds.get(job["name"])
        return "KeyError: no such scenario" if value is None else [value * 5] + [value] * 7


def test_both_sides_are_timed_alternately_until_each_scenario_is_decided() -> None:
    log: list[str] = []
    old = FakeWorker("OLD", {"a": 0.010, "b": 0.010, "c": 0.010}, log)
    new = FakeWorker("NEW", {"a": 0.015, "b": 0.010}, log)
    jobs = {sid: {"name": sid} for sid in ("a", "b", "c")}
    found = gate.time_side_by_side((old, new), jobs, gate.DEFAULT_SLOWDOWN, deadline=math.inf)  # type: ignore[arg-type]
    assert found["a"].verdict == "slower" and found["a"].rounds == gate.MIN_ROUNDS
    assert found["b"].verdict == "same"
    assert found["c"].verdict == "untimed" and "no such scenario" in found["c"].error
    a_calls = [entry for entry in log if entry.endswith(":a")]
    assert a_calls == ["OLD:a", "NEW:a", "NEW:a", "OLD:a"] * (gate.MIN_ROUNDS // 2)  # OLD NEW, NEW OLD, …


@pytest.mark.parametrize(
    ("given", "kind"),
    [
        ("tf215", "tox"),
        ("tensorflow-cpu==2.15.1", "requirements"),
        ("tensorflow-cpu~=2.21.0 keras==3.15.1", "requirements"),
    ],
)
def test_old_and_new_name_environments_in_several_ways(given: str, kind: str) -> None:
    assert parse_side("OLD", given).kind == kind


def test_an_interpreter_or_a_virtual_environment_is_taken_as_it_is(tmp_path: Path) -> None:
    assert parse_side("NEW", sys.executable).kind == "python"
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text("")
    assert parse_side("NEW", str(tmp_path)).python == tmp_path / "bin" / "python"


@pytest.mark.parametrize(
    ("given", "message"),
    [("tf 215", "not a Python interpreter"), ("keras==3.1 numpy", "names no version"), ("a/b", "not a")],
)
def test_what_names_no_environment_is_refused_with_examples(given: str, message: str) -> None:
    with pytest.raises(gate.GateInputError, match=message):
        parse_side("OLD", given)


def test_paths_select_scenarios_of_results_files_that_hold_more() -> None:
    sid = "scenarios/linear_sgd.yaml::a"
    assert gate.selected(sid, ["scenarios"]) and gate.selected(sid, ["./scenarios/"]) and gate.selected(sid, ["."])
    assert gate.selected(sid, ["scenarios/linear_sgd.yaml"]) and gate.selected(sid, ["scenarios/linear_sgd.yaml::a"])
    assert not gate.selected(sid, ["scenarios/linear_sgd.yaml::b", "scenarios/other.yaml", "scen"])


def test_both_sides_run_this_plugin_with_floors_isolation_and_the_seed_window(tmp_path: Path) -> None:
    runner = gate.Runner(tmp_path, ["scenarios/a.yaml::x", "scenarios/a.yaml::y", "more"])
    side = Side("OLD", "tf215", "tox", python=Path(".tox/tf215/bin/python"))
    first = runner.command(side, tmp_path / "old-1.json", [], None, floors=True)
    assert first[:7] == [
        ".tox/tf215/bin/python",
        "-m",
        "pytest",
        "-p",
        "no:convergence",
        "-p",
        "pytest_convergence.plugin",
    ]
    assert "--convergence-noise-floor" in first and first[first.index("--convergence-isolate") + 1] == "50"
    assert [first[i + 1] for i, a in enumerate(first) if a == "--scenarios"] == ["scenarios/a.yaml", "more"]
    assert first[-3:] == ["scenarios/a.yaml::x", "scenarios/a.yaml::y", "more"]
    added = runner.command(side, tmp_path / "old-2.json", ["scenarios/a.yaml::x"], (1, 8), floors=False)
    assert "--convergence-noise-floor" not in added and added[added.index("--convergence-seeds") + 1] == "1:8"
    assert added[-1] == "scenarios/a.yaml::x"
    # only that file: the plugin would collect (and train) every --scenarios path that no argument names
    assert [added[i + 1] for i, a in enumerate(added) if a == "--scenarios"] == ["scenarios/a.yaml"]
    assert runner.environ()["PYTHONPATH"] == str(tmp_path / "plugin")
    assert (tmp_path / "plugin" / "pytest_convergence" / "gate.py").exists()  # a link to this code


def test_on_a_ray_cluster_each_side_is_a_controller_here_whose_tasks_train_in_its_runtime_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """gate --ray: each side's pytest runs in this Python (it imports no TensorFlow) and sends its scenarios to the
    cluster with that side's requirements as the runtime environment; no isolation child, no -n. Only requirement
    specs can be installed on the nodes: a tox env or an interpreter of this machine is refused before anything."""
    runner = gate.Runner(tmp_path, ["scenarios/a.yaml"], ray="10.0.0.1:6379")
    side = parse_side("NEW", "tensorflow-cpu==2.21.0 keras==3.15.1")
    added = runner.command(side, tmp_path / "new-2.json", ["scenarios/a.yaml::x"], (8, 16), floors=False)
    assert added[:3] == [sys.executable, "-m", "pytest"] and "no:convergence" not in added
    assert added[added.index("--convergence-ray") + 1] == "10.0.0.1:6379"
    assert [added[i + 1] for i, a in enumerate(added) if a == "--convergence-ray-pip"] == [
        "tensorflow-cpu==2.21.0",
        "keras==3.15.1",
    ]
    assert "--convergence-isolate" not in added and "-n" not in added
    assert added[added.index("--convergence-seeds") + 1] == "8:16" and added[-1] == "scenarios/a.yaml::x"
    assert "PYTHONPATH" not in runner.environ() or runner.environ()["PYTHONPATH"] != str(tmp_path / "plugin")
    code = main(["gate", "tf215", "tensorflow-cpu==2.21.0", "scenarios", "--ray", "local"])
    assert code == 2
    assert "OLD 'tf215': on a Ray cluster OLD and NEW are requirement specs" in capsys.readouterr().err


def test_the_command_refuses_a_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gate", sys.executable, sys.executable, "no/such/dir"]) == 2
    assert "no/such/dir: no such file or directory" in capsys.readouterr().err


SEEDED = """scenarios:
  - name: a
    data: {x: [1, 2], y: [1, 2]}
    model: [{Dense: {units: 1}}]
    optimizer: sgd
    loss: mse
    epochs: 1
    seeds: [3, 0]
    expect: {converges: {loss_below: 1}}
"""


def test_the_seed_window_trains_the_seeds_an_earlier_run_did_not(pytester: pytest.Pytester) -> None:
    from pytest_convergence.scenario import load_file

    pytester.makefile(".yaml", s=SEEDED)
    (scenario,) = load_file(pytester.path / "s.yaml")
    assert scenario.with_seed_window(8).seeds == (3, 0, 1, 2, 4, 5, 6, 7)
    assert scenario.with_seed_window(8, 2).seeds == (1, 2, 4, 5, 6, 7)
    assert scenario.with_seed_window(16, 8).seeds == (8, 9, 10, 11, 12, 13, 14, 15)


@pytest.mark.parametrize("value", ["8:2", "0:0", "x:8", "-1:4"])
def test_a_seed_window_that_cannot_be_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    result = pytester.runpytest_subprocess("--scenarios", ".", f"--convergence-seeds={value}")
    result.stderr.fnmatch_lines(["*--convergence-seeds: expected a number of seeds*START:N*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


TINY = """scenarios:
  - name: tiny-sgd-converges
    data: {x: {arange: [1, 11]}, y: "0.5 * x"}
    model: [{Dense: {units: 1}}]
    optimizer: sgd
    loss: mean_squared_error
    epochs: 40
    expect: {converges: {loss_below: 1.0e-2}}
"""


@pytest.mark.keras
def test_a_real_gate_of_this_environment_against_itself_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(TINY, encoding="utf-8")
    code = main(["gate", sys.executable, sys.executable, "tiny.yaml", "--json", "gate.json", "--workdir", "work"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Decision: PASSES — nothing that counts changed (exit 0)" in out.splitlines()
    found = json.loads(Path("gate.json").read_text(encoding="utf-8"))
    (scenario,) = found["scenarios"].values()
    assert scenario["state"] == "same" and scenario["paired"] is True  # one version: the same initial weights
    assert scenario["timing"]["verdict"] in ("same", "unknown") and scenario["timing"]["rounds"] >= gate.MIN_ROUNDS


def test_scenario_ids_reach_pytest_as_paths_never_as_options(tmp_path: Path) -> None:
    """Ids read from --old-results/--new-results are data: after `--`, and refused where pytest would still read
    them as an option (`-p NAME` loads a plugin even after `--`)."""
    runner = gate.Runner(tmp_path, ["scenarios"], factories=False)
    side = Side("OLD", "tf215", "tox", python=Path(".tox/tf215/bin/python"))
    added = runner.command(side, tmp_path / "old-2.json", ["scenarios/a.yaml::x"], (1, 8), floors=False)
    assert added[-2:] == ["--", "scenarios/a.yaml::x"] and "--convergence-no-factories" in added
    for target in ("-pevil", "--config-file=evil.ini::x"):
        with pytest.raises(gate.GateInputError, match=f"{target!r} cannot be a scenario: .* starts with '-'"):
            runner.command(side, tmp_path / "old-2.json", [target], (1, 8), floors=False)
