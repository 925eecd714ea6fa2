"""The plugin's contract with pytest, without training: loading it imports nothing heavy, bad options and ini values
are usage errors that name their source, the ini keys say what they take. (Fast lane: no TensorFlow.)"""

from __future__ import annotations

import subprocess
import sys

import pytest
from texts import DIVERGES

HEAVY = ("tensorflow", "keras", "numpy", "pydantic", "yaml", "packaging", "scipy", "ray", "re2")


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    """Every pytest run in the environment loads the plugin: numpy, pydantic, yaml & co. come with a scenario file."""
    code = f"import sys, pytest, pytest_convergence.plugin; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_scenarios_path_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--scenarios", "nowhere")
    result.stderr.fnmatch_lines(["*--scenarios nowhere: no such file or directory*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_fail_on_option_is_checked(pytester: pytest.Pytester, scenario_file) -> None:
    scenario_file(DIVERGES)
    bad = pytester.runpytest("--scenarios", "linear.yaml", "--convergence-fail-on", "outcome,speed")
    bad.stderr.fnmatch_lines(["*--convergence-fail-on: unknown change kind(s) [[]'speed'[]]; choose from outcome*"])
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    pytester.makeini("[pytest]\nconvergence_seeds = 0\n")
    bad = pytester.runpytest("--scenarios", "linear.yaml")
    bad.stderr.fnmatch_lines(
        ["*convergence_seeds in *tox.ini: expected a number of seeds from 1 to 1000 (N)*, got '0'"]
    )
    pytester.makeini("[pytest]\n")
    bad = pytester.runpytest("--scenarios", "linear.yaml", "--convergence-isolate", "some")
    bad.stderr.fnmatch_lines(
        ["*--convergence-isolate: expected a number of scenarios per training child (0: off), got 'some'"]
    )


def test_ini_keys_say_what_they_take(pytester: pytest.Pytester) -> None:
    """pytest lists the keys the plugin reads itself as (string): the help says the type first."""
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines_random(
        [
            "*convergence_timeout (string):*",
            "*SECONDS (a number; 0 or none: no limit)*",
            "*convergence_seeds (string):*",
        ]
    )


def test_plots_without_matplotlib_say_what_to_install(
    pytester: pytest.Pytester, scenario_file, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_convergence import plots

    monkeypatch.setattr(plots, "available", lambda: False)
    scenario_file(DIVERGES)
    result = pytester.runpytest("--scenarios", "linear.yaml", "--convergence-plots", "plots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --convergence-plots needs matplotlib: pip install matplotlib (the plots extra of pytest-convergence)"]
    )
    result.stderr.no_fnmatch_line("*Traceback*")


def test_the_keras_contract_names_every_module_outside_the_keras_package() -> None:
    """pyproject.toml's import-linter contract lists the modules that must not import TensorFlow or Keras: all but the
    Keras package, including any module added since."""
    import pkgutil
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[1]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = pyproject["tool"]["importlinter"]["contracts"]
    named = [c for c in contracts if c["name"].startswith(("Only the Keras package", "The Keras package is entered"))]
    modules = {f"pytest_convergence.{m.name}" for m in pkgutil.iter_modules([str(root / "pytest_convergence")])}
    assert len(named) == 2
    for contract in named:
        assert set(contract["source_modules"]) == modules - {"pytest_convergence.keras"}, contract["name"]


def test_an_error_crosses_from_the_training_child_as_text_and_back() -> None:
    """The one codec of a child's error: evaluate.error_as_text there, errors.ChildError.from_plain here."""
    from pytest_convergence.errors import ChildError
    from pytest_convergence.evaluate import error_as_text

    try:
        raise PermissionError("cannot read factories.py")
    except PermissionError as exc:
        sent = error_as_text(exc)
    back = ChildError.from_plain(sent)
    assert (back.type_name, str(back)) == ("PermissionError", "cannot read factories.py")
    assert "Traceback" in back.trace and "PermissionError" in back.trace
