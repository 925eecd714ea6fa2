"""`pytest-convergence bisect`: the first build of one package whose behaviour differs from a known-good version.

Between a good and a bad version of one package (keras / keras-nightly, tensorflow / tensorflow-cpu / tf-nightly,
tf-keras), with the rest of the environment pinned, it lists the builds the registry publishes between them,
installs each probe into a throwaway virtual environment (uv, whose cache makes repeat installs fast), runs the
scenario there with this plugin, and judges the probe against the good end with compare's own judgement (outcome,
error, curve beyond its rounding floor, seed statistics), binary-searching to the first build that differs.

The search (`Search`) and the ordering of builds (`builds_between`) are pure; `Workspace` does the installing and
running, each bounded in time. A probe that cannot be installed or that crashes is skipped, never taken for good or
bad, as `git bisect skip` does.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from . import compare, results
from .choices import BISECT_KINDS, BISECT_PROBE_TIMEOUT_S
from .envcheck import SIBLINGS
from .errors import BisectInputError, InputError, ProbeFailed
from .record import Document
from .text import one_line

BISECTABLE = frozenset().union(*SIBLINGS)
# what a probe is judged on by default: a real difference in behaviour, either way (an improvement is a change too)
DEFAULT_KINDS = BISECT_KINDS
DEFAULT_INDEX = "https://pypi.org/simple/"
DEFAULT_PROBE_TIMEOUT_S = BISECT_PROBE_TIMEOUT_S

Verdict = Literal["good", "bad", "skip"]


@dataclass(frozen=True)
class Build:
    """One published version of one distribution."""

    package: str  # canonical name: keras-nightly
    version: Version

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def __str__(self) -> str:
        return f"{self.package} {self.version}"


def parse_build(text: str, what: str) -> Build:
    """'keras==3.15.1' → Build; a clear error for anything else."""
    try:
        req = Requirement(text)
        (spec,) = req.specifier
        if spec.operator != "==" or "*" in spec.version:
            raise ValueError
        version = Version(spec.version)
    except (InvalidRequirement, InvalidVersion, ValueError):
        raise BisectInputError(f"{what} {text!r}: write one build as PACKAGE==VERSION, e.g. keras==3.15.1") from None
    package = canonicalize_name(req.name)
    if package not in BISECTABLE:
        raise BisectInputError(f"{what} {text!r}: bisect works on {', '.join(sorted(BISECTABLE))}")
    return Build(package, version)


def same_module(a: str, b: str) -> bool:
    return any(a in group and b in group for group in SIBLINGS)


def builds_between(good: Build, bad: Build, published: Iterable[str]) -> list[Build]:
    """The bad end's package's builds after the good end, up to and including the bad end, oldest first in PEP 440
    order (3.16.0.dev1 < 3.16.0a1 < 3.16.0rc1 < 3.16.0 < 3.16.0.post1). Unparseable versions are left out."""
    if not same_module(good.package, bad.package):
        raise BisectInputError(f"{good.package} and {bad.package} are not versions of the same module")
    if not good.version < bad.version:
        raise BisectInputError(f"the good end {good} must come before the bad end {bad}")
    versions = set()
    for text in published:
        try:
            versions.add(Version(text))
        except InvalidVersion:
            continue
    if bad.version not in versions:
        raise BisectInputError(f"{bad} is not published")
    return [Build(bad.package, v) for v in sorted(versions) if good.version < v <= bad.version]


@dataclass
class Probe:
    build: Build
    verdict: Verdict
    install_s: float = 0.0
    run_s: float = 0.0
    detail: str = ""  # the first difference, or why the probe was skipped
    freeze: list[str] = field(default_factory=list)  # what the probe's environment held
    changes: list[compare.Change] = field(default_factory=list)  # against the good end


class Search:
    """Binary search for the first bad build among `candidates` (oldest first), the last of which is known bad and
    the one before the first known good. Skipped builds are stepped around, nearest to the middle first."""

    def __init__(self, candidates: Sequence[Build]) -> None:
        self.candidates = list(candidates)
        self.good = -1  # index of the newest build known good (-1: the good end, before the list)
        self.bad = len(self.candidates) - 1  # index of the oldest build known bad
        self.skipped: set[int] = set()

    def next(self) -> Build | None:
        """The build to probe next, or None when the search is over."""
        untried = [i for i in range(self.good + 1, self.bad) if i not in self.skipped]
        if not untried:
            return None
        middle = (self.good + self.bad) / 2
        return self.candidates[min(untried, key=lambda i: (abs(i - middle), i))]

    def record(self, build: Build, verdict: Verdict) -> None:
        i = self.candidates.index(build)
        if verdict == "skip":
            self.skipped.add(i)
        elif verdict == "bad":
            self.bad = min(self.bad, i)
        else:
            self.good = max(self.good, i)

    @property
    def first_bad(self) -> Build:
        return self.candidates[self.bad]

    @property
    def last_good(self) -> Build | None:
        return self.candidates[self.good] if self.good >= 0 else None

    @property
    def unresolved(self) -> list[Build]:
        """Skipped builds between the last good and the first bad: any of them may be the first bad one."""
        return [self.candidates[i] for i in sorted(self.skipped) if self.good < i < self.bad]


def published_versions(package: str, index_url: str = DEFAULT_INDEX, timeout_s: float = 60) -> list[str]:
    """Every version the index lists for `package` (PEP 691 JSON, PEP 700 `versions`), dev builds included; versions
    whose every file is yanked are left out."""
    url = index_url.rstrip("/") + f"/{package}/"
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            page = json.load(response)
    except (OSError, ValueError) as exc:
        raise BisectInputError(f"cannot list the builds of {package} from {url}: {exc}") from None
    live: set[str] = set()
    for file in page.get("files", []):
        if not file.get("yanked"):
            live.add(_version_of(file.get("filename", "")))
    listed = page.get("versions")  # PEP 700; an index without it: the versions of the files
    return [v for v in listed if v in live] if isinstance(listed, list) else sorted(live - {""}, key=Version)


def _version_of(filename: str) -> str:
    """The version in a wheel or sdist file name (keras_nightly-3.16.0.dev2026102704-py3-none-any.whl), or ""."""
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return ""


def differences(
    good: Document, probe: Document, kinds: Sequence[str], rules: compare.Rules | None = None
) -> list[compare.Change]:
    """How the probe's results differ from the good end's, scenario by scenario, by compare's judgement: only the
    kinds asked for, and nothing within the noise (a curve within its rounding floor, too few seeds to tell)."""
    base = compare.column(good, Path("good"))
    new = compare.column(probe, Path("probe"))
    found = []
    for sid in sorted(set(base.scenarios) | set(new.scenarios)):
        for change in compare.judge(sid, base, new, rules or compare.Rules()):
            if change.kind in kinds and not change.within_noise:
                found.append(change)
    return found


@dataclass
class Workspace:
    """Throwaway virtual environments, one per build, made by uv; the scenario run there by this plugin's code (on
    PYTHONPATH, loaded with -p, so every probe judges with the same plugin). Model factories are refused there
    (`--convergence-no-factories`) unless `factories`: the targets may come from a results file, and a probe is no
    place to run project code nobody asked for."""

    root: Path
    target: list[str]  # pytest arguments naming the scenario(s): FILE::NAME or FILE
    scenario_files: list[str]
    pins: list[str]  # the rest of the environment, as requirements
    python: str = sys.executable
    index_url: str | None = None
    timeout_s: float = DEFAULT_PROBE_TIMEOUT_S
    extra_pytest: list[str] = field(default_factory=list)
    uv: str = field(default_factory=lambda: shutil.which("uv") or "uv")
    factories: bool = False

    def __post_init__(self) -> None:
        pytest_targets([*self.target, *self.scenario_files], BisectInputError)  # refused before anything is installed

    def env_dir(self, build: Build) -> Path:
        return self.root / "envs" / f"{build.package}-{build.version}"

    def results_path(self, build: Build) -> Path:
        return self.root / "results" / f"{build.package}-{build.version}.json"

    def exclude_file(self, build: Build) -> Path:
        return self.root / f"exclude-{build.package}.txt"

    def install_commands(self, build: Build) -> list[list[str]]:
        env = self.env_dir(build)
        install = [self.uv, "pip", "install", "--quiet", "--python", str(env / "bin" / "python")]
        install += ["--prerelease", "if-necessary-or-explicit"]  # dev builds where asked for (==) or required
        if self.index_url:
            install += ["--index-url", self.index_url]
        if self.excluded(build):
            install += ["--excludes", str(self.exclude_file(build))]
        install += [build.requirement, *self.pins, *plugin_requirements()]
        return [[self.uv, "venv", "--quiet", "--python", self.python, str(env)], install]

    def excluded(self, build: Build) -> list[str]:
        """The siblings of the probed build and of the pins: e.g. keras when probing keras-nightly."""
        wanted = {build.package} | {canonicalize_name(Requirement(p).name) for p in self.pins}
        return sorted(name for group in SIBLINGS if group & wanted for name in group - wanted)

    def run_command(self, build: Build) -> list[str]:
        python = self.env_dir(build) / "bin" / "python"
        args = [str(python), "-m", "pytest", "-p", "pytest_convergence.plugin", "-p", "no:cacheprovider", "-q"]
        for file in self.scenario_files:
            args += ["--scenarios", file]
        args += ["--convergence-noise-floor", "--convergence-json", str(self.results_path(build))]
        if not self.factories:
            args.append("--convergence-no-factories")
        return [*args, *self.extra_pytest, *pytest_targets(self.target, BisectInputError)]

    def install(self, build: Build) -> float:
        started = time.perf_counter()
        env = self.env_dir(build)
        if env.exists():
            shutil.rmtree(env)
        self.root.mkdir(parents=True, exist_ok=True)
        self.exclude_file(build).write_text("".join(f"{n}\n" for n in self.excluded(build)), encoding="utf-8")
        for command in self.install_commands(build):
            self._call(command, "install", started)
        return time.perf_counter() - started

    def run(self, build: Build) -> tuple[Document, float]:
        started = time.perf_counter()
        out = self.results_path(build)
        out.unlink(missing_ok=True)
        # PYTHONSAFEPATH: the working directory is not on sys.path, so a checkout's metadata is not found there
        env = {**os.environ, "PYTHONPATH": str(self.plugin_path()), "PYTHONSAFEPATH": "1"}
        env.pop("PYTEST_ADDOPTS", None)
        env.pop("PYTEST_XDIST_WORKER_COUNT", None)
        self._call(self.run_command(build), "run", started, env, ok_codes=(0, 1))
        if not out.is_file():
            raise ProbeFailed("the run wrote no results file")
        return results.read(out), time.perf_counter() - started

    def plugin_path(self) -> Path:
        return plugin_folder(self.root)

    def freeze(self, build: Build) -> list[str]:
        python = str(self.env_dir(build) / "bin" / "python")
        try:
            done = subprocess.run(
                [self.uv, "pip", "freeze", "--python", python], capture_output=True, text=True, timeout=120
            )
        except (OSError, subprocess.TimeoutExpired):
            return []
        return done.stdout.split()

    def _call(
        self,
        command: list[str],
        step: str,
        started: float,
        env: dict[str, str] | None = None,
        ok_codes: Sequence[int] = (0,),
    ) -> None:
        left = self.timeout_s - (time.perf_counter() - started)
        try:
            # a session of its own: past the limit the whole group goes (xdist workers, training children too)
            proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
            )
        except OSError as exc:
            raise ProbeFailed(f"{step}: {exc}") from None
        try:
            stdout, stderr = proc.communicate(timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ProbeFailed(f"{step} took longer than {self.timeout_s:g} s") from None
        if proc.returncode not in ok_codes:
            tail = " ".join((stderr or stdout).split())[-300:]
            raise ProbeFailed(f"{step} failed (exit {proc.returncode}): {tail}")

    def remove(self, build: Build) -> None:
        shutil.rmtree(self.env_dir(build), ignore_errors=True)

    def reproduce(self, build: Build) -> str:
        """Shell commands that rebuild this probe's environment and run it."""
        lines = [shlex.join(c) for c in self.install_commands(build)]
        excluded = self.excluded(build)
        if excluded:
            lines.insert(0, f"printf '%s\\n' {' '.join(excluded)} > {shlex.quote(str(self.exclude_file(build)))}")
        path = shlex.quote(str(self.plugin_path()))
        lines.append(f"PYTHONPATH={path} PYTHONSAFEPATH=1 {shlex.join(self.run_command(build))}")
        return "\n".join(lines)


