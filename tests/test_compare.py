"""compare + comparison_text + cli on hand-made results files: every change kind, the noise floors, the seed statistics,
the calibrated timing, declared changes, where a change first appears, and every exit code."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from pytest_convergence import results
from pytest_convergence.cli import main

CURVE = [28.5, 7.0, 2.0, 0.5, 0.1]
CALIBRATION = [0.005] * 10  # a steady machine: the calibration workload took 5 ms every time
TIMED_EPOCHS = 30  # steady epochs timed per seed (compare needs 20 before it judges time)


def scenario(
    name: str,
    outcome: str = "passed",
    losses: list[float] | None = None,
    epoch_ms: float = 1.0,
    error: str | None = None,
    seeds: int = 1,
    floor: float | None = None,
    summary: Callable[[int], dict[str, float]] | None = None,
    calibration: list[float] | None = CALIBRATION,
    **extra: Any,
) -> dict[str, Any]:
    """A scenario's record. `losses` may be a function of the seed; `summary` gives each seed's summary."""
    curve = (lambda seed: CURVE) if losses is None else (losses if callable(losses) else (lambda seed: losses))
    record = {
        "id": f"s.yaml::{name}",
        "file": "s.yaml",
        "line": 3,
        "name": name,
        "outcome": outcome,
        "error": error,
        "seeds": [
            {
                "seed": seed,
                "losses": curve(seed),
                "rounding_floor": floor,
                "summary": summary(seed) if summary else {"final_loss": curve(seed)[-1]},
                "epoch_seconds": [0.5] + [epoch_ms / 1000] * TIMED_EPOCHS,
            }
            for seed in range(seeds)
        ],
        **extra,
    }
    if calibration is not None and "timing" not in record:
        record["timing"] = {"calibration_s": calibration}
    return record


def write(tmp_path: Path, name: str, tf: str, keras: str, *scenarios: dict[str, Any], **extra: Any) -> str:
    env = {"tensorflow": tf, "keras": keras, "keras_package": extra.pop("package", "keras"), **extra.pop("env", {})}
    doc = results.document(list(scenarios), extra.pop("collection_errors", []), dt.datetime.now(dt.timezone.utc), 0)
    doc["environment"].update(env)
    path = tmp_path / f"{name}.json"
    results.write(path, doc)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str, width: str = "0") -> tuple[int, str]:
    """compare's exit code and output; one line per change unless a `width` is given."""
    code = main(["compare", *argv, "--width", width])
    out = capsys.readouterr()
    return code, out.out + out.err


def lines_with(out: str, text: str) -> list[str]:
    return [line for line in out.splitlines() if text in line]


def test_identical_versions_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x"))
    b = write(tmp_path, "b", "2.15.0", "2.15.0", scenario("x"))
    code, out = run(capsys, a, b)
    assert code == 0
    assert re.search(r"A  TF 2\.15\.0 · Keras 2\.15\.0 +\(baseline\)", out)  # the oldest, whatever the order given
    assert "No changes against A (TF 2.15.0" in out and "PASSES — nothing that counts changed" in out


def test_outcome_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path, "old", "2.15.1", "2.15.0", scenario("breaks"), scenario("heals", "failed"))
    new = write(tmp_path, "new", "2.21.0", "3.15.1", scenario("breaks", "failed"), scenario("heals"))
    code, out = run(capsys, old, new)
    assert code == 1
    assert lines_with(out, "s.yaml::breaks ")[0].split()[1:] == ["pass", "FAIL", "!o"]
    assert lines_with(out, "s.yaml::heals ")[0].split()[1:] == ["FAIL", "pass", "^o"]
    assert "- [outcome, regression] s.yaml::breaks on B (TF 2.21.0 · Keras 3.15.1): passed → failed" in out
    assert "- [outcome, improved] s.yaml::heals on B (TF 2.21.0 · Keras 3.15.1): failed → passed" in out
    assert "1 finding counts" in out and "(1 regression, 1 improved)" in out


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
    assert "[error, regression] s.yaml::list on B (TF 2.21.0 · Keras 3.15.1): error appeared: ValueError" in out
    assert "[error, improved] s.yaml::fixed on B (TF 2.21.0 · Keras 3.15.1): error vanished (was: TypeError: x)" in out
    assert run(capsys, keras2, keras3, "--fail-on", "outcome,drift,slowdown")[0] == 0


