"""compare + cli: the version grid on hand-made results files, every change kind and every exit code."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from pytest_convergence import results
from pytest_convergence.cli import expected_versions, main

CURVE = [28.5, 7.0, 2.0, 0.5, 0.1]


def scenario(
    name: str,
    outcome: str = "passed",
    losses: list[float] | None = None,
    epoch_ms: float = 1.0,
    error: str | None = None,
) -> dict[str, Any]:
    losses = CURVE if losses is None else losses
    return {
        "id": f"s.yaml::{name}",
        "file": "s.yaml",
        "line": 3,
        "name": name,
        "outcome": outcome,
        "error": error,
        "seeds": [{"seed": 0, "losses": losses, "epoch_seconds": [0.5] + [epoch_ms / 1000] * (len(losses) - 1)}],
    }


def write(tmp_path: Path, name: str, tf: str, keras: str, *scenarios: dict[str, Any], **extra: Any) -> str:
    env = {"tensorflow": tf, "keras": keras, "keras_package": extra.pop("package", "keras")}
    doc = results.document(list(scenarios), extra.pop("collection_errors", []), dt.datetime.now(dt.timezone.utc), 0)
    doc["environment"].update(env)
    path = tmp_path / f"{name}.json"
    results.write(path, doc)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["compare", *argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_identical_versions_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x"))
    b = write(tmp_path, "b", "2.15.0", "2.15.0", scenario("x"))
    code, out = run(capsys, a, b)
    assert code == 0
    assert "TF 2.15.0 · Keras 2.15.0 (baseline)" in out  # the oldest, whatever the order given
    assert "No changes against TF 2.15.0" in out and "no regressions in 1 scenario(s) × 2 version(s)" in out


def test_outcome_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path, "old", "2.15.1", "2.15.0", scenario("breaks"), scenario("heals", "failed"))
    new = write(tmp_path, "new", "2.21.0", "3.15.1", scenario("breaks", "failed"), scenario("heals"))
    code, out = run(capsys, old, new)
    assert code == 1
    assert "s.yaml::breaks  pass" in out and "FAIL ! outcome" in out and "pass ~ outcome" in out
    assert "[outcome, REGRESSION] s.yaml::breaks on TF 2.21.0 · Keras 3.15.1: passed → failed" in out
    assert "[outcome, better/neutral] s.yaml::heals on TF 2.21.0 · Keras 3.15.1: failed → passed" in out
    assert "1 regression(s)" in out


def test_api_error_appearing_is_a_regression_and_vanishing_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keras2 = write(
        tmp_path, "k2", "2.15.1", "2.15.0", scenario("list"), scenario("fixed", "error", error="TypeError: x")
    )
    keras3 = write(
        tmp_path,
        "k3",
        "2.21.0",
        "3.15.1",
        scenario("list", "xfailed", error="ValueError: Unrecognized data type: x=[25.0]"),
        scenario("fixed"),
    )
    code, out = run(capsys, keras2, keras3)
    assert code == 1
    assert (
        "[error, REGRESSION] s.yaml::list on TF 2.21.0 · Keras 3.15.1: error appeared: ValueError: Unrecognized" in out
    )
    assert (
        "[error, better/neutral] s.yaml::fixed on TF 2.21.0 · Keras 3.15.1: error vanished (was: TypeError: x)" in out
    )
    assert run(capsys, keras2, keras3, "--fail-on", "outcome,drift,slowdown")[0] == 0


def test_loss_curve_drift_reports_the_worst_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("d"), scenario("same"))
    drifted = [28.5, 7.0, 2.0, 0.55, 0.1001]
    new = write(tmp_path, "b", "2.16.1", "3.3.3", scenario("d", losses=drifted), scenario("same"))
    code, out = run(capsys, base, new)
    assert code == 1
    assert (
        "[drift, REGRESSION] s.yaml::d on TF 2.16.1 · Keras 3.3.3: loss curve drifted: 9.09% at epoch 4 "
        "(seed 0: 0.5 → 0.55); tolerance 1.00%" in out
    )
    assert "s.yaml::same" in out and "same on" not in out
    assert run(capsys, base, new, "--loss-rtol", "0.1")[0] == 0


def test_nonfinite_against_finite_is_infinite_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("d", losses=[1.0, float("inf"), float("nan")]))
    same = write(tmp_path, "b", "2.16.1", "3.3.3", scenario("d", losses=[1.0, float("inf"), float("nan")]))
    other = write(tmp_path, "c", "2.17.1", "3.5.0", scenario("d", losses=[1.0, 2.0, 3.0]))
    code, out = run(capsys, base, same, other)
    assert code == 1
    assert "d on TF 2.16.1" not in out
    assert "[drift, REGRESSION] s.yaml::d on TF 2.17.1 · Keras 3.5.0: loss curve drifted: inf at epoch 2" in out


def test_slowdown_counts_by_default_and_can_be_report_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("t", epoch_ms=1.2))
    slow = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("t", epoch_ms=28.0))
    code, out = run(capsys, base, slow)
    assert code == 1
    assert (
        "[slowdown, REGRESSION] s.yaml::t on TF 2.21.0 · Keras 3.15.1: median epoch time ×23.3 (1.2 ms → 28 ms)" in out
    )
    code, out = run(capsys, base, slow, "--fail-on", "outcome,error,drift")
    assert code == 0 and "[slowdown, worse, not counted]" in out and "counted: outcome, error, drift" in out
    assert run(capsys, base, slow, "--slowdown", "30")[0] == 0


def test_collection_error_on_one_version_is_an_error_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x"), scenario("gone"))
    new = write(
        tmp_path,
        "b",
        "2.21.0",
        "3.15.1",
        collection_errors=[{"file": "s.yaml", "message": "s.yaml:4: model[0]: unknown Keras layer 'X'"}],
    )
    code, out = run(capsys, base, new)
    assert code == 1
    assert (
        "[error, REGRESSION] s.yaml::x on TF 2.21.0 · Keras 3.15.1: collection error in TF 2.21.0 · Keras 3.15.1: "
        "s.yaml:4: model[0]: unknown Keras layer 'X'" in out
    )


def test_missing_scenario_is_reported_not_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x"), scenario("only-old"))
    new = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("x"))
    code, out = run(capsys, base, new)
    assert code == 0 and "[missing, better/neutral] s.yaml::only-old on TF 2.21.0 · Keras 3.15.1" in out


def test_baseline_choice_and_legacy_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x"))
    b = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("x", "failed"))
    c = write(tmp_path, "c", "2.21.0", "2.21.0", scenario("x", "failed"), package="tf_keras")
    code, out = run(capsys, a, b, c, "--baseline", "3.15")
    assert "TF 2.21.0 · Keras 3.15.1 (baseline)" in out and "TF 2.21.0 · tf_keras 2.21.0" in out
    assert code == 0  # 2.15 passed where the baseline failed: an improvement; tf_keras did the same
    assert "[outcome, better/neutral] s.yaml::x on TF 2.15.1 · Keras 2.15.0: failed → passed" in out
    code, out = run(capsys, a, b, c, "--baseline", "2.21")
    assert code == 2 and "--baseline '2.21' matches 2 of the versions given" in out


def test_same_versions_twice_are_told_apart_by_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "run1", "2.15.1", "2.15.0", scenario("x"))
    b = write(tmp_path, "run2", "2.15.1", "2.15.0", scenario("x"))
    code, out = run(capsys, a, b)
    assert code == 0 and "[run1]" in out and "[run2]" in out


def test_markdown_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x", losses=[1.0, 0.5, float("inf")]))
    b = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("x", "failed", epoch_ms=30))
    md, page = tmp_path / "c.md", tmp_path / "c.html"
    code, _ = run(capsys, a, b, "--markdown", str(md), "--html", str(page))
    assert code == 1
    text = md.read_text()
    assert text.startswith("## Convergence across versions: 2 regression(s)")
    assert "| `s.yaml::x` | pass | **FAIL ! outcome+drift** |" in text
    html = page.read_text()
    assert html.count("<polyline") == 2 and "×" in html and "<b>drift</b>" in html
    assert "<script" not in html  # self-contained and static


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not a results file"),
        ('{"schema": "something-else"}', "not a pytest-convergence results file"),
        ('{"schema": "pytest-convergence/1"}', "malformed results file (missing 'scenarios')"),
    ],
)
def test_bad_input_exits_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    good = write(tmp_path, "good", "2.15.1", "2.15.0", scenario("x"))
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    code, out = run(capsys, good, str(bad))
    assert code == 2 and message in out and "Traceback" not in out


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compare", "x.json", "--fail-on", "outcome,speed"])
    assert exc.value.code == 2 and "unknown change kind(s) ['speed']" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tf215", ("2.15", "keras", 2)),
        ("tf221", ("2.21", "keras", 3)),
        ("tf216-legacy", ("2.16", "tf_keras", 2)),
        ("tf212", ("2.12", "keras", 2)),
    ],
)
def test_env_names_promise_versions(name: str, expected: tuple[str, str, int]) -> None:
    assert expected_versions(name, None, "keras") == expected


def test_no_slowdown_between_different_fit_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run on the dataset path and one on numpy arrays time different things, not different versions."""
    numpy_base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("t", epoch_ms=1.2))
    dataset_base = write(tmp_path, "b", "2.15.1", "2.15.0", {**scenario("t", epoch_ms=1.2), "runtime": DATASET})
    slow_dataset = write(tmp_path, "c", "2.21.0", "3.15.1", {**scenario("t", epoch_ms=28.0), "runtime": DATASET})
    code, out = run(capsys, numpy_base, slow_dataset)
    assert code == 0 and "[slowdown" not in out
    code, out = run(capsys, dataset_base, slow_dataset)
    assert code == 1 and "[slowdown, REGRESSION]" in out


DATASET = {"fit_input": "dataset"}
