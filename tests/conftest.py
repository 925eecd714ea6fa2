"""Fixtures shared by the tests; the scenario texts they use live in texts.py (tests import that, not this)."""

from __future__ import annotations

import pytest
from texts import HEADER

pytest_plugins = ["pytester"]


@pytest.fixture
def scenario_file(pytester: pytest.Pytester):
    """Write `name.yaml` with the shared header and the given scenario entries."""

    def write(*entries: str, name: str = "linear") -> None:
        pytester.makefile(".yaml", **{name: HEADER + "".join(entries)})

    return write


@pytest.fixture(scope="session")
def tensorflow_imported_once() -> None:
    """In-process pytester runs drop the modules a run imported; TensorFlow aborts when imported a second time
    into one process. Importing it here, outside those runs, keeps it loaded."""
    from pytest_convergence import keras as keras_side

    keras_side.frameworks()


@pytest.fixture(autouse=True)
def _outside_the_outer_xdist(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `tox -e tests` (-n 2) each test runs in an xdist worker, whose PYTEST_XDIST_* variables would leak into
    what the test starts (pytester's subprocesses, the plugin's thread split): each test runs as in a plain pytest."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
