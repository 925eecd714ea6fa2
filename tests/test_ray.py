"""--convergence-ray on a real Ray cluster of two nodes on this machine (ray.cluster_utils.Cluster, one CPU each,
talking only to this machine's addresses, shut down through Ray's API): the same verdicts and curves as a serial
run, a controller that never imports TensorFlow, and a worker node killed mid-run that loses nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
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
def cluster(ray_cluster: Any) -> Iterator[Cluster]:
    """Two nodes of one CPU on this machine; shut down through Ray's API."""
    with ray_cluster(2) as two:
        yield two


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
        f"  - name: slow{i}\n    epochs: 250\n    seed: {i}\n    fit: {{input: numpy}}\n"
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
    assert all(len(r["seeds"][0]["losses"]) == 250 for r in records)


def test_a_hang_on_a_worker_is_stopped_at_the_hard_limit_and_its_thread_goes_with_that_worker(
    tmp_path: Path, ray_cluster: Any
) -> None:
    """A scenario whose training hangs where the per-batch check cannot see it (here: a model factory that sleeps) is
    given up 1 s past its time limit by its task's watchdog, which returns that it hung: the scenario fails with
    that and is not retried. On a cluster of one CPU the next task goes to that same worker, which it ends before
    anything else (the hung thread goes with it); Ray retries the task on a fresh worker, where it passes and finds
    no hung training thread beside its own."""
    (tmp_path / "factories.py").write_text(
        "import json, threading, time\n\n"
        "def hangs():\n    time.sleep(600)\n\n"
        "def counts_threads():\n"
        "    import keras\n"
        "    names = [t.name for t in threading.enumerate() if t.name == 'convergence-training']\n"
        f"    open({str(tmp_path / 'after.json')!r}, 'w').write(json.dumps({{'training_threads': len(names)}}))\n"
        "    return keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(1)])\n"
    )
    hang = (
        "  - name: hang\n    model: 'factories:hangs'\n    timeout_s: 2\n    expect: {diverges: {within_epochs: 30}}\n"
    )
    after = "  - name: ok-after\n    model: 'factories:counts_threads'\n    expect: {diverges: {within_epochs: 30}}\n"
    (tmp_path / "s.yaml").write_text(HEADER + hang + after)
    with ray_cluster(1) as one:
        run = pytest_run(tmp_path, "--convergence-ray", one.address, "--convergence-json", "r.json")
        out, _ = run.communicate(timeout=600)
    assert "1 failed, 1 passed" in out, out
    assert "scenario 'hang': the time limit of 2 s was reached and training did not stop (a native hang?): its Ray " \
        "task gave up on it after" in out, out  # fmt: skip
    records = {r["name"]: r for r in json.loads((tmp_path / "r.json").read_text())["scenarios"]}
    assert records["hang"]["error"].startswith("TrainingProcessKilled: ")
    assert records["ok-after"]["outcome"] == "passed"
    assert json.loads((tmp_path / "after.json").read_text())["training_threads"] == 1, "the hung thread lived on"


def test_what_ray_cannot_do_is_said_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scenario asking for a GPU no node has fails at once (Ray would wait for such a node for ever) while the
    others train; the Ray that `local` started is gone with its folder; Ray with the isolation child is a usage
    error."""
    gpu = "  - name: wants-a-gpu\n    resources: {gpus: 1}\n    expect: {diverges: {within_epochs: 30}}\n"
    plain = "  - name: plain\n    expect: {diverges: {within_epochs: 30}}\n"
    (tmp_path / "s.yaml").write_text(HEADER + gpu + plain)
    ray_tmp = Path(tempfile.mkdtemp(prefix="cv-"))  # where `local` makes its folder (RAY_TMPDIR); short for sockets
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    run = pytest_run(tmp_path, "--convergence-ray", "local")
    out, _ = run.communicate(timeout=600)
    left = list(ray_tmp.iterdir())
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert "1 failed, 1 passed" in out, out
    assert "scenario 'wants-a-gpu': training raised Unplaceable: no node of the Ray cluster has 1 CPU(s) and 1 GPU(s)" \
        in out, out  # fmt: skip
    assert not left, "the Ray started for the run left its folder (runtime environments: GBs)"
    both = pytest_run(tmp_path, "--convergence-ray", "local", "--convergence-isolate", "1")
    out, _ = both.communicate(timeout=120)
    assert both.returncode == 4 and "give it without --convergence-isolate" in out, out


GATED = """  - name: tiny-sgd
    epochs: 30
    optimizer: {name: sgd, learning_rate: 0.001}
    expect: {converges: {loss_below: 1e3}}