XFAIL_KERAS3 = {"kind": "xfail", "where": "keras >=3", "reason": "Keras 3 predict() rejects a Python list"}
SKIP_KERAS2 = {"kind": "skip", "where": "keras <3", "reason": "Keras 2 accepts a Python list"}


def test_declared_changes_are_shown_never_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An xfail whose error occurred, and a skip, are what the scenario declares for that version."""
    keras2 = write(
        tmp_path,
        "k2",
        "2.15.1",
        "2.15.0",
        scenario("list"),
        {**results.bare_record("s.yaml::raises", "skipped", "Keras 2 accepts"), "declared": SKIP_KERAS2},
    )
    keras3 = write(
        tmp_path,
        "k3",
        "2.21.0",
        "3.15.1",
        {
            **results.bare_record("s.yaml::list", "error", "ValueError: Unrecognized"),
            "outcome": "xfailed",
            "declared": XFAIL_KERAS3,
        },
        scenario("raises"),
    )
    code, out = run(capsys, keras2, keras3, "--fail-on", "outcome,error")
    assert code == 0
    assert lines_with(out, "s.yaml::list ")[0].split()[1:] == ["pass", "xfail", "=e"]
    assert lines_with(out, "s.yaml::raises ")[0].split()[1:] == ["skip", "pass", "=o"]
    assert (
        "[error, declared] s.yaml::list on B (TF 2.21.0 · Keras 3.15.1): error ValueError: Unrecognized here, declared "
        "(xfail where keras >=3: Keras 3 predict() rejects a Python list)" in out
    )
    assert "[outcome, declared] s.yaml::raises on B" in out and "skipped in the version compared with" in out
    assert "(2 declared) and 0 inconclusive change(s), from 2 change(s)" in out
    # the same error without a declaration is a regression
    undeclared = write(
        tmp_path, "k3b", "2.21.0", "3.15.1", results.bare_record("s.yaml::list", "error", "ValueError: Unrecognized")
    )
    assert run(capsys, keras2, undeclared, "--fail-on", "error")[0] == 1
    # a declared xfail that passes (XPASS, strict) is not covered by the declaration
    xpass = write(tmp_path, "k3c", "2.21.0", "3.15.1", scenario("list", "xpassed", declared=XFAIL_KERAS3))
    code, out = run(capsys, keras2, xpass, "--fail-on", "outcome")
    assert code == 1 and "[outcome, regression] s.yaml::list" in out


def test_drift_without_a_floor_uses_the_tolerance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("d"), scenario("same"))
    new = write(
        tmp_path, "b", "2.16.1", "3.3.3", scenario("d", losses=[28.5, 7.0, 2.0, 0.55, 0.1001]), scenario("same")
    )
    code, out = run(capsys, base, new, "--fail-on", "drift")
    assert code == 1
    assert (
        "[drift, regression] s.yaml::d on B (TF 2.16.1 · Keras 3.3.3): loss curve moved 9.09% at epoch 4 "
        "(seed 0: 0.5 → 0.55), over the 1.00% tolerance; no rounding floor was measured" in out
    )
    assert "s.yaml::same on" not in out
    assert run(capsys, base, new)[0] == 0  # drift is shown, not counted, by default
    assert run(capsys, base, new, "--fail-on", "drift", "--loss-rtol", "0.1")[0] == 0


def test_drift_is_judged_against_the_rounding_floor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A chaotic curve (large floor) that moves is 'within its floor'; a steady curve (floor 1e-7) that moves by
    a few percent moved for real."""
    chaotic = [28.5, 7.0, 2.0, 0.5, 0.1]
    steady = [1.0, 0.5, 0.25, 0.125, 0.0625]
    base = write(
        tmp_path,
        "a",
        "2.13.1",
        "2.13.1",
        scenario("mlp", losses=chaotic, floor=0.98),
        scenario("lr", losses=steady, floor=2e-7),
    )
    new = write(
        tmp_path,
        "b",
        "2.21.0",
        "3.15.1",
        scenario("mlp", losses=[28.5, 7.0, 2.0, 0.9, 0.19], floor=0.95),
        scenario("lr", losses=[1.0, 0.5, 0.25, 0.131, 0.0625], floor=3e-7),
    )
    code, out = run(capsys, base, new, "--fail-on", "drift")
    assert code == 1
    mlp = lines_with(out, "s.yaml::mlp on")[0]
    assert "[drift, inconclusive]" in mlp and "loss curve moved 47.37% at epoch 5" in mlp and "within its limit" in mlp
    assert "floor 98.00%" in mlp
    lr = lines_with(out, "s.yaml::lr on")[0]
    assert "[drift, regression]" in lr and "loss curve moved 4.58% at epoch 4" in lr
    assert "above its limit 0.10% (×10 its rounding floor 3.0e-07, at least 0.10%)" in lr
    # a move within 10× the floor is rounding, and a floor-sized difference below 1 % is not even shown
    small = write(
        tmp_path,
        "c",
        "2.21.0",
        "3.15.1",
        scenario("lr", losses=[1.0, 0.5, 0.25, 0.125 * (1 + 2e-6), 0.0625], floor=3e-7),
    )
    code, out = run(capsys, base, small, "--fail-on", "drift")
    assert code == 0 and "s.yaml::lr on" not in out


