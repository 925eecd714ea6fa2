"""`pytest-convergence` / `python -m pytest_convergence`: compare results files; explain a scenario;
check a tox env's versions; print the JSON Schemas of scenario and results files; bisect to the build that changed.

Exit codes of `compare` and `gate`: 0 nothing that counts changed, 1 a finding counts (blocks), 2 bad input.
Exit codes of `explain`: 0 the scenario passes, 1 it fails, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import choices, comparison_text, results
from . import compare as cmp
from . import explain as explain_mod
from .errors import InputError, ScenarioError
from .record import Document
from .text import printable

if TYPE_CHECKING:
    from .accepted import Accepted

EXIT_BAD_INPUT = 2
ACCEPTED_HELP = (
    "known changes, accepted in a reviewed YAML file (accepted: [{kind, scenarios, where, reason, until}]): they show "
    "as accepted and do not count; default: the ini key convergence_accepted; 'none': no file"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except InputError as exc:
        print(f"pytest-convergence: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return code


DESCRIPTION = (
    "Compare results files of several TensorFlow/Keras versions, bisect to the build that changed, explain a scenario, "
    "check a tox env's versions, print JSON Schemas. "
    "Scenarios themselves run under pytest: pytest --scenarios scenarios/"
)


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="pytest-convergence", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    c = sub.add_parser(
        "compare",
        help="compare results files of several TensorFlow/Keras versions",
        description="Grid of scenarios × versions with the changes against a baseline version. "
        "Exit 0: nothing that counts changed; 1: a finding counts (blocks); 2: bad input.",
        epilog="kinds of change:\n" + "\n".join(f"  {kind:<9} {text}" for kind, text in choices.KINDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("files", nargs="+", type=Path, metavar="RESULTS.json", help="files written by --convergence-json")
    c.add_argument(
        "--baseline",
        help="the version to compare against: a label, a letter of the grid, a file, or a unique part of a "
        "label such as '2.15' (default: the oldest given)",
    )
    c.add_argument(
        "--fail-on",
        type=_kinds,
        default=choices.DEFAULT_FAIL_ON,
        help="comma-separated changes that count as regressions, from "
        f"{', '.join(choices.COUNTABLE)}, or 'none' (default: {','.join(choices.DEFAULT_FAIL_ON)}). "
        "Declared changes never count.",
    )
    c.add_argument(
        "--slowdown",
        type=_positive,
        default=cmp.DEFAULT_SLOWDOWN,
        help="the smallest calibrated time-per-epoch ratio that counts; the runs' measured calibration noise can "
        "only raise it (default %(default)s)",
    )
    c.add_argument(
        "--alpha",
        type=_probability,
        default=cmp.DEFAULT_ALPHA,
        help="significance level of the seed statistics (Mann–Whitney U, Holm-corrected) (default %(default)s)",
    )
    c.add_argument(
        "--loss-rtol",
        type=_positive,
        default=cmp.DEFAULT_LOSS_RTOL,
        help="curve tolerance where no rounding floor was measured (default %(default)s)",
    )
    c.add_argument(
        "--width",
        type=int,
        default=comparison_text.WIDTH,
        help="fold the text's lines within this many columns; 0: one line per change, for grep (default %(default)s)",
    )
    c.add_argument(
        "--max-results-mib",
        type=_positive,
        default=results.MAX_MIB,
        metavar="MIB",
        help="refuse a results file (or journal) larger than this, before reading it: reading one takes about ten "
        "times its size in memory (default %(default)g)",
    )
    c.add_argument("--accepted", type=Path, metavar="FILE", help=ACCEPTED_HELP)
    c.add_argument("--markdown", type=Path, metavar="FILE", help="also write the comparison as Markdown")
    c.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML page with loss curves")
    c.set_defaults(run=_compare)

    x = sub.add_parser(
        "explain",
        help="run one scenario and explain it: stability bound, loss factor, a learning-rate sweep",
        description="Runs one scenario for one seed, prints its checks, the stability diagnosis (exact for a "
        "linear model under MSE, else estimated from Hessian-vector products) and a short learning-rate sweep "
        "around the bound with the verdict of each. Exit 0: the scenario passes; 1: it fails; 2: bad input.",
    )
    x.add_argument("target", metavar="FILE::SCENARIO", help="a scenario file and a scenario name in it")
    x.add_argument("--seed", type=int, help="the seed to train (default: the scenario's first)")
    x.add_argument(
        "--input",
        choices=choices.FIT_INPUTS,
        default="auto",
        help="how data reaches fit where the scenario does not say (default: auto — the fast dataset path where a "
        "sentinel shows every epoch equals fit on the numpy arrays, else numpy)",
    )
    x.set_defaults(run=_explain)

    e = sub.add_parser(
        "check-env",
        help="fail loudly unless the TensorFlow/Keras that import here are the ones expected",
        description="Used by the tox envs before they run: a matrix that silently installs the same "
        "version everywhere must not pass. Keras is expected to be Keras 3 from TF 2.16 on, unless the "
        "package is tf_keras.",
    )
    e.add_argument("--env-name", help="a tox env name that promises versions: tf215, tf221, tf216-legacy, nightly")
    e.add_argument("--tensorflow", metavar="X.Y", help="expected TensorFlow minor release")
    e.add_argument("--keras-package", choices=("keras", "tf_keras"), default="keras", help="expected Keras package")
    e.set_defaults(run=_check_env)

    m = sub.add_parser(
        "merge",
        help="merge the results files of CI shards into the one file an unsplit run writes",
        description="The results files of one run split across jobs (pytest-split's --splits N --group I, each job "
        "--convergence-json of its own) as one results file, for compare and gate to decide once. The shards must "
        "share environment (versions) and run settings and hold each scenario once; a shard that did not finish "
        "makes the merged run one that did not finish. Exit 2 on bad input.",
    )
    m.add_argument("out", type=Path, metavar="OUT", help="the merged results file to write")
    m.add_argument("shards", type=Path, nargs="+", metavar="SHARD", help="the shards' results files")
    m.add_argument(
        "--max-results-mib",
        type=_positive,
        default=results.MAX_MIB,
        metavar="MIB",
        help="refuse a shard larger than this, before reading it (default %(default)g)",
    )
    m.set_defaults(run=_merge)

    mx = sub.add_parser(
        "matrix",
        help="run the scenarios on every version of a matrix, on one Ray cluster, from one command",
        description="Each --env NAME=REQUIREMENTS is one version: Ray installs its requirements as a runtime "
        "environment on the cluster's nodes (uv, cached per set) and one pytest controller per version sends the "
        "scenarios there, writing DIR/NAME.json for compare and gate. Arguments after -- go to pytest (e.g. -- "
        "--scenarios scenarios/ --convergence-noise-floor). Needs the ray extra. Exit: the worst pytest exit code.",
    )
    mx.add_argument(
        "--env",
        action="append",
        required=True,
        metavar="'NAME=REQ …'",
        help="one version: a name, =, then its requirements separated by spaces (quote them), e.g. "
        "'tf215=tensorflow-cpu==2.15.1'; a word VAR=VALUE among them sets one of the variables the cluster forwards "
        "to its tasks for this version only, e.g. 'tf216legacy=TF_USE_LEGACY_KERAS=1 tensorflow==2.16.2 "
        "tf-keras~=2.16.0' (repeatable)",
    )
    mx.add_argument(
        "--ray", default="local", metavar="ADDRESS", help="local (default: start Ray here), auto, or an address"
    )
    mx.add_argument("--results-dir", type=Path, default=Path("results"), help="where NAME.json and NAME.log go")
    mx.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then pytest's arguments")
    mx.set_defaults(run=_matrix)

    s = sub.add_parser(
        "schema",
        help="print the JSON Schema of scenario files or of results files",
        description="The JSON Schema of a scenario file (for editors: put "
        "'# yaml-language-server: $schema=PATH' at the top of a YAML file) or of a results file "
        "(--convergence-json), generated from the models that validate them.",
    )
    s.add_argument("which", choices=("scenario", "results", "accepted"), help="which file's schema")
    s.set_defaults(run=_schema)

    b = sub.add_parser(
        "bisect",
        help="find the first build of a package whose behaviour differs from a known-good version",
        description="Lists the builds of the bad end's package between a good and a bad version (dev builds "
        "included), installs each probe into a throwaway environment (uv, cached) with the rest pinned, runs the "
        "scenario there and judges it against the good end as compare does, binary-searching to the first build "
        "that differs. A probe that cannot be installed or run is skipped, never taken for good or bad. "
        "Exit 0: found; 1: the bad end does not differ (nothing to search); 2: bad input or the good end failed.",
    )
    b.add_argument(
        "target",
        nargs="?",
        metavar="FILE[::SCENARIO]",
        help="a scenario file, or one scenario in it (not with --results)",
    )
    b.add_argument("--good", metavar="PACKAGE==VERSION", help="a build that behaves as expected")
    b.add_argument("--bad", metavar="PACKAGE==VERSION", help="a later build that differs")
    b.add_argument(
        "--results",
        nargs=2,
        type=Path,
        metavar=("GOOD.json", "BAD.json"),
        help="start from a change between two results files: the scenarios that differ, the two versions of the "
        "package that differs (the other pinned at the good file's version) come from them",
    )
    b.add_argument("--package", help="with --results, when TensorFlow and Keras both differ: which to bisect")
    b.add_argument(
        "--with",
        dest="pins",
        action="append",
        default=[],
        metavar="REQUIREMENT",
        help="the rest of the environment, pinned (repeat): e.g. --with tensorflow-cpu==2.21.0",
    )
    b.add_argument(
        "--on",
        type=_kinds,
        default=choices.BISECT_KINDS,
        help="kinds of change that make a build differ, better or worse (default: "
        f"{','.join(choices.BISECT_KINDS)}); changes within the noise never do",
    )
    b.add_argument("--seeds", type=int, help="train every scenario on at least N seeds (--convergence-seeds)")
    b.add_argument(
        "--probe-timeout",
        type=_positive,
        default=choices.BISECT_PROBE_TIMEOUT_S,
        metavar="SECONDS",
        help="the most one probe may take, install and run (default %(default)s); past it the probe is skipped",
    )
    b.add_argument("--python", help="the Python of the probes (default: this one; not with --ray)")
    b.add_argument("--index-url", help="the package index (default: PyPI; not with --ray)")
    b.add_argument("--workdir", type=Path, help="where the probes' environments and results go (default: a temp dir)")
    b.add_argument(
        "--factories",
        action="store_true",
        help="let the probes run model factories (project code); off by default: the probes pass "
        "--convergence-no-factories",
    )
    b.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="probe on a Ray cluster (local: start one here; auto; or an address; the ray extra): each probe is a "
        "pytest controller in this Python whose scenarios train on the cluster, in a uv runtime environment Ray makes "
        "with the build and the pins (over the nodes' own packages: a sibling there skips the probe)",
    )
    b.add_argument(
        "--probes-at-once",
        type=int,
        metavar="K",
        help="probe K builds side by side, each round splitting the builds still open into K+1 parts; both ends at "
        "once too (default: 1; 2 with --ray)",
    )
    b.set_defaults(run=_bisect)

    from . import gate as gate_mod

    g = sub.add_parser(
        "gate",
        help="may NEW replace OLD? run the scenarios in both, add seeds until sure, time them side by side",
        description="Runs the scenarios in two environments at once (isolated, rounding floors measured), judges "
        "them with compare's rules, trains more seeds where the seed statistics cannot decide yet (sequential: "
        "8, 16, … up to --max-seeds; seeds that drew the same initial weights on both sides are tested as pairs), "
        "and times every scenario in both environments alternately (OLD NEW NEW OLD …) in the same minutes. "
        "Exit 0: nothing that counts changed; 1: it blocks; 2: bad input or a run that failed.",
    )
    g.add_argument(
        "old",
        metavar="OLD",
        help="the environment in use: a Python interpreter (.tox/tf215/bin/python), a virtual environment's "
        "folder, a tox env name (tf215), or requirement specs in one argument ('tensorflow-cpu==2.15.1')",
    )
    g.add_argument("new", metavar="NEW", help="the candidate environment, written the same ways")
    g.add_argument(
        "paths",
        nargs="*",
        default=["scenarios"],
        metavar="PATH",
        help="scenario files or folders, or FILE::SCENARIO (default: scenarios)",
    )
    g.add_argument(
        "--max-seeds",
        type=int,
        default=gate_mod.DEFAULT_MAX_SEEDS,
        help="the most seeds a scenario is trained on before it is called UNKNOWN (default %(default)s)",
    )
    g.add_argument(
        "--budget",
        type=_positive,
        default=gate_mod.DEFAULT_BUDGET_S,
        metavar="SECONDS",
        help="time for added seeds after the first run (default %(default)s); past it, what is undecided stays UNKNOWN",
    )
    g.add_argument(
        "--timing-budget",
        type=_positive,
        default=gate_mod.DEFAULT_TIMING_BUDGET_S,
        metavar="SECONDS",
        help="time for the side-by-side timing (default %(default)s); scenarios not decided by then are not counted",
    )
    g.add_argument(
        "--slowdown",
        type=_positive,
        default=gate_mod.DEFAULT_SLOWDOWN,
        help="a slowdown counts when the whole 95%% interval of the time ratio lies above this (default %(default)s)",
    )
    g.add_argument("--no-timing", dest="timing", action="store_false", help="skip the side-by-side timing")
    g.add_argument(
        "--fail-on",
        type=_kinds,
        default=choices.DEFAULT_FAIL_ON,
        help=f"comma-separated kinds that count (default: {','.join(choices.DEFAULT_FAIL_ON)})",
    )
    g.add_argument("--fail-on-unknown", action="store_true", help="count scenarios still UNKNOWN after the budget")
    g.add_argument(
        "--alpha",
        type=_probability,
        default=cmp.DEFAULT_ALPHA,
        help="false-alarm rate of one scenario's seed statistics over all its looks (default %(default)s)",
    )
    g.add_argument("--no-factories", dest="factories", action="store_false", help="refuse model factories")
    g.add_argument(
        "--old-results",
        type=Path,
        metavar="FILE",
        help="OLD's first run: a results file made with "
        "--convergence-noise-floor --convergence-isolate (instead of running OLD's scenarios again)",
    )
    g.add_argument("--new-results", type=Path, metavar="FILE", help="NEW's first run, likewise")
    g.add_argument("--accepted", type=Path, metavar="FILE", help=ACCEPTED_HELP)
    g.add_argument("--json", type=Path, metavar="FILE", help="also write the decision as JSON")
    g.add_argument("--workdir", type=Path, help="where runs, logs and throwaway environments go (default: a temp dir)")
    g.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run both sides on a Ray cluster (local: start one here; auto; or an address; the ray extra): OLD and NEW "
        "are requirement specs that Ray installs on the nodes as runtime environments (uv, cached per set); each "
        "side's scenarios train as tasks, and the timing runs on one node whose CPUs it holds meanwhile",
    )
    g.set_defaults(run=_gate)
    return parser


def _gate(args: argparse.Namespace) -> int:
    import json
    import signal

    # stopped (CI's timeout, kill): unwind, so that the runs and timing workers it started (sessions of their own)
    # are stopped too
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    from . import gate as gate_mod

    if args.max_seeds < 1:
        raise InputError("gate: --max-seeds must be at least 1")
    for path in args.paths:
        if not Path(path.partition("::")[0]).exists():
            raise InputError(f"gate: {path}: no such file or directory")
    old = gate_mod.parse_side("OLD", args.old)
    new = gate_mod.parse_side("NEW", args.new)
    workdir = args.workdir or gate_mod.default_workdir()
    workdir.mkdir(parents=True, exist_ok=True)
    settings = gate_mod.Settings(
        paths=list(args.paths),
        max_seeds=args.max_seeds,
        budget_s=args.budget,
        timing_budget_s=args.timing_budget,
        slowdown=args.slowdown,
        timing=args.timing,
        fail_on=tuple(args.fail_on),
        fail_on_unknown=args.fail_on_unknown,
        alpha=args.alpha,
        factories=args.factories,
        old_results=args.old_results,
        new_results=args.new_results,
        accepted=accepted_file(args.accepted),
        ray=args.ray,
    )
    print(f"gate OLD: {old.describe(bool(args.ray))}", flush=True)
    print(f"     NEW: {new.describe(bool(args.ray))}", flush=True)
    print(f"  runs, logs and environments in {workdir}", flush=True)
    lines = gate_mod.gate(old, new, settings, workdir)
    while True:
        try:
            print(next(lines), flush=True)
        except StopIteration as stop:
            outcome: gate_mod.Outcome = stop.value
            break
    print(f"  OLD = {outcome.old_label}; NEW = {outcome.new_label}")
    for line in gate_mod.render(outcome):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(outcome.to_json(), indent=1, allow_nan=False), encoding="utf-8")
    return outcome.exit_code


def _bisect(args: argparse.Namespace) -> int:
    import tempfile

    from packaging.requirements import InvalidRequirement, Requirement

    from . import bisect as bisect_mod

    if args.results:
        if args.target or args.good or args.bad:
            raise InputError("bisect: give either --results GOOD.json BAD.json, or a target with --good and --bad")
        docs = [_results_file(path) for path in args.results]
        plan = bisect_mod.plan_from_results(docs[0], docs[1], args.package, tuple(args.on))
        print(f"from {args.results[0]} → {args.results[1]}: {plan.why}", flush=True)
        targets, good, bad, pins = plan.targets, plan.good, plan.bad, [*plan.pins, *args.pins]
    else:
        if not (args.target and args.good and args.bad):
            raise InputError("bisect needs a target with --good and --bad, or --results GOOD.json BAD.json")
        targets, pins = [args.target], list(args.pins)
        good = bisect_mod.parse_build(args.good, "--good")
        bad = bisect_mod.parse_build(args.bad, "--bad")
    for pin in pins:
        try:
            Requirement(pin)
        except InvalidRequirement:
            raise InputError(f"--with {pin!r}: not a requirement such as tensorflow-cpu==2.21.0") from None
    files = sorted({t.partition("::")[0] for t in targets})
    for file in files:
        if not Path(file).is_file():
            raise InputError(f"{file}: no such file (run bisect where the scenario files are)")
    at_once = args.probes_at_once if args.probes_at_once is not None else 2 if args.ray else 1
    if at_once < 1:
        raise InputError(f"--probes-at-once {at_once}: give 1 or more")
    if args.ray and (args.python or args.index_url):
        raise InputError(
            "bisect --ray: the probes train in the Ray workers' Python, and Ray's uv installs from the index set where "
            "the nodes start (UV_INDEX_URL): not with --python or --index-url"
        )
    root = args.workdir or Path(tempfile.mkdtemp(prefix="convergence-bisect-"))
    where: dict[str, Any] = (
        {"ray": args.ray} if args.ray else {"python": args.python or sys.executable, "index_url": args.index_url}
    )
    from .workspaces import RayWorkspace, Workspace

    workspace = (RayWorkspace if args.ray else Workspace)(
        root=root.resolve(),
        target=targets,
        scenario_files=files,
        pins=pins,
        timeout_s=args.probe_timeout,
        extra_pytest=["--convergence-seeds", str(args.seeds)] if args.seeds else [],
        factories=args.factories,
        **where,
    )
    return int(_print_all(bisect_mod.bisect(workspace, good, bad, tuple(args.on), at_once=at_once)))


def _print_all(lines: Generator[str, None, Any]) -> Any:
    """Print a command's lines as they come (a long run shows its progress); what the generator returns."""
    while True:
        try:
            print(next(lines), flush=True)
        except StopIteration as done:
            return done.value


