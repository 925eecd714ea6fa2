"""Where the time goes: the plugin against bare Keras, early verdicts, the fast input path, and -n 2.

    python benchmarks/speed.py [--runs 5] [--suite-runs 1] [--skip-suite | --suite-only] [--numpy-suite]
    python benchmarks/speed.py --versions ENV_A ENV_B [--earlier-suite CHECKOUT]
    python benchmarks/speed.py --matrix ENV [ENV ...]

Prints, side by side and as ratios measured in this one run (medians of --runs repetitions, alternating
the two sides so that a noisy neighbour hits both):

0. load       importing the plugin after pytest, in a fresh interpreter (every pytest run in the env pays it);
1. overhead   the plugin's time for the motivating converging scenario (pytest setup + call + teardown of
              its test) vs a bare Keras script doing the same fit and predict — same data, epochs, seed;
2. early      the diverging motivating case with its early verdict vs the same fit for all its epochs;
   evidence   what the comparison's evidence costs: the rounding floor (--convergence-noise-floor) and the
              machine calibration taken around each scenario;
3. input      `fit: {input: dataset}` vs `fit` on numpy arrays, median seconds per epoch,
              for each tiny scenario shape;
4. suite      the shipped scenarios (scenarios/) with `-n 2` vs serial, wall time of whole pytest runs, as
              shipped (fit input auto: the checked fast path), and how many times each process imported
              TensorFlow; 4b: `-n 2` training in the workers vs in a child process each (--convergence-isolate,
              as the tox version envs run); 4c (--numpy-suite): with --convergence-input numpy (fit on the arrays
              everywhere, the default before the sentinel);
5. contention the per-epoch cost of one process alone vs two at once, per input path (what bounds -n 2);
6. versions   (only with --versions ENV_A ENV_B) the shipped suite as the tox version envs run it, in two
              environments, and the ratio: what Keras 3 costs the gate as a whole;
7. matrix     (only with --matrix ENV ...) the shipped suite in several version envs one after another vs as
              `tox run-parallel` runs them (as many at a time as CPUs), and how busy the CPUs were one after another
              (the bound on what running them together can gain).

Asserts nothing: the targets are read off the printed ratios (machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 500
LINEAR = """\
scenarios:
  - name: {name}
    data: {{x: {{arange: [1, {end}]}}, y: "0.5 * x"}}
    model: [{{Dense: {{units: 1}}}}]
    loss: mean_squared_error
    optimizer: {{name: sgd, learning_rate: {lr}}}
    epochs: {epochs}
    seed: 0
    expect: {expect}
"""
CONVERGES = LINEAR.format(
    name="converges", end=21, lr=1e-4, epochs=EPOCHS, expect="{predict: {x: 25, y: 12.5, abs_tol: 0.2}}"
)
DIVERGES = LINEAR.format(name="diverges", end=21, lr=0.01, epochs=EPOCHS, expect="{diverges: {within_epochs: 500}}")
# Tiny scenario shapes for the input-path comparison: (label, data, model, batch size).
SHAPES = (
    ("linear, 20 points, 1 batch", '{x: {arange: [1, 21]}, y: "0.5 * x"}', "[{Dense: {units: 1}}]", 32),
    ("linear, 20 points, batch 4", '{x: {arange: [1, 21]}, y: "0.5 * x"}', "[{Dense: {units: 1}}]", 4),
    (
        "MLP 32 tanh, 64 points, 2 batches",
        '{x: {linspace: [-3, 3, 64]}, y: "sin(x)"}',
        "[{Dense: {units: 32, activation: tanh}}, {Dense: {units: 1}}]",
        32,
    ),
)
SHAPE = """\
scenarios:
  - name: shape
    data: {data}
    model: {model}
    loss: mean_squared_error
    optimizer: {{name: adam, learning_rate: 0.001}}
    epochs: 200
    batch_size: {batch}
    seed: 0
    expect: {{converges: {{loss_below: 1.0e+9}}}}
"""


class Durations:
    """Collects each test's setup + call + teardown time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration


Timing = tuple[float, float]  # (wall seconds, CPU seconds of this process, all its threads)


# The bare script fits on numpy arrays: the plugin is timed doing the same fit (its default, auto, would train
# through the dataset path after a sentinel, which is section 3's subject, not overhead).
SAME_FIT = ("--convergence-input", "numpy")