def spread_losses(center: float, seeds: int = 8) -> Callable[[int], dict[str, float]]:
    """Final losses spread over a decade around `center`, in a seed-dependent order."""
    return lambda seed: {"final_loss": center * 10 ** (((seed * 5) % seeds) / seeds - 0.5), "passed": 1.0}


def test_seed_statistics_count_a_large_significant_shift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "a", "2.13.1", "2.13.1", scenario("mlp", seeds=8, floor=0.9, summary=spread_losses(2e-4)))
    same = write(
        tmp_path,
        "b",
        "2.15.1",
        "2.15.0",
        scenario("mlp", seeds=8, floor=0.9, summary=lambda s: spread_losses(2e-4)((s + 3) % 8)),
    )
    worse = write(tmp_path, "c", "2.21.0", "3.15.1", scenario("mlp", seeds=8, floor=0.9, summary=spread_losses(5e-3)))
    code, out = run(capsys, base, same, worse)
    assert code == 1
    shift = lines_with(out, "[shift")
    assert len(shift) == 1 and shift[0].startswith("- [shift, regression] s.yaml::mlp on C (TF 2.21.0")
    assert re.search(r"final loss shifted \(worse\): final loss median 0\.000\d+ → 0\.00\d+ \(×25\)", shift[0])
    assert "Mann–Whitney p = 0.00016, Cliff's δ = +1.00, n = 8 vs 8" in shift[0]
    # the same seeds in another order are the same distribution: nothing on B
    assert lines_with(out, "s.yaml::mlp ")[0].split()[1:] == ["pass", "pass", "pass", "!s"]


def test_a_tiny_significant_shift_does_not_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every seed's final loss 1 % higher: significant (p = 0.00016) but far from ×2, so not a regression."""
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("lr", seeds=8, summary=spread_losses(2e-4)))
    new = write(
        tmp_path,
        "b",
        "2.21.0",
        "3.15.1",
        scenario(
            "lr", seeds=8, summary=lambda s: {"final_loss": spread_losses(2e-4)(s)["final_loss"] * 1.01, "passed": 1.0}
        ),
    )
    code, out = run(capsys, base, new)
    assert code == 0 and "[shift" not in out


def test_too_few_seeds_to_tell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("mlp", seeds=3, summary=spread_losses(2e-4, 3)))
    new = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("mlp", seeds=3, summary=spread_losses(2e-2, 3)))
    code, out = run(capsys, base, new)
    assert code == 0
    line = lines_with(out, "[shift")[0]
    assert line.startswith("- [shift, inconclusive] s.yaml::mlp on B")
    assert (
        "final loss moved on every seed, but 3 vs 3 seeds are too few to tell (≥ 4 each for α 0.05; run with "
        "--convergence-seeds 8)" in line
    )


def test_improvements_are_reported_not_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("mlp", seeds=8, summary=spread_losses(5e-3)))
    new = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("mlp", seeds=8, summary=spread_losses(2e-4)))
    code, out = run(capsys, base, new)
    assert code == 0 and "[shift, improved] s.yaml::mlp on B" in out and "final loss shifted (better)" in out