def plugin_folder(root: Path) -> Path:
    """root/plugin, holding only this plugin's package (a link to it): on PYTHONPATH it brings this code and no
    installed metadata (a checkout's *.egg-info would register the plugin a second time). bisect's probes and both
    sides of a gate run it, so that every environment is judged by the same code."""
    folder = root / "plugin"
    link = folder / "pytest_convergence"
    if not link.is_symlink():
        folder.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(__file__).resolve().parent, target_is_directory=True)
    return folder


def pytest_targets(targets: Sequence[str], error: type[InputError]) -> list[str]:
    """Scenario files and ids as pytest's last arguments, after `--`, so that none is read as an option: they may
    come from a results file, which is data (an id `--config-file=evil.ini` would choose pytest's configuration).
    pytest reads `-p NAME` (load a plugin) even after `--`, so a target that starts with '-' is refused as `error`."""
    for target in targets:
        if target.startswith("-"):
            raise error(
                f"{target!r} cannot be a scenario: pytest would read an argument that starts with '-' as an option "
                "(a scenario file or FILE::NAME id is a path; write ./ before a file whose name starts with '-')"
            )
    return ["--", *targets]


def plugin_requirements() -> list[str]:
    """This plugin's own runtime requirements (its code comes from PYTHONPATH, not from an install)."""
    try:
        requires = metadata.requires("pytest-convergence") or []
    except metadata.PackageNotFoundError:
        requires = []
    return [r for r in requires if "extra ==" not in r] or [
        "pytest",
        "numpy",
        "pyyaml",
        "pydantic",
        "packaging",
        "scipy",
    ]


