"""--convergence-ray on a real Ray cluster of two nodes on this machine (ray.cluster_utils.Cluster, one CPU each,
talking only to this machine's addresses, shut down through Ray's API): the same verdicts and curves as a serial
run, a controller that never imports TensorFlow, and a worker node killed mid-run that loses nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from texts import HEADER

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.keras

SCENARIOS = "".join(
    f"  - name: s{i}\n    epochs: {20 + 5 * i}\n    seed: {i}\n    optimizer: {{name: sgd, learning_rate: 0.001}}\n"
    "    expect: {converges: {loss_below: 1e3}}\n"
    for i in range(4)
) + (
    "  - name: diverges-as-said\n    epochs: 30\n    expect: {diverges: {within_epochs: 30}}\n"
    "  - name: fails\n    epochs: 10\n    expect: {converges: {loss_below: 1e-9}}\n"
)
# written by a conftest.py of the run: which heavy modules the controller (the pytest process) imported
CONTROLLER_PROBE = """
import json, sys
def pytest_sessionfinish(session):
    heavy = [m for m in ("tensorflow", "keras", "ray") if m in sys.modules]
    open("controller-modules.json", "w").write(json.dumps(heavy))
"""


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """Two nodes of one CPU on this machine; shut down through Ray's API."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    try:
        yield c
    finally:
        c.shutdown()


def pytest_run(path: Path, *args: str) -> subprocess.Popen[str]:
    """pytest in a subprocess (its own Ray driver), in `path`."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--scenarios", "s.yaml", *args]
    return subprocess.Popen(command, cwd=path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def curves(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    return {r["id"]: (r["outcome"], [s.get("losses") for s in r.get("seeds", [])]) for r in doc["scenarios"]}


def test_a_run_on_the_cluster_is_the_serial_run(tmp_path: Path, cluster: Cluster) -> None:
    (tmp_path / "s.yaml").write_text(HEADER + SCENARIOS)
    (tmp_path / "conftest.py").write_text(CONTROLLER_PROBE)
    on_ray = pytest_run(tmp_path, "--convergence-ray", cluster.address, "--convergence-json", "ray.json")
    out, _ = on_ray.communicate(timeout=600)
    assert on_ray.returncode == 1, out  # the one scenario that fails, fails
    assert "1 failed, 5 passed" in out, out
    assert json.loads((tmp_path / "controller-modules.json").read_text()) == ["ray"], "the controller trained"
    serial = pytest_run(tmp_path, "--convergence-json", "serial.json")
    out, _ = serial.communicate(timeout=600)
    assert "1 failed, 5 passed" in out, out
    assert "ray" not in json.loads((tmp_path / "controller-modules.json").read_text())  # without the option: no Ray
    assert curves(tmp_path / "ray.json") == curves(tmp_path / "serial.json")
    records = json.loads((tmp_path / "ray.json").read_text())["scenarios"]
    nodes = {r["runtime"]["ray_node"] for r in records}
    assert len(nodes) == 2, "both nodes trained"  # one CPU each, six tasks submitted at once
    assert {r["runtime"]["intra_op_threads"] for r in records} == {1}  # each task's one CPU
    assert {"tensorflow", "keras", "numpy"} <= set(records[0]["versions"])  # what the worker's environment holds


def test_a_node_killed_mid_run_loses_nothing(tmp_path: Path, cluster: Cluster) -> None:
    """The worker node is removed (its raylet killed) once the first result is in, while its task trains: Ray
    retries that task on the head node, and every scenario is in the results file with its verdict."""
    slow = "".join(
        f"  - name: slow{i}\n    epochs: 400\n    seed: {i}\n    fit: {{input: numpy}}\n"
        "    optimizer: {name: sgd, learning_rate: 0.001}\n    expect: {converges: {loss_below: 1e3}}\n"
        for i in range(4)
    )
    (tmp_path / "s.yaml").write_text(HEADER + slow)
    run = pytest_run(tmp_path, "--convergence-ray", cluster.address, "--convergence-json", "r.json", "-v")
    journal = tmp_path / "r.json.journal"
    deadline = time.monotonic() + 300
    while not (journal.exists() and '"record"' in journal.read_text()):
        assert run.poll() is None and time.monotonic() < deadline, "no result before the kill"
        time.sleep(0.2)
    (worker,) = [n for n in cluster.list_all_nodes() if n is not cluster.head_node]
    cluster.remove_node(worker, allow_graceful=False)
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0, out
    records = json.loads((tmp_path / "r.json").read_text())["scenarios"]
    assert sorted(r["name"] for r in records) == ["slow0", "slow1", "slow2", "slow3"]
    assert {r["outcome"] for r in records} == {"passed"}
    assert all(len(r["seeds"][0]["losses"]) == 400 for r in records)


def test_a_hang_on_a_worker_is_stopped_at_the_hard_limit(tmp_path: Path) -> None:
    """A scenario whose training hangs where the per-batch check cannot see it (here: a model factory that sleeps) is
    given up 1 s past its time limit by its task's watchdog, which returns that it hung: the scenario fails with
    that, is not retried, and the next scenario trains (`--convergence-ray local`)."""
    (tmp_path / "factories.py").write_text("import time\n\ndef hangs():\n    time.sleep(600)\n")
    hang = (
        "  - name: hang\n    model: 'factories:hangs'\n    timeout_s: 2\n    expect: {diverges: {within_epochs: 30}}\n"
    )
    after = "  - name: ok-after\n    expect: {diverges: {within_epochs: 30}}\n"
    (tmp_path / "s.yaml").write_text(HEADER + hang + after)
    run = pytest_run(tmp_path, "--convergence-ray", "local", "--convergence-json", "r.json")
    out, _ = run.communicate(timeout=600)
    assert "1 failed, 1 passed" in out, out
    assert "scenario 'hang': the time limit of 2 s was reached and training did not stop (a native hang?): its Ray " \
        "task gave up on it after" in out, out  # fmt: skip
    records = {r["name"]: r for r in json.loads((tmp_path / "r.json").read_text())["scenarios"]}
    assert records["hang"]["error"].startswith("TrainingProcessKilled: ")


def test_what_ray_cannot_do_is_said_at_once(tmp_path: Path) -> None:
    """A scenario asking for a GPU no node has fails at once (Ray would wait for such a node for ever) while the
    others train; Ray with the isolation child is a usage error."""
    gpu = "  - name: wants-a-gpu\n    resources: {gpus: 1}\n    expect: {diverges: {within_epochs: 30}}\n"
    plain = "  - name: plain\n    expect: {diverges: {within_epochs: 30}}\n"
    (tmp_path / "s.yaml").write_text(HEADER + gpu + plain)
    run = pytest_run(tmp_path, "--convergence-ray", "local")
    out, _ = run.communicate(timeout=600)
    assert "1 failed, 1 passed" in out, out
    assert "scenario 'wants-a-gpu': training raised Unplaceable: no node of the Ray cluster has 1 CPU(s) and 1 GPU(s)" \
        in out, out  # fmt: skip
    both = pytest_run(tmp_path, "--convergence-ray", "local", "--convergence-isolate", "1")
    out, _ = both.communicate(timeout=120)
    assert both.returncode == 4 and "give it without --convergence-isolate" in out, out
