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