ProbeFunction = Callable[[Build], Probe]


def search(candidates: Sequence[Build], probe: ProbeFunction) -> Generator[Probe, None, Search | None]:
    """Probe builds until the first bad one is found; yields each probe as it finishes. The last candidate (the bad
    end) is probed first: when it is not bad there (it matches the good end, or it cannot be probed), there is
    nothing to search and the result is None."""
    state = Search(candidates)
    first = probe(candidates[-1])
    yield first
    if first.verdict != "bad":
        return None
    build = state.next()
    while build is not None:
        result = probe(build)
        yield result
        state.record(build, result.verdict)
        build = state.next()
    return state


def bisect(
    workspace: Workspace,
    good: Build,
    bad: Build,
    kinds: Sequence[str] = DEFAULT_KINDS,
    versions: Callable[[str], list[str]] | None = None,
) -> Generator[str, None, int]:
    """Lines for a person as the search goes; returns the exit code: 0 the first differing build was found, 1 the
    bad end does not differ from the good end here (or could not be probed), 2 the good end could not be probed."""
    if shutil.which(workspace.uv) is None:
        raise BisectInputError(f"bisect makes its probes with uv, not found as {workspace.uv!r}: pip install uv")
    listed = (versions or (lambda name: published_versions(name, workspace.index_url or DEFAULT_INDEX)))(bad.package)
    candidates = builds_between(good, bad, listed)
    steps = max(1, math.ceil(math.log2(len(candidates) + 1)))
    pinned = ", ".join(workspace.pins) or "nothing else"
    yield f"bisect {' '.join(workspace.target)}: {len(candidates)} builds of {bad.package} after {good} up to {bad}"
    yield f"  pinned: {pinned}; judged on: {', '.join(kinds)}; about {steps + 2} probes (both ends included)"
    yield f"  environments and results in {workspace.root}"
    try:
        install_s = workspace.install(good)
        good_doc, run_s = workspace.run(good)
    except ProbeFailed as exc:
        workspace.remove(good)
        yield f"  good end {good}: {exc}"
        if not workspace.factories:
            yield "  (model factories are refused in the probes: where the scenario uses one, bisect with --factories)"
        return 2
    good_freeze = workspace.freeze(good)
    workspace.remove(good)
    yield _line("good end", good, install_s, run_s, "reference")
    probes: dict[Build, Probe] = {}

    def probe(build: Build) -> Probe:
        try:
            install_s = workspace.install(build)
            doc, run_s = workspace.run(build)
        except ProbeFailed as exc:
            return Probe(build, "skip", detail=str(exc))
        finally:
            freeze = workspace.freeze(build)
            workspace.remove(build)
        try:
            changes = differences(good_doc, doc, kinds)
        except InputError as exc:  # a results file the judgement cannot read: neither good nor bad
            return Probe(build, "skip", install_s, run_s, f"its results cannot be judged: {exc}")
        # the probe's line names the first difference briefly; the first bad build's are listed in full at the end
        text = f"{changes[0].kind}: {one_line(changes[0].message.split('; ')[0], 90)}" if changes else "as the good end"
        return Probe(build, "bad" if changes else "good", install_s, run_s, text, freeze, changes)

    runs = search(candidates, probe)
    count = 0
    while True:
        try:
            done = next(runs)
        except StopIteration as stop:
            state: Search | None = stop.value
            break
        count += 1
        probes[done.build] = done
        label = "bad end" if done.build == bad else f"probe {count - 1}"
        yield _line(label, done.build, done.install_s, done.run_s, f"{_word(done.verdict)}: {done.detail}")
    if state is None:
        why = "could not be probed" if probes[bad].verdict == "skip" else "does not differ from the good end here"
        yield f"the bad end {bad} {why}: nothing to search"
        return 1
    first_bad, last_good = state.first_bad, state.last_good
    before = probes[last_good].freeze if last_good else good_freeze
    yield f"first build that differs: {first_bad}" + (
        f" (or one of the skipped {', '.join(str(b.version) for b in state.unresolved)})" if state.unresolved else ""
    )
    yield f"last build like the good end: {last_good or good}"
    for change in probes[first_bad].changes[:5]:
        yield f"  {change.scenario}: {change.kind}: {change.message}"
    changed = _freeze_changes(before, probes[first_bad].freeze)
    if changed:
        yield f"  between the two environments: {'; '.join(changed)}"
    dates = [_build_date(b) for b in (last_good or good, first_bad)]
    if all(dates):
        yield f"  built {dates[0]} and {dates[1]}: the upstream change landed between those two nightly builds"
    yield "reproduce the last good build:"
    yield from (f"  {line}" for line in workspace.reproduce(last_good or good).splitlines())
    yield "reproduce the first bad build:"
    yield from (f"  {line}" for line in workspace.reproduce(first_bad).splitlines())
    return 0


