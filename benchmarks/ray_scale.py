"""What --convergence-ray costs and gives, measured on this machine: the overhead per scenario through Ray against
the same scenarios in the pytest process, the scaling from one node to two (a local ray.cluster_utils.Cluster of
one-CPU nodes), how many tasks per second the driver sustains, and how large a result is. Then what a 64-node run of
10 000 scenarios would need, estimated from those numbers. Prints; asserts nothing.

    python benchmarks/ray_scale.py                 # 12 short scenarios (about three minutes here)
    python benchmarks/ray_scale.py --scenarios 24 --epochs 200
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = """\
defaults:
  data: {x: {arange: [1, 21]}, y: "0.5 * x"}
  model: [{Dense: {units: 1}}]
  loss: mean_squared_error
  optimizer: {name: sgd, learning_rate: 0.001}
  fit: {input: numpy}
scenarios:
"""


def suite(folder: Path, count: int, epochs: int) -> None:
    body = "".join(
        f"  - name: s{i}\n    epochs: {epochs}\n    seed: {i}\n    expect: {{converges: {{loss_below: 1e3}}}}\n"
        for i in range(count)
    )
    (folder / "s.yaml").write_text(HEADER + body)


def pytest_seconds(folder: Path, *args: str) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--scenarios", "s.yaml",
         "--convergence-json", "r.json", *args],
        cwd=folder, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{done.stdout[-2000:]}")
    return seconds, json.loads((folder / "r.json").read_text())


def trained_seconds(doc: dict) -> float:
    return sum(s.get("fit_seconds") or 0.0 for r in doc["scenarios"] for s in r.get("seeds", []))


def driver_rate(tasks: int) -> float:
    """Tasks per second one driver submits and collects (empty tasks, local Ray): the controller's own ceiling."""
    import ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)

    @ray.remote(num_cpus=0)
    def nothing(i: int) -> int:
        return i

    ray.get([nothing.remote(i) for i in range(50)])  # workers started
    started = time.perf_counter()
    ray.get([nothing.remote(i) for i in range(tasks)])
    rate = tasks / (time.perf_counter() - started)
    ray.shutdown()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        suite(folder, args.scenarios, args.epochs)
        print(f"{args.scenarios} scenarios of {args.epochs} epochs (Dense(1), 20 samples), fit on the arrays")
        serial, serial_doc = pytest_seconds(folder)
        fit = trained_seconds(serial_doc)
        print(f"in the pytest process:       {serial:6.1f} s wall, of which fit {fit:5.1f} s")
        walls = {}
        for nodes in (1, 2):
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
            for _ in range(nodes - 1):
                cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            try:
                wall, doc = pytest_seconds(folder, "--convergence-ray", cluster.address)
            finally:
                cluster.shutdown()
            walls[nodes] = wall
            size = len((folder / "r.json").read_bytes()) / len(doc["scenarios"])
            fit_ray = trained_seconds(doc)
            over = (wall - serial) / args.scenarios
            print(
                f"Ray, {nodes} node(s) of 1 CPU: {wall:6.1f} s wall, of which fit {fit_ray:5.1f} s; "
                f"{over:+.2f} s per scenario against in-process; result {size / 1024:.1f} KiB per scenario"
            )
        print(f"scaling 1 → 2 nodes: ×{walls[1] / walls[2]:.2f} (ideal ×2; both nodes share this machine's 2 cores)")
        rate = driver_rate(2000)
        print(f"one driver submits and collects {rate:,.0f} empty tasks per second (local Ray)")
        per_scenario = walls[1] / args.scenarios
        print()
        print("A 64-node run of 10 000 scenarios, estimated from these numbers:")
        print(f"  driver: 10 000 tasks at {rate:,.0f}/s = {10_000 / rate:.1f} s of submission: not the bottleneck")
        print(f"  results: 10 000 × {size / 1024:.1f} KiB = {10_000 * size / 2**20:.0f} MiB through the driver")
        print(
            f"  time: at {per_scenario:.1f} s per scenario on one CPU (this suite's), 10 000 scenarios on 64 one-CPU "
            f"nodes ≈ {10_000 * per_scenario / 64 / 60:.0f} min; a scenario of minutes scales the same way "
            "(the work per task dwarfs Ray's per-task cost)"
        )


if __name__ == "__main__":
    main()
