"""Property-based fuzzing of the YAML loader, the scenario validator and the expression evaluator.

The only outcomes allowed: a valid result, or the plugin's own error with a located message. Never another
exception, never code execution (an audit hook watches), never a hang (each example has a deadline).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_convergence.errors import ExpressionError, ScenarioError
from pytest_convergence.expr import evaluate
from pytest_convergence.scenario import load_file

pytestmark = pytest.mark.slow  # seconds of fuzzing: the full lane runs it, the fast lane does not
FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
WATCHED = ("exec", "os.system", "subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork", "ctypes.dlopen")
_state = {"armed": False, "seen": []}


def _audit(event: str, args: Any) -> None:
    if _state["armed"] and event.startswith(WATCHED):
        _state["seen"].append(event)


sys.addaudithook(_audit)  # cannot be removed; it only records while a fuzz test has it armed


@contextlib.contextmanager
def no_code_runs() -> Iterator[None]:
    """Fail if the code inside starts a process or execs code (hypothesis itself may exec: not armed then)."""
    _state["armed"], _state["seen"] = True, []
    try:
        yield
    finally:
        _state["armed"] = False
    assert _state["seen"] == [], f"code execution attempted: {_state['seen']}"


KEYS = [
    "defaults",
    "scenarios",
    "name",
    "data",
    "x",
    "y",
    "model",
    "optimizer",
    "loss",
    "epochs",
    "seed",
    "seeds",
    "expect",
    "converges",
    "diverges",
    "predict",
    "metric",
    "loss_below",
    "within_epochs",
    "linspace",
    "arange",
    "file",
    "noise",
    "std",
    "Dense",
    "units",
    "abs_tol",
    "min_pass_rate",
    "skip",
    "xfail",
    "keras",
    "raises",
    "timeout_s",
    "metrics",
    "batch_size",
    "name",
    "__class__",
    "!!python/object",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "0.5 * x",
            "__import__('os').system('true')",
            "x.__class__",
            "1e-4",
            "sgd",
            "mse",
            ">=3",
            "os:system",
            "sin(x)**2",
            "x" * 50,
            "1e9999",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=40,
)


def check_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        with no_code_runs():
            scenarios = load_file(path, display="fuzz.yaml")
    except ScenarioError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.path == "fuzz.yaml" and problem.line >= 0 and problem.message
        return
    for scenario in scenarios:
        assert np.isfinite(scenario.x).all() and np.isfinite(scenario.y).all()
        assert len(scenario.x) == len(scenario.y) > 0


@FUZZ
@given(text=st.text(max_size=400))
def test_any_text(tmp_path: Path, text: str) -> None:
    check_file(tmp_path, text)


@FUZZ
@given(doc=VALUES)
def test_any_structure(tmp_path: Path, doc: Any) -> None:
    check_file(tmp_path, yaml.safe_dump(doc, allow_unicode=True))


SCENARIO = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b", "a b", ""]) | st.text(max_size=10)},
    optional={
        "data": st.fixed_dictionaries({}, optional={"x": VALUES, "y": VALUES, "noise": VALUES, "file": SCALARS}),
        "model": VALUES,
        "optimizer": VALUES,
        "loss": SCALARS,
        "epochs": SCALARS,
        "seeds": VALUES,
        "expect": st.fixed_dictionaries(
            {}, optional={k: VALUES for k in ("converges", "diverges", "predict", "metric", "raises")}
        ),
        "skip": VALUES,
        "timeout_s": SCALARS,
    },
)


@FUZZ
@given(scenarios=st.lists(SCENARIO, min_size=1, max_size=3))
def test_scenario_shaped_documents(tmp_path: Path, scenarios: list[dict[str, Any]]) -> None:
    check_file(tmp_path, yaml.safe_dump({"scenarios": scenarios}, allow_unicode=True))


ATOMS = st.sampled_from(
    [
        "x",
        "x0",
        "1",
        "2.5",
        "1e308",
        "pi",
        "e",
        "sin(",
        "exp(",
        "(",
        ")",
        "**",
        "*",
        "+",
        "-",
        "/",
        "//",
        "%",
        ",",
        ">",
        "<=",
        "__import__",
        "'os'",
        ".",
        "[",
        "]",
        "lambda",
        ":",
        "__class__",
        "open",
        "where(",
        "maximum(",
        "y",
        " ",
    ]
)


@FUZZ
@given(text=st.lists(ATOMS, max_size=40).map("".join) | st.text(max_size=200))
def test_expressions(text: str) -> None:
    x = np.linspace(-3, 3, 7)
    try:
        with no_code_runs():
            out = evaluate(text, {"x": x, "x0": x})
    except ExpressionError as exc:
        assert str(exc)
        return
    assert isinstance(out, np.ndarray)


def test_the_audit_hook_does_see_code_execution() -> None:
    with pytest.raises(AssertionError, match="code execution attempted"), no_code_runs():
        exec("1")


def test_a_deeply_nested_document_is_an_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError):
        load_file(_write(tmp_path, "[" * 5000 + "]" * 5000), display="deep.yaml")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    return path