def _results_file(path: Path) -> Document:
    """A results file, checked as compare checks it; an InputError naming the file otherwise."""
    try:
        doc = results.read(path)
        results.check(doc)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a usable results file: {str(exc)[:300]}") from None
    return doc


def _schema(args: argparse.Namespace) -> int:
    import json

    from . import schemas

    print(json.dumps(schemas.SCHEMAS[args.which](), indent=2, ensure_ascii=False))
    return 0


def accepted_file(given: Path | None) -> Accepted | None:
    """The accepted-changes file: --accepted, else the ini key convergence_accepted of the pytest ini file here (a
    path relative to that file's folder; 'none' for none); None when neither names one. A file that is not usable
    is an InputError with every problem located."""
    from . import accepted

    if given is None:
        found = accepted.find_ini_setting()
        if found is None or found[0].lower() == "none":
            return None
        given = found[1] / found[0]
    if str(given).lower() == "none":
        return None
    try:
        return accepted.read(given)
    except ScenarioError as exc:
        raise InputError(f"accepted-changes file not usable:\n{exc}") from None


def _matrix(args: argparse.Namespace) -> int:
    from . import matrix

    envs = [matrix.parse_env(e) for e in args.env]
    if len({e.name for e in envs}) != len(envs):
        raise InputError("--env: each version needs its own NAME")
    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    return int(_print_all(matrix.run(envs, args.ray, args.results_dir, pytest_args)))