def test_within_floor_drift_quotes_the_seed_statistics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "a", "2.13.1", "2.13.1", scenario("mlp", seeds=8, floor=0.9, summary=spread_losses(2e-4)))
    new = write(
        tmp_path,
        "b",
        "2.21.0",
        "3.15.1",
        scenario(
            "mlp",
            losses=[28.5, 7.0, 2.0, 0.5, 0.15],
            seeds=8,
            floor=0.9,
            summary=lambda s: spread_losses(2.1e-4)((s + 1) % 8),
        ),
    )
    code, out = run(capsys, base, new)
    assert code == 0
    line = lines_with(out, "[drift")[0]
    assert "within its limit" in line
    assert "final-loss distributions equivalent (final loss median" in line and "n = 8 vs 8" in line


def test_slowdown_is_calibrated_and_counted_beyond_the_noise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("t", epoch_ms=1.2))
    slow = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("t", epoch_ms=28.0))
    code, out = run(capsys, base, slow)
    assert code == 1
    assert (
        "[slowdown, regression] time per epoch ×23.3 (slower, relative to each run's machine calibration) on 1 "
        "scenario(s), on B (TF 2.21.0 · Keras 3.15.1)" in out
    )
    assert (
        "    s.yaml::t: ×23.3 (1.2 ms → 28 ms, fast decile; calibration 5 ms → 5 ms, spread ×1.00; counts above ×3)"
        in out
    )
    code, out = run(capsys, base, slow, "--fail-on", "outcome,error,drift")
    assert code == 0 and "[slowdown, moved]" in out and "count: outcome, error, drift" in out
    assert run(capsys, base, slow, "--slowdown", "30")[0] == 0


def test_a_busy_machine_is_not_a_slowdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The rerun took 3× longer per epoch, but the calibration workload took 3× longer too."""
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("t", epoch_ms=1.2))
    busy = write(tmp_path, "b", "2.15.1", "2.15.0", scenario("t", epoch_ms=3.6, calibration=[0.015] * 10))
    code, out = run(capsys, base, busy)
    assert code == 0 and "[slowdown" not in out
    # a machine whose speed moved while calibrating (×2 on each side) needs more than ×4 to count anything
    jittery = [0.005, 0.010] * 5
    base = write(tmp_path, "c", "2.15.1", "2.15.0", scenario("t", epoch_ms=1.2, calibration=jittery))
    slower = write(tmp_path, "d", "2.15.1", "2.15.0", scenario("t", epoch_ms=4.2, calibration=jittery))
    code, out = run(capsys, base, slower)
    assert code == 0 and "[slowdown" not in out
    assert "Timing: a slowdown counts above ×3 or the product of the two runs' calibration spreads" in out
    assert "detectable here: B ×4" in out
    assert run(capsys, base, slower, "--slowdown", "1.5")[0] == 0  # the noise still rules
    steady = write(tmp_path, "e", "2.15.1", "2.15.0", scenario("t", epoch_ms=4.2))
    assert run(capsys, write(tmp_path, "f", "2.15.1", "2.15.0", scenario("t", epoch_ms=1.2)), steady)[0] == 1


def test_too_few_epochs_are_not_timed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A divergence decided at epoch 12 leaves 11 steady epochs: their fast decile is not judged."""
    short = {"seeds": [{"seed": 0, "losses": CURVE, "epoch_seconds": [0.5] + [0.001] * 11}]}
    slow = {"seeds": [{"seed": 0, "losses": CURVE, "epoch_seconds": [0.5] + [0.03] * 11}]}
    base = write(tmp_path, "a", "2.15.1", "2.15.0", {**scenario("t"), **short})
    new = write(tmp_path, "b", "2.21.0", "3.15.1", {**scenario("t"), **slow})
    code, out = run(capsys, base, new)
    assert code == 0 and "[slowdown" not in out and "Timing:" not in out


def test_uncalibrated_records_fall_back_to_raw_times(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("t", epoch_ms=1.2, calibration=None))
    slow = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("t", epoch_ms=28.0, calibration=None))
    code, out = run(capsys, base, slow)
    assert code == 1 and "(1.2 ms → 28 ms, fast decile; uncalibrated; counts above ×3)" in out


def test_no_slowdown_between_different_fit_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run's epochs on the dataset path and another's on numpy arrays time different things, not different
    versions (here neither run has the sentinel's epochs of fit on the arrays)."""
    numpy_base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("t", epoch_ms=1.2))
    dataset_base = write(tmp_path, "b", "2.15.1", "2.15.0", scenario("t", epoch_ms=1.2, runtime=DATASET))
    slow_dataset = write(tmp_path, "c", "2.21.0", "3.15.1", scenario("t", epoch_ms=28.0, runtime=DATASET))
    code, out = run(capsys, numpy_base, slow_dataset)
    assert code == 0 and "[slowdown" not in out
    code, out = run(capsys, dataset_base, slow_dataset)
    assert code == 1 and "[slowdown, regression]" in out