def _word(verdict: Verdict) -> str:
    return {"good": "same", "bad": "DIFFERS", "skip": "skipped"}[verdict]


def _line(label: str, build: Build, install_s: float, run_s: float, text: str) -> str:
    return f"  {label:<9} {build!s:<40} install {install_s:6.1f} s  run {run_s:6.1f} s  {text}"


def _freeze_changes(before: Sequence[str], after: Sequence[str]) -> list[str]:
    """'keras-nightly 3.16.0.dev2026071004 → 3.16.0.dev2026071104' for every distribution whose version differs."""

    def parse(lines: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in lines:
            name, sep, version = line.partition("==")
            if sep:
                out[canonicalize_name(name)] = version
        return out

    a, b = parse(before), parse(after)
    return [f"{n} {a.get(n, '-')} → {b.get(n, '-')}" for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n)]


def _build_date(build: Build) -> str | None:
    """The date a nightly's version carries (3.16.0.dev2026071004 → 2026-07-10), else None."""
    dev = build.version.dev
    text = str(dev) if dev is not None else ""
    if len(text) >= 8 and text[:8].isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:8]}"
    return None


@dataclass(frozen=True)
class Plan:
    """What to bisect, read off two results files: the scenarios that changed, the two ends, the rest pinned."""

    targets: list[str]  # FILE::NAME node ids
    good: Build
    bad: Build
    pins: list[str]
    why: str  # the first change, for the header


