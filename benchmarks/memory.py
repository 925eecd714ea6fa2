"""Does a process's memory grow with the number of scenarios it trains? Prints RSS after 1, 10, 25 … N scenarios.

    python benchmarks/memory.py [--scenarios 50] [--epochs 20]

Runs N small scenarios (an MLP and a linear model, alternating) in one pytest process, as one xdist worker
would, and samples the resident set size after each one. Flat means Keras state is cleared between scenarios.
Prints numbers; asserts nothing (machines are shared and noisy).
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "many.yaml"
        body = "".join(SCENARIO.format(i=i, epochs=args.epochs, model=MODELS[i % 2]) for i in range(args.scenarios))
        path.write_text("scenarios:\n" + body)
        sampler = Sampler()
        code = pytest.main(["-q", "-p", "no:cacheprovider", "--scenarios", str(path), "--rootdir", tmp], [sampler])
    from pytest_convergence import training

    v = training.versions()
    print(
        f"\nmemory over {args.scenarios} scenarios, {args.epochs} epochs each; TF {v['tensorflow']}, "
        f"{v['keras_package']} {v['keras']}, Python {sys.version.split()[0]}"
    )
    print(f"{'after scenario':>15} {'RSS MiB':>9} {'peak MiB':>9}")
    marks = sorted({1, 10, 25, args.scenarios} & set(range(1, len(sampler.samples) + 1)))
    for n in marks:
        rss, peak = sampler.samples[n - 1]
        print(f"{n:>15} {rss:>9.1f} {peak:>9.1f}")
    if len(sampler.samples) >= 10:
        first, last = sampler.samples[9][0], sampler.samples[-1][0]
        print(
            f"growth from scenario 10 to {len(sampler.samples)}: {last - first:+.1f} MiB "
            f"({(last - first) / max(len(sampler.samples) - 10, 1) * 1024:+.0f} KiB per scenario)"
        )
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