DATASET = {"fit_input": "dataset"}
PROVEN = {"fit_input": "dataset", "fit_batches": True}  # the auto sentinel found it equal to fit on the arrays
FORCED = {"fit_input": "dataset", "fit_batches": False}  # fit.input: dataset, unchecked (Keras's adapter)


def test_a_keras_2_run_on_the_arrays_times_fit_against_a_keras_3_sentinel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On Keras 2 auto fits the arrays (no sentinel): its training epochs are what a user's fit costs, compared with
    the Keras 3 sentinel's epochs of fit on the arrays (under the sentinel's margin); the curves of both are fit's
    own batches, so they are compared."""
    keras2 = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("t", epoch_ms=1.2, runtime={"fit_input": "numpy"}))
    keras3 = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("t", epoch_ms=1.0, runtime=PROVEN, timing=sentinel(28)))
    code, out = run(capsys, keras2, keras3)
    assert code == 1 and "[slowdown, regression]" in out and "sentinel's fit on arrays" in out
    assert "curves not compared" not in out


def test_curves_of_an_unchecked_fast_path_are_not_compared_with_fit_s_batches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proven = write(tmp_path, "a", "2.21.0", "3.15.1", scenario("t", runtime=PROVEN))
    unchecked = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("t", runtime=DATASET))
    code, out = run(capsys, proven, unchecked)
    assert code == 0 and "trained other batches (fit's batches → fit input dataset, unchecked)" in out
    code, out = run(capsys, proven, write(tmp_path, "c", "2.21.0", "3.15.1", scenario("t")))
    assert code == 0 and "curves not compared" not in out
    # two forced fast paths of today are the same construction; one recorded before it was Keras's adapter is not
    a = write(tmp_path, "d", "2.21.0", "3.15.1", scenario("t", runtime=FORCED))
    b = write(tmp_path, "e", "2.21.0", "3.15.1", scenario("t", runtime=FORCED))
    assert "curves not compared" not in run(capsys, a, b)[1]
    assert "curves not compared" in run(capsys, a, unchecked)[1]


def sentinel(ms: float) -> dict[str, Any]:
    """The timing of a run whose auto sentinel timed 20 steady epochs of fit on numpy arrays at `ms` each."""
    return {
        "calibration_s": CALIBRATION,
        "numpy_epochs": {"median_s": ms / 1000, "p10_s": ms / 1000, "p90_s": ms / 1000, "n": 20},
    }


def test_the_auto_sentinel_times_fit_on_numpy_whatever_path_trained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both versions train through the dataset path (1 ms an epoch); the sentinel saw fit on arrays go 2 → 28 ms:
    the slowdown a user's code would see is the one the gate counts. One falling back to numpy changes nothing."""
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("t", epoch_ms=1.0, runtime=DATASET, timing=sentinel(2)))
    new = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("t", epoch_ms=1.0, runtime=DATASET, timing=sentinel(28)))
    code, out = run(capsys, base, new)
    assert code == 1 and "[slowdown, regression]" in out and "time per epoch ×14" in out
    fell_back = write(tmp_path, "c", "2.21.0", "3.15.1", scenario("t", epoch_ms=28.0, timing=sentinel(2.1)))
    code, out = run(capsys, base, fell_back)
    assert code == 0 and "[slowdown" not in out
    # a fast path from before the sentinel checked shuffled epochs is not taken for fit's batches: not compared
    assert "trained other batches (fit input dataset, unchecked → fit's batches): curves not compared" in out