def distribution(module: str, version: str) -> str:
    """The distribution that installs `module` at `version` here: a dev build is a nightly; TensorFlow releases
    are tensorflow-cpu on Linux x86-64 (what the tox envs install), else tensorflow."""
    try:
        nightly = Version(version).is_devrelease
    except InvalidVersion:
        raise BisectInputError(f"{module} {version!r} is not a version bisect can read") from None
    if module == "tensorflow":
        if nightly:
            return "tf-nightly"
        import platform

        return "tensorflow-cpu" if platform.system() == "Linux" and platform.machine() == "x86_64" else "tensorflow"
    if module == "tf_keras":
        return "tf-keras-nightly" if nightly else "tf-keras"
    return "keras-nightly" if nightly else "keras"


def plan_from_results(good: Document, bad: Document, package: str | None, kinds: Sequence[str] = DEFAULT_KINDS) -> Plan:
    """The bisect that explains the difference between two results files: the scenarios that differ (by compare's
    judgement), and the one package whose version differs between them (or `package`, when both TensorFlow and
    Keras differ), the other pinned at the good file's version."""
    changes = differences(good, bad, kinds)
    if not changes:
        raise BisectInputError("the two results files do not differ in what bisect looks at: nothing to search")
    versions = {}
    for side, doc in (("good", good), ("bad", bad)):
        env = doc["environment"]
        keras_module = env.get("keras_package") or "keras"
        versions[side] = {
            "tensorflow": (distribution("tensorflow", env.get("tensorflow") or "0"), env.get("tensorflow") or ""),
            "keras": (distribution(keras_module, env.get("keras") or "0"), env.get("keras") or ""),
        }
    moved = [m for m in ("tensorflow", "keras") if versions["good"][m][1] != versions["bad"][m][1]]
    if package is not None:
        wanted = canonicalize_name(package)
        moved = [m for m in ("tensorflow", "keras") if same_module(versions["bad"][m][0], wanted)]
    if len(moved) != 1:
        raise BisectInputError(
            "both TensorFlow and Keras differ between the files: say which to bisect with --package tensorflow "
            "or --package keras (the other stays at the good file's version)"
            if len(moved) > 1
            else f"no TensorFlow or Keras version differs between the files{' for ' + package if package else ''}"
        )
    (module,) = moved
    other = "keras" if module == "tensorflow" else "tensorflow"
    g_dist, g_ver = versions["good"][module]
    b_dist, b_ver = versions["bad"][module]
    o_dist, o_ver = versions["good"][other]
    try:
        g_ver, b_ver, o_ver = (str(Version(v)) for v in (g_ver, b_ver, o_ver))
    except InvalidVersion as exc:
        raise BisectInputError(f"the results files name a version bisect cannot read: {exc}") from None
    return Plan(
        targets=sorted({c.scenario for c in changes}),
        good=parse_build(f"{g_dist}=={g_ver}", "the good file"),
        bad=parse_build(f"{b_dist}=={b_ver}", "the bad file"),
        pins=[f"{o_dist}=={o_ver}"],
        why=f"{changes[0].scenario}: {changes[0].kind}: {one_line(changes[0].message.split('; ')[0], 100)}",
    )