def plugin_seconds(path: Path, options: tuple[str, ...] = SAME_FIT) -> Timing:
    """One in-process pytest run of the scenario file, fitting on numpy arrays as the bare script does (or with
    `options`, e.g. () for the defaults): the test's own wall time (setup, call, teardown), and the CPU time of the
    whole pytest run (collection and checks included). TensorFlow is imported before: net of the import."""
    durations = Durations()
    cpu = time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):  # pytest's own report would interleave with ours
        code = pytest.main(
            ["-q", "-p", "no:cacheprovider", *options, "--scenarios", str(path), "--rootdir", str(path.parent)],
            [durations],
        )
    if code != 0:
        raise SystemExit(f"pytest failed on {path} (exit {code})")
    (seconds,) = durations.seconds.values()
    return seconds, time.process_time() - cpu


def bare_keras(keras: Any, x: Any, y: Any, lr: float, epochs: int, predict: bool) -> Timing:
    """What a user's script does for the same scenario: seed, build, compile, fit on numpy, predict."""
    import numpy as np

    start, cpu = time.perf_counter(), time.process_time()
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mean_squared_error")
    model.fit(x, y, epochs=epochs, verbose=0)
    if predict:
        model.predict(np.array([[25.0]], dtype=np.float32), verbose=0)
    return time.perf_counter() - start, time.process_time() - cpu


def plugin_load_seconds(runs: int) -> dict[str, float]:
    """Median wall seconds of a fresh interpreter importing pytest, with and without the plugin (alternating)."""
    code = "import time; t = time.perf_counter(); import pytest{}; print(time.perf_counter() - t)"
    samples: dict[str, list[float]] = {"pytest": [], "plugin": []}
    for i in range(runs):
        for side in ("pytest", "plugin") if i % 2 == 0 else ("plugin", "pytest"):
            extra = ", pytest_convergence.plugin" if side == "plugin" else ""
            out = subprocess.run([sys.executable, "-c", code.format(extra)], capture_output=True, text=True, check=True)
            samples[side].append(float(out.stdout))
    return {side: statistics.median(values) for side, values in samples.items()}


def medians(runs: int, **sides: Callable[[], Timing]) -> dict[str, Timing]:
    """Median (wall, CPU) seconds of each side over `runs` rounds, the sides alternating within a round
    and their order reversed every other round (A B, B A, …), so neither side always goes first."""
    samples: dict[str, list[Timing]] = {name: [] for name in sides}
    order = list(sides)
    for round_ in range(runs):
        for name in order if round_ % 2 == 0 else reversed(order):
            samples[name].append(sides[name]())
    return {
        name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for name, values in samples.items()
    }


def row(label: str, a: float, b: float, unit: str = "s", scale: float = 1.0) -> str:
    return f"  {label:<44} {a * scale:>10.3f} {unit:<3} {b * scale:>10.3f} {unit:<3} {a / b:>7.3f}"