def test_a_sentinel_timed_slowdown_needs_twice_the_margin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The sentinel's 20 epochs lie in one short window that a busy machine can slow throughout: a same-version
    rerun under CI load measured ×3.24 (0.98 → 4.88 ms). Counted only above twice the limit; ×14 still is."""
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("t", runtime=DATASET, timing=sentinel(0.98)))
    rerun = write(tmp_path, "b", "2.15.1", "2.15.0", scenario("t", runtime=DATASET, timing=sentinel(4.88)))
    code, out = run(capsys, base, rerun)
    assert code == 0 and ", regression]" not in out and "detectable here: B ×6" in out


def test_changes_name_the_first_version_and_adjacent_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Five versions: the Keras 3 slowdown appears from 2.18 on (not with tf_keras), grouped into one line."""

    def files(tf: str, keras: str, ms: float, numpy: str = "1.26.4", **kw: Any) -> str:
        kw["env"] = {"numpy": numpy, "protobuf": "4.25.9", "ml_dtypes": "0.3.2", "platform": "Linux", "cpu": "CPU"}
        return write(
            tmp_path,
            f"r{tf}{kw.get('package', '')}",
            tf,
            keras,
            scenario("a", epoch_ms=ms),
            scenario("b", epoch_ms=ms),
            scenario("c", epoch_ms=1.0, runtime=FORCED),
            **kw,
        )

    paths = [
        files("2.21.0", "3.15.1", 35.0),
        files("2.13.1", "2.13.1", 1.1),
        files("2.18.0", "3.8.0", 25.0, numpy="2.0.2"),
        files("2.15.1", "2.15.0", 1.2),
        files("2.20.0", "2.20.1", 1.3, package="tf_keras"),
    ]
    code, out = run(capsys, *paths)
    assert code == 1
    _, folded = run(capsys, *paths, width="120")
    assert max(map(len, folded.splitlines())) <= 120 < max(map(len, out.splitlines()))
    screen = out.split("\nDetails\n")[0]
    assert screen.startswith("Decision: BLOCKS — 1 finding counts (exit 1)")  # one cause, two scenarios, two versions
    assert (
        "1. slowdown: time per epoch ×22.7–×31.8 (slower; each run against its machine calibration) from C on, on 2"
        in screen
    )
    versions = out.split("\nDetails\n")[1].split("\n\n")[0].splitlines()[1:]
    assert [line.split()[0] for line in versions[::2]] == ["A", "B", "C", "D", "E"]
    assert (
        versions[0] == "  A  TF 2.13.1 · Keras 2.13.1 (baseline)" and versions[6] == "  D  TF 2.20.0 · tf_keras 2.20.1"
    )
    assert versions[5] == "     vs B: numpy 1.26.4 → 2.0.2"  # what changed beside TF/Keras
    assert max(len(line) for line in versions) <= 120
    slow = lines_with(out, "[slowdown")
    assert len(slow) == 1  # one line for the group
    assert (
        "time per epoch ×22.7–×31.8 (slower" in slow[0]
        and "on 2 scenario(s), from C (TF 2.18.0 · Keras 3.8.0) on" in slow[0]
    )
    assert lines_with(out, "s.yaml::a ")[0].split()[1:] == ["pass", "pass", "pass", "!t", "pass", "pass", "!t"]
    # adjacent pairs follow each Keras package's line: 2.15 → 2.18 is where it appeared, 2.18 → 2.21 changed nothing
    assert "- B → C: slowdown worse ×20.8 on 2 (s.yaml: a, b)" in out
    assert "- C → E: no changes" in out and "→ D" not in out
    assert max(len(line) for line in out.splitlines() if line.startswith("s.yaml")) <= 120


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
        "[error, regression] s.yaml::x on B (TF 2.21.0 · Keras 3.15.1): collection error in TF 2.21.0 · Keras 3.15.1: "
        "s.yaml:4: model[0]: unknown Keras layer 'X'" in out
    )


def test_missing_scenario_is_reported_not_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x"), scenario("only-old"))
    new = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("x"))
    code, out = run(capsys, base, new)
    assert code == 0 and "[missing, moved] s.yaml::only-old on B (TF 2.21.0 · Keras 3.15.1)" in out


def test_baseline_choice_and_legacy_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x"))
    b = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("x", "failed"))
    c = write(tmp_path, "c", "2.21.0", "2.21.0", scenario("x", "failed"), package="tf_keras")
    code, out = run(capsys, a, b, c, "--baseline", "3.15")
    assert re.search(r"B  TF 2\.21\.0 · Keras 3\.15\.1 +\(baseline\)", out) and "C  TF 2.21.0 · tf_keras 2.21.0" in out
    assert code == 0  # 2.15 passed where the baseline failed: an improvement; tf_keras did the same
    assert "[outcome, improved] s.yaml::x on A (TF 2.15.1 · Keras 2.15.0): failed → passed" in out
    assert run(capsys, a, b, c, "--baseline", "A")[0] == 1  # a letter of the grid
    code, out = run(capsys, a, b, c, "--baseline", "2.21")
    assert code == 2 and "--baseline '2.21' matches 2 of the versions given" in out


