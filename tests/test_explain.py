"""`pytest-convergence explain`: a real run in a subprocess (as a user types it) and its exit codes."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from pathlib import Path

import pytest
from texts import HEADER

from pytest_convergence.explain import sweep_rates

pytestmark = pytest.mark.keras


def explain(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_convergence", "explain", *args], cwd=cwd, capture_output=True, text=True
    )


def test_explain_diagnoses_and_sweeps_around_the_bound(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        HEADER + "  - name: expected-to-converge\n    expect: {converges: {loss_below: 0.01}}\n", encoding="utf-8"
    )
    out = explain("s.yaml::expected-to-converge", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("s.yaml:9: scenario 'expected-to-converge' — seed 0, fit input auto")
    from pytest_convergence import keras as keras_side

    checked = "  fit input dataset: the fast path trained what fit on the numpy arrays trains, every one of 21 epochs*"
    # Keras 2 fits the arrays under auto, without a sentinel to report
    assert bool(fnmatch.filter(lines, checked)) == (keras_side.keras_major() >= 3)
    assert any(line.startswith("  FAIL converges: final loss 2.68e+17 at epoch 30 is not below 0.01") for line in lines)
    assert "  λmax = 288.5, λmin = 0.4609 → bound lr < 2/λmax = 0.006931" in lines
    sweep = [line.split() for line in lines[lines.index(next(x for x in lines if x.startswith("learning-rate"))) + 2 :]]
    verdicts = {float(row[0]): row[2] for row in sweep if row[0] != "verdict:"}
    # below the bound the converges expectation holds within the 30 epochs; above it the loss grows
    assert [verdicts[r] for r in sorted(verdicts)] == ["pass", "pass", "pass", "FAIL", "FAIL", "FAIL"]
    assert "← configured" in next(line for line in lines if line.lstrip().startswith("0.01 "))
    assert lines[-1] == "verdict: FAIL"
    assert "retracing" not in out.stderr  # one model per swept rate: TensorFlow's retracing warnings are held back


def test_explain_bad_targets_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        HEADER + "  - name: a\n    expect: {converges: {loss_below: 1}}\n"
        "  - name: b\n    expect: {converges: {loss_below: 1}}\n",
        encoding="utf-8",
    )
    out = explain("s.yaml::nope", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (
        "pytest-convergence: error: no scenario 'nope' in s.yaml; write s.yaml::NAME with NAME one of: a, b"
    )
    out = explain("missing.yaml", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == "pytest-convergence: error: missing.yaml: no such file"


def test_sweep_rates_straddle_the_bound() -> None:
    assert sweep_rates(0.01, 0.006931) == [0.00173, 0.00347, 0.00624, 0.00762, 0.01, 0.0139]
    assert sweep_rates(0.001, float("inf")) == [0.0001, 0.0003, 0.001, 0.003, 0.01]


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_convergence import __version__
    from pytest_convergence.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"pytest-convergence {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse folds lines
    assert "pytest --scenarios scenarios/" in text and "`" not in text  # plain text, no Markdown