def section(title: str, left: str, right: str) -> None:
    print(f"\n{title}\n  {'':<44} {left:>14} {right:>14} {'ratio':>7}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each in-process measurement")
    parser.add_argument("--suite-runs", type=int, default=1, help="repetitions of the whole-suite runs")
    parser.add_argument("--skip-suite", action="store_true", help="leave out the whole-suite runs (sections 4, 5)")
    parser.add_argument("--suite-only", action="store_true", help="only the whole-suite runs (sections 4, 5)")
    parser.add_argument(
        "--numpy-suite", action="store_true", help="also time the suite with --convergence-input numpy (section 4c)"
    )
    parser.add_argument(
        "--versions",
        nargs=2,
        metavar=("ENV_A", "ENV_B"),
        type=Path,
        help="only section 6: the shipped suite as the tox version envs run it, in two environments' pytest "
        "(e.g. .tox/tf215 .tox/tf221), alternating, and their ratio",
    )
    parser.add_argument(
        "--matrix",
        nargs="+",
        metavar="ENV",
        type=Path,
        help="only section 7: the shipped suite in each of these version envs (e.g. .tox/tf215 .tox/tf221 "
        ".tox/tf221-legacy) one after another, then as tox run-parallel runs them",
    )
    parser.add_argument(
        "--earlier-suite",
        type=Path,
        metavar="CHECKOUT",
        help="with --versions: also time ENV_B on the scenarios/ of CHECKOUT (e.g. a git worktree of an earlier "
        "commit) against today's, in the same run",
    )
    args = parser.parse_args()
    if args.matrix:
        matrix(args.matrix)
        return 0
    if args.versions:
        env_a, env_b = args.versions
        versions(env_a, env_b, runs=args.suite_runs, earlier=args.earlier_suite)
        return 0
    if args.suite_only:
        print(f"pytest-convergence speed benchmark, whole-suite sections — {time.strftime('%Y-%m-%d')}")
        suite(args.suite_runs, args.numpy_suite)
        return 0

    load = plugin_load_seconds(max(args.runs, 5))
    from pytest_convergence import keras as keras_side
    from pytest_convergence import timing
    from pytest_convergence.scenario import load_file

    start = time.perf_counter()
    _tf, keras = keras_side.frameworks()
    import_seconds = time.perf_counter() - start
    v = keras_side.versions()
    print(f"pytest-convergence speed benchmark — {time.strftime('%Y-%m-%d')}")
    print(
        f"TF {v['tensorflow']}, {v['keras_package']} {v['keras']}, Python {platform.python_version()}, "
        f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs; TensorFlow import {import_seconds:.1f} s"
    )
    print(f"medians of {args.runs} runs; ratio = left / right")
    section("0. loading the plugin (every pytest run in the env pays it): a fresh interpreter", "+ plugin", "pytest")
    print(row("import pytest[, pytest_convergence.plugin]", load["plugin"], load["pytest"], "ms", 1000))
    print(f"  the plugin adds {(load['plugin'] - load['pytest']) * 1000:.0f} ms (target ≤ 30 ms)")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        converges, diverges = folder / "converges.yaml", folder / "diverges.yaml"
        converges.write_text(CONVERGES)
        diverges.write_text(DIVERGES)
        (scenario,) = load_file(converges)
        x, y = scenario.x, scenario.y
        plugin_seconds(converges)  # warm-up: first compile, first tf.data use
        bare_keras(keras, x, y, 1e-4, EPOCHS, predict=True)

        section(
            f"1. plugin overhead (linear SGD lr 1e-4, 20 points, {EPOCHS} epochs, predict f(25))",
            "plugin",
            "bare Keras",
        )
        got = medians(
            args.runs,
            plugin=lambda: plugin_seconds(converges),
            bare=lambda: bare_keras(keras, x, y, 1e-4, EPOCHS, predict=True),
        )
        print(row("wall: test time vs script time", got["plugin"][0], got["bare"][0]))
        print(row("CPU: whole pytest run vs script", got["plugin"][1], got["bare"][1]))
        print(
            f"  overhead {got['plugin'][0] / got['bare'][0] - 1:+.1%} wall, "
            f"{got['plugin'][1] / got['bare'][1] - 1:+.1%} CPU (target ≤ +5%)"
        )

        section(
            f"2. early verdict (linear SGD lr 0.01, 20 points, diverges, {EPOCHS} epochs planned)",
            "plugin",
            f"all {EPOCHS}",
        )
        (div,) = load_file(diverges)
        stopped_at = keras_side.run(div)[0].epochs_run
        got = medians(
            args.runs,
            plugin=lambda: plugin_seconds(diverges),
            full=lambda: bare_keras(keras, div.x, div.y, 0.01, EPOCHS, predict=False),
        )
        print(row(f"verdict at epoch {stopped_at} vs every epoch", got["plugin"][0], got["full"][0]))
        print(f"  the verdict costs {got['plugin'][0] / got['full'][0]:.1%} of the full run (target ≤ 15%)")
        # the defaults (fit input auto): on Keras 3 the sentinel's 21 epochs of fit on the arrays beside the seed's
        # run on the fast path; on Keras 2 fit on the arrays, as above
        got = medians(
            args.runs,
            plugin=lambda: plugin_seconds(diverges, ()),
            full=lambda: bare_keras(keras, div.x, div.y, 0.01, EPOCHS, predict=False),
        )
        print(row("default settings (auto) vs every epoch", got["plugin"][0], got["full"][0]))
        print(
            f"  with the defaults the verdict costs {got['plugin'][0] / got['full'][0]:.1%} of the bare full run, "
            "net of the TensorFlow import (target ≤ 25%)"
        )

        section(
            f"2b. comparison evidence (linear SGD lr 1e-4, 20 points, {EPOCHS} epochs, numpy input)",
            "with",
            "without",
        )

        def train(noise_floor: bool) -> Timing:
            start = time.perf_counter()
            keras_side.run(scenario, noise_floor=noise_floor)
            seconds = time.perf_counter() - start
            return seconds, seconds

        got = medians(args.runs, floor=lambda: train(True), plain=lambda: train(False))
        print(row("rounding floor (one more training per seed)", got["floor"][0], got["plain"][0]))

        def calibrate() -> float:
            start = time.perf_counter()
            timing.calibrate()
            return time.perf_counter() - start

        calibration = statistics.median(calibrate() for _ in range(args.runs))
        print(
            f"  calibration before and after each scenario: {2 * calibration * 1000:.0f} ms per scenario "
            f"({2 * calibration / got['plain'][0]:.1%} of this one)"
        )

        section("3. input path: seconds per epoch (median epoch, 200 epochs, Adam)", "numpy", "dataset")
        for label, data, model, batch in SHAPES:
            path = folder / "shape.yaml"
            path.write_text(SHAPE.format(data=data, model=model, batch=batch))
            (shape,) = load_file(path)

            curves: dict[str, list[float]] = {}

            def per_epoch(fit_input: str, shape: Any = shape, curves: dict[str, list[float]] = curves) -> Timing:
                (seed_run,) = keras_side.run(shape, fit_input=fit_input)
                curves[fit_input] = seed_run.losses
                median = statistics.median(seed_run.epoch_seconds[1:])  # the first epoch traces the step
                return median, median

            per_epoch("dataset")
            got = medians(args.runs, numpy=lambda: per_epoch("numpy"), dataset=lambda: per_epoch("dataset"))
            same = "the same curve" if curves["numpy"] == curves["dataset"] else "OTHER CURVES"
            print(row(label, got["numpy"][0], got["dataset"][0], "ms", 1000) + f"  ({same}, shuffled)")
        print("  target: dataset ≥ 10× faster per epoch than numpy on Keras 3, every curve the same")

    if not args.skip_suite:
        suite(args.suite_runs, args.numpy_suite)
    return 0


