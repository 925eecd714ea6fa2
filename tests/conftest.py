"""Fixtures shared by the tests; the scenario texts they use live in texts.py (tests import that, not this)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

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


@pytest.fixture
def ray_cluster() -> Any:
    """`with ray_cluster(nodes) as cluster:` (see `_ray_cluster`)."""
    return _ray_cluster


@contextlib.contextmanager
def _ray_cluster(nodes: int = 1, cpus: int = 1) -> Iterator[Any]:
    """A real Ray cluster of `nodes` nodes of `cpus` CPUs on this machine (ray.cluster_utils.Cluster), in a temporary
    folder of its own, shut down through Ray's API and removed: the runtime environments Ray makes are copies of
    this Python environment, gigabytes each, which Ray keeps after shutdown."""
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="cv-ray-")  # short: Ray's socket paths must fit in 107 characters
    before = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp  # every node's folder, and the controllers' (they inherit it)
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "include_dashboard": False})
        try:
            for _ in range(nodes - 1):
                cluster.add_node(num_cpus=cpus)
            cluster.wait_for_nodes()
            yield cluster
        finally:
            cluster.shutdown()
    finally:
        if before is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = before
        shutil.rmtree(temp, ignore_errors=True)
