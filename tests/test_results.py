"""results: the JSON record's encoding and its atomic write."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pytest

from pytest_convergence import results
from pytest_convergence.expect import judge
from pytest_convergence.record import SeedRun
from pytest_convergence.spec import Expect


def make_doc() -> dict:
    run = SeedRun(
        seed=3,
        losses=[1.0, math.inf, math.nan],
        epoch_seconds=[0.1, 0.1, 0.1],
        epochs_planned=5,
        stop_reason="non-finite loss",
        predictions=[[math.nan]],
    )
    verdict = judge(Expect.model_validate({"converges": {"loss_below": 0.1}}), [run])
    record = results.scenario_record(
        "s.yaml::NaN",
        "s.yaml",
        4,
        "NaN",
        [run],
        verdict,
        {"tensorflow": "2.99.0", "keras": "3.99", "keras_package": "keras"},
    )
    return results.document([record], [], dt.datetime.now(dt.timezone.utc), 1)


def test_round_trip_keeps_non_finite_values_and_is_strict_json(tmp_path: Path) -> None:
    path = tmp_path / "out" / "r.json"
    results.write(path, make_doc())
    raw = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert raw["scenarios"][0]["seeds"][0]["losses"] == [1.0, "Infinity", "NaN"]
    back = results.read(path)
    seed = back["scenarios"][0]["seeds"][0]
    assert seed["losses"][0] == 1.0 and math.isinf(seed["losses"][1]) and math.isnan(seed["losses"][2])
    assert seed["first_nonfinite_epoch"] == 2 and seed["epochs_run"] == 3 and seed["outcome"] == "failed"
    assert back["scenarios"][0]["name"] == "NaN"  # strings elsewhere are left alone
    assert back["environment"]["tensorflow"] == "2.99.0"
    assert back["scenarios"][0]["seeds"][0]["checks"][0]["expectation"] == "converges"


def test_write_replaces_atomically_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("old")
    results.write(path, make_doc())
    results.write(path, make_doc())
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    assert results.read(path)["schema"] == results.SCHEMA


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        results.write(path, {"not serialisable": object()})
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_read_refuses_other_json(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not a pytest-convergence results file"):
        results.read(path)


def test_a_fidelity_difference_that_is_infinite_round_trips(tmp_path: Path) -> None:
    """The auto sentinel's largest difference is inf when one path's loss went non-finite and the other's did not:
    the file must still read back and pass the reader's check."""
    doc = make_doc()
    doc["scenarios"][0]["fidelity"] = {
        "agrees": False, "epochs": 5, "largest_difference": math.inf, "at_epoch": 3, "reason": "…"
    }  # fmt: skip
    results.write(tmp_path / "r.json", doc)
    back = results.read(tmp_path / "r.json")
    results.check(back)
    assert back["scenarios"][0]["fidelity"]["largest_difference"] == math.inf