# Loaded into each pytest process of the suite runs (controller and workers): how many times did that process
# import TensorFlow (cache misses of keras_side.frameworks; 0 where it never did)?
COUNTER = """\
import os

def pytest_sessionfinish(session):
    from pytest_convergence import keras as keras_side
    with open(os.path.join(os.environ["BENCH_IMPORTS_DIR"], str(os.getpid())), "w") as fh:
        fh.write(str(keras_side.frameworks.cache_info().misses))
"""


def suite(runs: int, numpy_too: bool) -> None:
    """The shipped scenarios as whole pytest runs in subprocesses (each imports TensorFlow itself): serial vs -n 2
    as shipped (fit input auto); -n 2 in-process vs -n 2 with training isolated in children; and with
    `numpy_too`, serial vs -n 2 with --convergence-input numpy (fit on the arrays everywhere)."""
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "bench_imports"]

    def timed(extra: list[str]) -> Timing:
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "bench_imports.py").write_text(COUNTER)
            counts = Path(tmp, "counts")
            counts.mkdir()
            records = Path(tmp, "records.json")
            path = os.pathsep.join(p for p in (tmp, os.environ.get("PYTHONPATH")) if p)
            env = {**os.environ, "PYTHONPATH": path, "BENCH_IMPORTS_DIR": str(counts)}
            start = time.perf_counter()
            out = subprocess.run(
                [*base, *extra, "--scenarios", "scenarios/", "--convergence-json", str(records)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - start
            imports = sorted(int(f.read_text()) for f in counts.iterdir())
            document = json.loads(records.read_text()) if records.exists() else {"scenarios": []}
        children = {r["runtime"]["pid"] for r in document["scenarios"] if r.get("runtime", {}).get("isolate")}
        tail = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-300:]
        print(f"    {' '.join(extra) or 'serial':<40} {seconds:7.1f} s  {tail}")
        print(f"    {'':<40} TensorFlow imports per pytest process: {imports}", end="")
        print(f"; training children, one import each: {len(children)}" if children else "")
        return seconds, seconds

    isolated = ["-n", "2", "--convergence-isolate", "50"]  # as the tox version envs run (-n auto on 2 CPUs)
    title = f"4. shipped suite (scenarios/) as shipped: wall time of a whole pytest run, median of {runs}"
    section(title, "serial", "-n 2")
    got = medians(runs, serial=lambda: timed([]), parallel=lambda: timed(["-n", "2"]))
    print(row("serial vs -n 2", got["serial"][0], got["parallel"][0]))
    print(f"  -n 2 is {got['serial'][0] / got['parallel'][0]:.2f}× faster (target ≥ 1.6×)")
    section(
        f"4b. isolation: -n 2 training in the workers vs in a child each (--convergence-isolate 50), median of {runs}",
        "in-process",
        "isolated",
    )
    got = medians(runs, inproc=lambda: timed(["-n", "2"]), isolated=lambda: timed(isolated))
    print(row("-n 2 vs -n 2 --convergence-isolate 50", got["inproc"][0], got["isolated"][0]))
    print(f"  isolation costs {(got['isolated'][0] / got['inproc'][0] - 1) * 100:+.0f}% wall")
    if numpy_too:
        numpy = ["--convergence-input", "numpy"]
        section(f"4c. shipped suite with {' '.join(numpy)}, median of {runs}", "serial", "-n 2")
        got = medians(runs, serial=lambda: timed(numpy), parallel=lambda: timed([*numpy, "-n", "2"]))
        print(row("serial vs -n 2", got["serial"][0], got["parallel"][0]))
        print(f"  -n 2 is {got['serial'][0] / got['parallel'][0]:.2f}× faster")
    concurrency()


# The shipped suite as tox.ini's [matrix] commands run it in each version env (without the results file).
MATRIX_RUN = ["-m", "pytest", "--scenarios", "scenarios/", "-n", "auto", "--convergence-noise-floor"]
MATRIX_RUN += ["--convergence-isolate", "50", "-q", "-p", "no:cacheprovider"]


def env_command(env: Path, extra: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command line and environment variables of a version env's run, as tox sets them (a -legacy env trains
    tf_keras)."""
    variables = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
    if env.name.endswith("-legacy"):
        variables["TF_USE_LEGACY_KERAS"] = "1"
    return [str(env.resolve() / "bin" / "python"), *MATRIX_RUN, *extra], variables


def versions(env_a: Path, env_b: Path, runs: int, earlier: Path | None = None) -> None:
    """Section 6: the shipped suite as each tox version env runs it (-n auto, rounding floors, isolation, default
    input), wall time in each environment, alternating; the ratio is the Keras 3 cost of the gate as a whole."""

    def timed(env: Path, only: list[str], cwd: Path = ROOT) -> Timing:
        started = time.perf_counter()
        command, variables = env_command(env, only)
        done = subprocess.run(command, cwd=cwd, env=variables, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-200:]
        print(f"    {env.name:<12} {' '.join(only) or 'whole suite':<28} {seconds:7.1f} s  {tail}")
        return seconds, seconds

    # the suite before the real models and classic failures joined it: what those cost on each version
    without_new = ["-k", "not real_models and not classic_failures"]
    totals: dict[str, dict[str, float]] = {}
    for label, only in (("as shipped", []), ("without real_models.yaml and classic_failures.yaml", without_new)):
        section(f"6. shipped suite by version, {label}: wall time, median of {runs}", env_a.name, env_b.name)
        got = medians(runs, a=lambda o=only: timed(env_a, o), b=lambda o=only: timed(env_b, o))
        totals[label] = {"a": got["a"][0], "b": got["b"][0]}
        print(row(f"{env_a.name} vs {env_b.name}", got["a"][0], got["b"][0]))
        print(f"  {env_b.name} takes {got['b'][0] / got['a'][0]:.2f}× {env_a.name} (target ≤ 1.5×)")
    whole, before = totals["as shipped"]["b"], totals["without real_models.yaml and classic_failures.yaml"]["b"]
    print(f"  on {env_b.name} the whole suite takes {whole / before:.2f}× the suite without the two new files")
    if earlier is not None:  # a checkout of an earlier commit: its scenarios/ as they were, with this plugin
        section(f"6. shipped suite on {env_b.name}: now vs {earlier}, median of {runs}", "now", "earlier")
        got = medians(runs, a=lambda: timed(env_b, []), b=lambda: timed(env_b, [], cwd=earlier))
        print(row("now vs earlier", got["a"][0], got["b"][0]))
        print(f"  the suite now takes {got['a'][0] / got['b'][0]:.2f}× the earlier one on {env_b.name} (target ≤ 1.5×)")


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks (/proc/stat): what else runs counts too."""
    with open("/proc/stat") as fh:
        ticks = [int(v) for v in fh.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def matrix(envs: list[Path]) -> None:
    """Section 7: the version envs' suite runs one after another vs as `tox run-parallel` runs them (as many at a
    time as there are CPUs, its default `-p auto`), and how busy the machine's CPUs were while they ran one after
    another. In parallel they share the same CPUs: on a machine the sequential runs already keep busy, together they
    cannot take much less than that busy share."""
    names = ", ".join(e.name for e in envs)
    section(f"7. the suite in {names}: one after another vs tox run-parallel's way", "in turn", "parallel")

    logs = tempfile.TemporaryDirectory()

    def start(env: Path) -> subprocess.Popen[bytes]:
        command, variables = env_command(env, [])
        with open(Path(logs.name, env.name), "w") as log:  # a file, not a pipe: a full pipe would block the run
            return subprocess.Popen(command, cwd=ROOT, env=variables, stdout=log, stderr=subprocess.STDOUT)

    def tail(env: Path, code: int, seconds: float | None) -> None:
        out = Path(logs.name, env.name).read_text().strip().splitlines()
        took = f"{seconds:7.1f} s" if seconds is not None else " " * 9
        print(f"    {env.name:<16} {took}  {out[-1] if out else f'exit {code}'}")

    busy0, total0 = cpu_ticks()
    started = time.perf_counter()
    for env in envs:
        one = time.perf_counter()
        code = start(env).wait()
        tail(env, code, time.perf_counter() - one)
    in_turn = time.perf_counter() - started
    busy1, total1 = cpu_ticks()
    busy = (busy1 - busy0) / max(1, total1 - total0)
    cpus = len(os.sched_getaffinity(0))
    jobs = min(len(envs), cpus)  # tox run-parallel's default, -p auto: as many envs at once as CPUs
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        procs = list(pool.map(lambda env: (env, start(env).wait()), envs))
    at_once = time.perf_counter() - started
    print(f"    {jobs} at a time      {at_once:7.1f} s")
    for env, code in procs:
        tail(env, code, None)
    logs.cleanup()
    print(row("one after another vs in parallel", in_turn, at_once))
    print(f"  {jobs} at a time take {at_once / in_turn:.2f}× one after another (target ≤ 0.6×)")
    print(
        f"  one after another, the machine's {cpus} CPUs were {busy:.0%} busy: in parallel, the same CPU work "
        f"cannot take less than about {busy:.2f}× that time"
    )


# One process's median seconds per epoch for the tiny linear fit, on the numpy or the dataset path.
PROBE = """\
import os, statistics, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from pytest_convergence import keras as keras_side
tf, keras = keras_side.frameworks()
keras.utils.set_random_seed(0)
import numpy as np
x = np.arange(1, 21, dtype=np.float32).reshape(-1, 1); y = 0.5 * x
model = keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e-4), loss="mean_squared_error")
times = []
class Clock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): times.append(time.perf_counter() - self.t)
if sys.argv[1] == "numpy":
    model.fit(x, y, epochs=150, verbose=0, callbacks=[Clock()])
else:
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(20, seed=0).batch(32).repeat()
    model.fit(data, epochs=1500, steps_per_epoch=1, shuffle=False, verbose=0, callbacks=[Clock()])
print(statistics.median(times[1:]))
"""


def concurrency() -> None:
    """Why -n 2 gains little on the numpy path here: the per-epoch cost of one process alone vs two at once.
    Each process uses one TensorFlow thread, but Keras 3's numpy path hands every batch between threads
    (a tf.data pipeline per epoch), so it waits on the scheduler when the other core is busy."""
    section("5. per-epoch cost, one process alone vs two at once (tiny linear fit)", "alone", "two at once")

    def probe(fit_input: str, together: int) -> float:
        env = {**os.environ, "PYTEST_XDIST_WORKER_COUNT": str(together)}  # one TF thread each, as under xdist
        quiet = subprocess.DEVNULL  # TensorFlow's start-up notices
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", PROBE, fit_input], env=env, stdout=subprocess.PIPE, stderr=quiet, text=True
            )
            for _ in range(together)
        ]
        return statistics.median(float(p.communicate()[0]) for p in procs)

    for fit_input in ("numpy", "dataset"):
        alone, both = probe(fit_input, 1), probe(fit_input, 2)
        print(row(f"{fit_input}: ms per epoch", alone, both, "ms", 1000))


if __name__ == "__main__":
    sys.exit(main())