def test_same_versions_twice_are_told_apart_by_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "run1", "2.15.1", "2.15.0", scenario("x"))
    b = write(tmp_path, "run2", "2.15.1", "2.15.0", scenario("x"))
    code, out = run(capsys, a, b)
    assert code == 0 and "[run1]" in out and "[run2]" in out


def test_markdown_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x<b>", losses=[1.0, 0.5, float("inf")], seeds=3))
    b = write(
        tmp_path,
        "b",
        "2.21.0",
        "3.15.1",
        scenario("x<b>", "failed", epoch_ms=30, seeds=3, losses=lambda s: [1.0, 0.5 + s / 10, 0.2]),
    )
    md, page = tmp_path / "c.md", tmp_path / "c.html"
    code, _ = run(capsys, a, b, "--markdown", str(md), "--html", str(page))
    assert code == 1
    text = md.read_text()
    rendered = MarkdownIt("commonmark").enable("table").render(text)
    # outcome, slowdown
    assert rendered.startswith("<h2>Convergence across versions: BLOCKS — 2 findings count (exit 1)</h2>")
    assert "<td><strong>A</strong></td>\n<td>TF 2.15.1 · Keras 2.15.0 (baseline)</td>" in rendered
    row = "<td><code>s.yaml::x&lt;b&gt;</code></td>\n<td>pass</td>\n<td><strong>FAIL !o!t?s~d</strong></td>"
    assert row in rendered
    assert "s.yaml::x&lt;b&gt;" in rendered.split("Changes against")[1]  # no raw HTML from a name reaches the page
    html = page.read_text()
    assert html.count("<polygon") == 2  # each version's three seeds as a band
    assert html.count("<polyline") == 2 and "×" in html and "min–max over 3 seeds" in html  # a median each
    assert "<script" not in html  # self-contained and static


def test_record_text_cannot_inject_workflow_commands_or_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error message is data from the run: a line break in it must not start a '::' workflow command in a CI log,
    and HTML in it must not reach the Markdown job summary."""
    evil = "ValueError: bad\n::add-mask::x\n<img src=x onerror=alert(1)>"
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x"))
    new = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("x", "error", error=evil))
    md = tmp_path / "c.md"
    code, out = run(capsys, base, new, "--markdown", str(md))
    assert code == 1
    assert not any(line.lstrip().startswith("::") for line in out.splitlines())
    assert "error appeared: ValueError: bad\\n::add-mask::x\\n<img" in out  # one line, its breaks escaped
    text = md.read_text()
    rendered = MarkdownIt("commonmark").enable("table").render(text)
    assert "<img" not in rendered and "&lt;img src=x onerror=alert(1)&gt;" in rendered
    assert not any(line.lstrip().startswith("::") for line in text.splitlines())
    _, folded = run(capsys, base, new, width="40")
    assert not any(line.lstrip().startswith("::") for line in folded.splitlines())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not a results file"),
        ('{"schema": "something-else"}', "not a pytest-convergence results file"),
        ('{"schema": "pytest-convergence/1"}', "malformed results file: environment: Field required"),
        (
            '{"schema": "pytest-convergence/1", "environment": {}, "scenarios": [{"id": "s::x", "outcome": "won"}]}',
            "malformed results file: scenarios[0].outcome: Input should be 'passed', 'failed', 'error', 'skipped', "
            "'xfailed' or 'xpassed'",
        ),
        (
            '{"schema": "pytest-convergence/1", "environment": {}, "scenarios": [{"id": "s::x", "outcome": "passed", '
            '"seeds": [{"seed": 0, "losses": [1.0, "2"]}]}]}',
            "malformed results file: scenarios[0].seeds[0].losses[1]: Input should be a valid number",
        ),
        (
            '{"schema": "pytest-convergence/1", "environment": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "nested too deeply to be a results file",
        ),
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
    with pytest.raises(SystemExit):
        main(["compare", "x.json", "--fail-on", "declared"])  # declared changes never count
    with pytest.raises(SystemExit):
        main(["compare", "x.json", "--alpha", "1.5"])
