"""Command-line options and ini keys, resolved once into a frozen Settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import limits as limits_mod
from .choices import DEFAULT_FAIL_ON, DTYPE_POLICIES, FIT_INPUTS, CountableKind, FitInput, fit_input, parse_fail_on
from .limits import DEFAULTS, Limits

SCENARIOS_HELP = (
    "Collect YAML training scenarios from PATH (a .yaml/.yml file, or a directory searched recursively). "
    "Repeatable. With no other paths on the command line, only the scenarios are collected."
)
INI_SCENARIOS_HELP = "Scenario files or directories (relative to the ini file) that plain `pytest` collects too."
JSON_HELP = "Write the results record (loss curves, predictions, timings, versions) of this run to PATH as JSON."
RECORD_HELP = (
    "Store this run's results as the baseline in DIR (DIR/convergence-baseline.json), for --convergence-baseline."
)
BASELINE_HELP = (
    "Compare this run with the baseline stored in DIR by --convergence-record (e.g. the pinned TensorFlow's); "
    "changes that count (--convergence-fail-on) fail the run, unless an accepted-changes file accepts them."
)
BASELINE_FILE = "convergence-baseline.json"
ACCEPTED_HELP = (
    "Known changes, accepted in a reviewed YAML file (accepted: a list of {kind, scenarios, where, reason, until}): "
    "against --convergence-baseline they show as accepted and do not fail the run. The ini key is relative to the "
    "ini file; `pytest-convergence compare` and `gate` read the same key."
)
FAIL_ON_HELP = (
    "Which changes against --convergence-baseline fail the run: comma-separated kinds from outcome, error, shift, "
    f"slowdown, drift, or 'none'. Default: {','.join(DEFAULT_FAIL_ON)} (as `pytest-convergence compare`)."
)
FLOOR_HELP = (
    "Measure each seed's rounding floor: train it a second time from initial weights moved by one ulp and keep "
    "how far the loss curve moved, so that comparisons tell a real curve change from rounding chaos. Costs one "
    "more training per seed. On by default with --convergence-record."
)
NO_FACTORIES_HELP = (
    "Refuse model factories ('module:function' in a scenario's model): scenario files then can run no project "
    "code, for CI on untrusted pull requests."
)
SEEDS_HELP = (
    "N (a whole number, 1 to 1000). Train every scenario on at least N seeds (its own seeds, then the smallest "
    "unused ones), for comparison runs whose seed statistics need more seeds than the scenario file gives. The pass "
    "rate is judged as written. START:N trains only the seeds from position START of that list (the seeds that "
    "extend an earlier run of START, as `pytest-convergence gate` adds them)."
)
DEFAULT_TIMEOUT_S = 3600.0  # a safety net that no real suite meets by accident: epochs: 1000000 is 12 hours on Keras 3
# The ini twins of --convergence-timeout and --convergence-seeds are strings that the plugin reads, not pytest's typed
# keys (int, float): pytest refuses a bad typed value with "could not convert string to float: 'soon'", naming
# neither the key nor the file. Their help says the type first instead.
TIMEOUT_HELP = (
    "SECONDS (a number; 0 or none: no limit). Time limit for training one scenario (all its seeds), and the ceiling "
    "of a scenario's own timeout_s (which may lower it, never raise it). Past it, training stops after the current "
    "batch and the scenario fails. Default: 3600, checked at the end of each epoch."
)

INPUT_HELP = (
    "How scenarios without fit.input feed model.fit: auto (default: fit's own batches, in fit's order, always — "
    "through the fast path, the same batches made once by Keras's own array adapter and many times faster per epoch "
    "on Keras 3, where a sentinel shows for the scenario that every epoch equals fit on the numpy arrays; else, and "
    "where it would save nothing, fit on the arrays), numpy (the arrays, as user code does) or dataset (the fast "
    "path, unchecked)."
)


DTYPE_POLICY_HELP = (
    "For scenarios without dtype_policy: the Keras dtype policy to build and train under (float32, the default; "
    "mixed_float16; float64). Recorded per scenario: run the suite twice and compare the results files to see the "
    "same scenarios under two settings side by side."
)
JIT_HELP = (
    "For scenarios without jit_compile: on or off, XLA for the train step (default: Keras's own: off on Keras 2; "
    "'auto' on Keras 3, which is off under the op determinism this plugin turns on, and Keras 3 refuses on too). "
    "Recorded per scenario and, as Keras resolved it, per seed."
)

ISOLATE_HELP = (
    "N (a whole number; 0: off, the default). Train in a child process that is replaced after N scenarios or above "
    "2 GiB resident: a native crash or hang fails one scenario instead of the run, the time limit is hard "
    "(the child is killed past it), and memory stays flat over any number of scenarios. Costs one TensorFlow import "
    "per child."
)

RAY_HELP = (
    "ADDRESS: train each scenario as a task on a Ray cluster (the ray extra: pip install 'pytest-convergence[ray]'): "
    "local (start Ray on this machine), auto (the cluster this machine belongs to) or a cluster's address. Every task "
    "is submitted before the first test runs and retried on another node if its node dies; this process judges the "
    "results and never imports TensorFlow. Not with -n (xdist)."
)

RAY_PIP_HELP = (
    "REQUIREMENT (repeatable): with --convergence-ray, the workers train in a Ray runtime environment with these "
    "installed (by uv, on top of the cluster's Python; cached per set of requirements), e.g. tensorflow-cpu==2.15.1: "
    "one version of a matrix (pytest-convergence matrix runs them all)."
)

PLOTS_HELP = (
    "Write one PNG per scenario into DIR: loss per epoch on a log scale, one line per seed, non-finite epochs "
    "marked, the expectation's threshold drawn. Needs matplotlib (pip install matplotlib)."
)

SCENARIOS_KEY = pytest.StashKey["Settings"]()
SUFFIXES = (".yaml", ".yml")  # what a scenario file is named


def is_yaml(name: str | Path) -> bool:
    return str(name).endswith(SUFFIXES)


@dataclass(frozen=True)
class Settings:
    scenario_paths: tuple[Path, ...]  # absolute; where scenario files are collected from
    cli_paths: tuple[Path, ...]  # the subset given with --scenarios (these steer collection)
    json_path: Path | None
    record_dir: Path | None = None
    baseline_dir: Path | None = None
    accepted_path: Path | None = None  # --convergence-accepted / convergence_accepted
    timeout_s: float | None = DEFAULT_TIMEOUT_S
    timeout_default: bool = True  # the limit is the default one: checked per epoch, not per batch (cheaper)
    fit_input: FitInput = "auto"  # for scenarios that do not say (fit.input)
    plots_dir: Path | None = None
    fail_on: tuple[CountableKind, ...] = DEFAULT_FAIL_ON  # what counts against --convergence-baseline
    noise_floor: bool = False  # measure each seed's rounding floor
    min_seeds: int | None = None  # --convergence-seeds [START:]N
    seed_from: int = 0  # its START
    factories: bool = True  # --convergence-no-factories turns them off
    isolate: int = 0  # --convergence-isolate: scenarios per training child; 0: train in this process
    dtype_policy: str | None = None  # --convergence-dtype-policy, for scenarios without one
    jit_compile: bool | None = None  # --convergence-jit-compile on|off, for scenarios without one
    limits: Limits = DEFAULTS  # --convergence-limit NAME=VALUE / convergence_limits: caps no scenario can raise
    ray: str | None = None  # --convergence-ray ADDRESS|auto|local: train on a Ray cluster
    ray_pip: tuple[str, ...] = ()  # --convergence-ray-pip: the requirements of the workers' runtime environment

    @property
    def gathers_records(self) -> bool:
        return any((self.json_path, self.record_dir, self.baseline_dir))

    def is_scenario_file(self, path: Path) -> bool:
        if not is_yaml(path):
            return False
        return any(path == p or p in path.parents for p in self.scenario_paths)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("convergence", "training scenarios (pytest-convergence)")
    group.addoption("--scenarios", action="append", default=[], metavar="PATH", help=SCENARIOS_HELP)
    group.addoption("--convergence-json", default=None, metavar="PATH", help=JSON_HELP)
    group.addoption("--convergence-record", default=None, metavar="DIR", help=RECORD_HELP)
    group.addoption("--convergence-baseline", default=None, metavar="DIR", help=BASELINE_HELP)
    group.addoption("--convergence-accepted", default=None, metavar="FILE", help=ACCEPTED_HELP)
    group.addoption("--convergence-timeout", default=None, metavar="SECONDS", help=TIMEOUT_HELP)
    group.addoption("--convergence-plots", default=None, metavar="DIR", help=PLOTS_HELP)
    group.addoption("--convergence-input", default=None, choices=FIT_INPUTS, help=INPUT_HELP)
    group.addoption("--convergence-fail-on", default=None, metavar="KINDS", help=FAIL_ON_HELP)
    group.addoption("--convergence-noise-floor", action="store_true", default=None, help=FLOOR_HELP)
    group.addoption("--convergence-seeds", default=None, metavar="N", help=SEEDS_HELP)
    group.addoption("--convergence-no-factories", action="store_true", default=None, help=NO_FACTORIES_HELP)
    group.addoption("--convergence-isolate", default=None, metavar="N", help=ISOLATE_HELP)
    group.addoption(
        "--convergence-dtype-policy",
        default=None,
        choices=DTYPE_POLICIES,
        help=DTYPE_POLICY_HELP,
    )
    group.addoption("--convergence-jit-compile", default=None, choices=("on", "off"), help=JIT_HELP)
    group.addoption("--convergence-limit", action="append", default=[], metavar="NAME=VALUE", help=limits_mod.HELP)
    group.addoption("--convergence-ray", default=None, metavar="ADDRESS", help=RAY_HELP)
    group.addoption("--convergence-ray-pip", action="append", default=[], metavar="REQUIREMENT", help=RAY_PIP_HELP)
    parser.addini("convergence_scenarios", INI_SCENARIOS_HELP, type="paths", default=[])
    parser.addini("convergence_accepted", ACCEPTED_HELP, default=None)
    parser.addini("convergence_timeout", TIMEOUT_HELP, default=None)
    parser.addini("convergence_input", INPUT_HELP, default=None)
    parser.addini("convergence_fail_on", FAIL_ON_HELP, default=None)
    parser.addini("convergence_noise_floor", FLOOR_HELP, type="bool", default=False)
    parser.addini("convergence_seeds", SEEDS_HELP, default=None)
    parser.addini("convergence_no_factories", NO_FACTORIES_HELP, type="bool", default=False)
    parser.addini("convergence_isolate", ISOLATE_HELP, default=None)
    parser.addini("convergence_limits", limits_mod.HELP, type="linelist", default=[])
    parser.addini("convergence_ray", RAY_HELP, default=None)
    parser.addini("convergence_ray_pip", RAY_PIP_HELP, type="linelist", default=[])


def resolve(config: pytest.Config) -> Settings:
    """Read and check the options once. A path that does not exist is a usage error, named with its source."""
    invocation = config.invocation_params.dir
    cli = tuple((invocation / p).resolve() for p in config.getoption("scenarios"))
    for given, path in zip(config.getoption("scenarios"), cli, strict=False):
        if not path.exists():
            raise pytest.UsageError(f"--scenarios {given}: no such file or directory")
    ini = tuple(Path(p).resolve() for p in config.getini("convergence_scenarios"))
    for path in ini:
        if not path.exists():
            raise pytest.UsageError(f"convergence_scenarios (in {config.inipath}): no such file or directory: {path}")
    keys = ("convergence_json", "convergence_record", "convergence_baseline", "convergence_plots")
    given = {key: config.getoption(key) for key in keys}
    if given["convergence_plots"]:
        from . import plots

        if not plots.available():
            raise pytest.UsageError(plots.INSTALL_HINT)
    paths = {key: (invocation / value).resolve() if value else None for key, value in given.items()}
    timeout_s, timeout_default = _timeout(config)
    seeds = _seeds(config)
    return Settings(
        timeout_s=timeout_s,
        timeout_default=timeout_default,
        fit_input=_fit_input(config),
        dtype_policy=config.getoption("convergence_dtype_policy"),
        jit_compile={"on": True, "off": False, None: None}[config.getoption("convergence_jit_compile")],
        scenario_paths=cli + ini,
        cli_paths=cli,
        json_path=paths["convergence_json"],
        record_dir=paths["convergence_record"],
        baseline_dir=paths["convergence_baseline"],
        accepted_path=_accepted(config, paths["convergence_baseline"] is not None),
        plots_dir=paths["convergence_plots"],
        fail_on=_fail_on(config),
        noise_floor=bool(config.getoption("convergence_noise_floor") or config.getini("convergence_noise_floor"))
        or paths["convergence_record"] is not None,
        min_seeds=seeds[1],
        seed_from=seeds[0],
        factories=not (config.getoption("convergence_no_factories") or config.getini("convergence_no_factories")),
        isolate=_isolate(config),
        limits=_limits(config),
        ray=_ray(config),
        ray_pip=tuple(config.getoption("convergence_ray_pip") or config.getini("convergence_ray_pip")),
    )


def _ray(config: pytest.Config) -> str | None:
    """--convergence-ray, else the ini key; None: no Ray (nothing of it is imported)."""
    value, source = _given(config, "convergence-ray")
    if value in (None, "", "none"):
        return None
    if config.getoption("numprocesses", None) or hasattr(config, "workerinput"):
        raise pytest.UsageError(f"{source}: Ray runs the scenarios' training; give it without -n (xdist)")
    if _isolate(config):
        raise pytest.UsageError(
            f"{source}: Ray workers train the scenarios; give it without --convergence-isolate (the isolation child "
            "is the other way to train outside the pytest process)"
        )
    return str(value)


def _limits(config: pytest.Config) -> Limits:
    """The ini key's caps, then the command line's on top (a NAME given on both: the command line's)."""
    try:
        ini = limits_mod.parse(config.getini("convergence_limits"), f"convergence_limits in {config.inipath}")
        cli = config.getoption("convergence_limit")
        limits_mod.parse(cli, "--convergence-limit")  # its own errors, named as its own
        lines = [f"{k}={v}" for k, v in ini.to_plain().items()] + list(cli)
        return limits_mod.parse(lines, "--convergence-limit")
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def _accepted(config: pytest.Config, comparing: bool) -> Path | None:
    """The accepted-changes file, checked now where a baseline comparison will read it (a usage error naming the
    file, line and key of every problem); None where none is named, or 'none'."""
    given = config.getoption("convergence_accepted")
    path: Path
    if given is not None:
        path, source = config.invocation_params.dir / str(given), f"--convergence-accepted {given}"
    else:
        value = config.getini("convergence_accepted")
        if not value:
            return None
        base = config.inipath.parent if config.inipath else config.rootpath
        path, source = base / str(value).strip(), f"convergence_accepted (in {config.inipath})"
    if path.name.lower() == "none":
        return None
    if not path.is_file():
        raise pytest.UsageError(f"{source}: no such file: {path}")
    if comparing:
        from .accepted import read
        from .errors import ScenarioError

        try:
            read(path)
        except ScenarioError as exc:
            raise pytest.UsageError(f"{source}: not usable:\n{exc}") from None
    return path.resolve()


def _given(config: pytest.Config, name: str) -> tuple[Any, str]:
    """The value of --NAME, else of the ini key NAME (with _), and where it came from for messages."""
    key = name.replace("-", "_")
    cli = config.getoption(key)
    if cli is not None:
        return cli, f"--{name}"
    return config.getini(key), f"{key} in {config.inipath}"


def _fail_on(config: pytest.Config) -> tuple[CountableKind, ...]:
    value, source = _given(config, "convergence-fail-on")
    if value in (None, ""):
        return DEFAULT_FAIL_ON
    try:
        return parse_fail_on(str(value))
    except ValueError as exc:
        raise pytest.UsageError(f"{source}: {exc}") from None


def _isolate(config: pytest.Config) -> int:
    value, source = _given(config, "convergence-isolate")
    if value in (None, ""):
        return 0
    try:
        count = int(str(value))
    except ValueError:
        count = -1
    if count < 0:
        raise pytest.UsageError(f"{source}: expected a number of scenarios per training child (0: off), got {value!r}")
    return count


def _seeds(config: pytest.Config) -> tuple[int, int | None]:
    """(START, N) of --convergence-seeds [START:]N; (0, None) when not given."""
    value, source = _given(config, "convergence-seeds")
    if value in (None, ""):
        return 0, None
    start_text, _, count_text = str(value).rpartition(":")
    try:
        count, start = int(count_text), int(start_text or "0")
    except ValueError:
        count, start = 0, 0
    if not 1 <= count <= 1000 or not 0 <= start < count:
        raise pytest.UsageError(
            f"{source}: expected a number of seeds from 1 to 1000 (N), or the seeds from position START of N "
            f"(START:N, 0 <= START < N), got {value!r}"
        )
    return start, count


def _timeout(config: pytest.Config) -> tuple[float | None, bool]:
    """(--convergence-timeout, else the ini key, else the default; whether it is the default). 0 or none: no limit.
    A bad value names where it came from."""
    value, source = _given(config, "convergence-timeout")
    if value in (None, ""):
        return DEFAULT_TIMEOUT_S, True
    if str(value).strip().lower() in ("0", "none"):
        return None, False
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0:
        raise pytest.UsageError(f"{source}: expected a number of seconds > 0, or 0 / none for no limit; got {value!r}")
    return seconds, False


def _fit_input(config: pytest.Config) -> FitInput:
    """--convergence-input (argparse checks its choices), else the ini key, else auto."""
    cli, ini = config.getoption("convergence_input"), config.getini("convergence_input")
    if cli is not None:
        return fit_input(str(cli))
    if ini in (None, ""):
        return "auto"
    try:
        return fit_input(str(ini))
    except ValueError as exc:
        raise pytest.UsageError(f"convergence_input in {config.inipath}: {exc}") from None


def steer_collection(config: pytest.Config, settings: Settings) -> None:
    """Make `pytest --scenarios PATH` collect PATH: alone when no other paths were given (as
    `pytest PATH` would), or beside the paths given."""
    if not settings.cli_paths:
        return
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args[:] = [str(p) for p in settings.cli_paths]
        # the paths now come from the command line (--scenarios), not from testpaths: the header must not say so
        config.args_source = pytest.Config.ArgsSource.ARGS
        return
    invocation = config.invocation_params.dir
    given = [(invocation / arg.split("::")[0]).resolve() for arg in config.args]
    for path in settings.cli_paths:
        if not any(path == g or g in path.parents for g in given):
            config.args.append(str(path))