def _merge(args: argparse.Namespace) -> int:
    from . import merge

    merged = merge.write_merged(args.out, args.shards, int(args.max_results_mib * 2**20))
    errors = len(merged.get("collection_errors", []))
    print(
        f"merged {len(args.shards)} shard(s): {len(merged['scenarios'])} scenario(s), {errors} collection error(s) "
        f"-> {printable(args.out)}"
    )
    return 0


def _compare(args: argparse.Namespace) -> int:
    columns = cmp.load(args.files, max_bytes=int(min(args.max_results_mib * 2**20, 2**62)))
    baseline = cmp.pick_baseline(columns, args.baseline)
    rules = cmp.Rules(
        loss_rtol=args.loss_rtol,
        slowdown=args.slowdown,
        fail_on=args.fail_on,
        alpha=args.alpha,
        accepted=accepted_file(args.accepted),
    )
    result = cmp.compare(columns, baseline, rules)
    print(comparison_text.render_text(result, max(0, args.width)))
    if args.markdown:
        args.markdown.write_text(comparison_text.render_markdown(result), encoding="utf-8")
    if args.html:
        args.html.write_text(comparison_text.render_html(result), encoding="utf-8")
    return result.exit_code


def _explain(args: argparse.Namespace) -> int:
    passed = _print_all(explain_mod.explain(explain_mod.find(args.target), args.seed, args.input))
    return 0 if passed else 1


def _check_env(args: argparse.Namespace) -> int:
    from . import envcheck
    from . import keras as keras_side

    wanted = envcheck.promise(args.env_name, args.tensorflow, args.keras_package)
    try:
        found = keras_side.versions()
    except ImportError as exc:
        print(f"pytest-convergence check-env: MISMATCH: cannot import TensorFlow/Keras: {exc}", file=sys.stderr)
        return 1
    problems = envcheck.problems(wanted, found, envcheck.installed())
    for p in problems:
        print(f"pytest-convergence check-env: MISMATCH: {p}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"pytest-convergence check-env: TensorFlow {found['tensorflow']}, "
        f"{found['keras_package']} {found['keras']}: as promised"
    )
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _kinds(text: str) -> tuple[choices.CountableKind, ...]:
    try:
        return choices.parse_fail_on(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