"""


def test_a_gate_on_the_cluster_runs_each_side_in_its_runtime_environment_and_times_them_on_one_node(
    tmp_path: Path, ray_cluster: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gate --ray ADDRESS OLD NEW` with both sides one unchanged version (a requirement already installed here, so
    that uv installs nothing): both sides' scenarios train as tasks on the cluster, in that runtime environment, and
    the timing actors share one node. The decision is that nothing changed. (Each side's own requirements reaching
    its tasks: test_gate.py; two versions: CI's gate --ray of TF 2.15 and 2.21.) One node of two CPUs: nodes started
    on one machine share one folder, where two of them making the same runtime environment at once collide (Ray
    makes it once per node; on separate machines each node has its own folder)."""
    from importlib import metadata

    from pytest_convergence.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(HEADER + GATED)
    old = new = f"pyyaml=={metadata.version('pyyaml')}"  # one runtime environment: Ray makes each by copying this venv
    with ray_cluster(1, cpus=2) as cluster:
        code = main(["gate", old, new, "s.yaml", "--ray", cluster.address, "--json", "gate.json", "--workdir", "work"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "Decision: PASSES — nothing that counts changed (exit 0)" in out.splitlines(), out
    assert "gate OLD: Ray runtime environment with pyyaml==" in out, out
    assert "run 1 of OLD and NEW: on Ray, rounding floors measured, both at once" in out, out
    assert "scenarios side by side on one node of the cluster (" in out, out
    (scenario,) = json.loads((tmp_path / "gate.json").read_text())["scenarios"].values()
    assert scenario["state"] == "same" and scenario["paired"] is True
    assert scenario["timing"]["rounds"] >= 4 and not scenario["timing"]["error"]
    for side in ("old", "new"):
        (record,) = json.loads((tmp_path / "work" / f"{side}-1.json").read_text())["scenarios"]
        assert record["runtime"]["ray_node"] and record["runtime"]["noise_floor"], record["runtime"]
    assert not ray.is_initialized(), "the gate left its Ray connection open"


def test_the_timing_workers_hold_one_whole_node_and_let_it_go(cluster: Cluster) -> None:
    """`gate --ray`'s timing: both actors in one placement group packed onto one node, whose CPUs it holds while
    they time (nothing else of the cluster lands there); the actors and the group are gone afterwards."""
    from pytest_convergence.cluster import timing_workers
    from pytest_convergence.gate import parse_side

    sides = [(parse_side(role, "pyyaml>=1"), ()) for role in ("OLD", "NEW")]  # no runtime environment to make
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    try:
        with timing_workers(sides, wait_s=120) as workers:
            for worker in workers:
                worker.wait_ready(300)
            (node,) = {w.node for w in workers}
            assert node in {n["NodeID"] for n in ray.nodes()}
            assert ray.available_resources().get("CPU", 0) == pytest.approx(1.0), "one node's CPU held, one free"
        deadline = time.monotonic() + 30
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU", 0) == pytest.approx(2.0), "the node was let go"
        from ray.util import placement_group_table

        assert {g["state"] for g in placement_group_table().values()} == {"REMOVED"}
    finally:
        ray.shutdown()
