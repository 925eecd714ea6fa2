"""Does a process's memory grow with the number of scenarios it trains? Prints RSS after 1, 10, 25 … N scenarios.

    python benchmarks/memory.py [--scenarios 50] [--epochs 20] [--isolate N]

Runs N small scenarios (an MLP and a linear model, alternating) in one pytest process, as one xdist worker
would, and samples the resident set size after each one. Flat means Keras state is cleared between scenarios.
With --isolate N the scenarios train in a child process replaced every N scenarios (--convergence-isolate): it
prints the pytest process's size and the training child's (from the records) after each mark.
Prints numbers; asserts nothing (machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path

import pytest

SCENARIO = """\
  - name: s{i}
    data: {{x: {{linspace: [-2, 2, 64]}}, y: "sin(x)"}}
    model: {model}
    optimizer: {{name: adam, learning_rate: 0.01}}
    loss: mean_squared_error
    epochs: {epochs}
    seed: {i}
    expect: {{converges: {{loss_below: 100}}}}
"""
MODELS = ("[{Dense: {units: 32, activation: tanh}}, {Dense: {units: 1}}]", "[{Dense: {units: 1}}]")


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


class Sampler:
    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []

    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.samples.append((rss_mib(), peak))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--isolate", type=int, default=0, help="scenarios per training child (0: in-process)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "many.yaml"
        body = "".join(SCENARIO.format(i=i, epochs=args.epochs, model=MODELS[i % 2]) for i in range(args.scenarios))
        path.write_text("scenarios:\n" + body)
        sampler = Sampler()
        results = Path(tmp) / "r.json"
        argv = ["-q", "-p", "no:cacheprovider", "--scenarios", str(path), "--rootdir", tmp]
        argv += ["--convergence-isolate", str(args.isolate), "--convergence-json", str(results)]
        code = pytest.main(argv, [sampler])
        records = json.loads(results.read_text())["scenarios"]
        child = {int(r["name"][1:]): r["runtime"].get("child_rss_mib") for r in records if r.get("runtime")}
    from pytest_convergence import keras as keras_side

    v = keras_side.versions()
    print(
        f"\nmemory over {args.scenarios} scenarios, {args.epochs} epochs each; TF {v['tensorflow']}, "
        f"{v['keras_package']} {v['keras']}, Python {sys.version.split()[0]}"
    )
    if args.isolate:
        print(f"training in a child process replaced every {args.isolate} scenario(s)")
    print(f"{'after scenario':>15} {'RSS MiB':>9} {'peak MiB':>9} {'child MiB':>10}")
    marks = sorted({1, 10, 25, 50, 100, 200, 500, args.scenarios} & set(range(1, len(sampler.samples) + 1)))
    for n in marks:
        rss, peak = sampler.samples[n - 1]
        trained = child.get(n - 1)
        print(f"{n:>15} {rss:>9.1f} {peak:>9.1f} {f'{trained:.1f}' if trained else '-':>10}")
    sizes = [v for v in child.values() if v]
    if sizes:
        print(f"training children: {min(sizes):.1f} … {max(sizes):.1f} MiB over all scenarios")
    if len(sampler.samples) >= 10:
        first, last = sampler.samples[9][0], sampler.samples[-1][0]
        print(
            f"growth from scenario 10 to {len(sampler.samples)}: {last - first:+.1f} MiB "
            f"({(last - first) / max(len(sampler.samples) - 10, 1) * 1024:+.0f} KiB per scenario)"
        )
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
