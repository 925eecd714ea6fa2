"""`pytest-convergence bisect`: the first build of one package whose behaviour differs from a known-good version.

Between a good and a bad version of one package (keras / keras-nightly, tensorflow / tensorflow-cpu / tf-nightly,
tf-keras), with the rest of the environment pinned, it lists the builds the registry publishes between them,
installs each probe into a throwaway virtual environment (uv, whose cache makes repeat installs fast), runs the
scenario there with this plugin, and judges the probe against the good end with compare's own judgement (outcome,
error, curve beyond its rounding floor, seed statistics), binary-searching to the first build that differs.

The search (`Search`) and the ordering of builds (`builds_between`) are pure; `Workspace` does the installing and
running, each bounded in time. A probe that cannot be installed or that crashes is skipped, never taken for good or
bad, as `git bisect skip` does.

On a Ray cluster (`RayWorkspace`, `bisect --ray`) a probe is a pytest controller in this Python whose scenarios train
on the cluster, in a uv runtime environment Ray makes for the build; several probes run at once, each round splitting
the builds still open into equal parts (`Search.next_round`).
"""

from __future__ import annotations

import itertools
import json
import math
import urllib.request
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from . import compare
from .choices import BISECT_KINDS
from .envcheck import SIBLINGS
from .errors import BisectInputError, InputError, ProbeFailed
from .record import Document
from .text import one_line
from .workspaces import BISECTABLE, Workspace

# what a probe is judged on by default: a real difference in behaviour, either way (an improvement is a change too)
DEFAULT_KINDS = BISECT_KINDS
DEFAULT_INDEX = "https://pypi.org/simple/"

Verdict = Literal["good", "bad", "skip"]
T = TypeVar("T")


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
    """Search for the first bad build among `candidates` (oldest first), the last of which is known bad and the one
    before the first known good: in rounds of K probes that split the builds still open into K+1 parts (K = 1: a
    binary search). Skipped builds are stepped around, nearest to where a split falls first."""

    def __init__(self, candidates: Sequence[Build]) -> None:
        self.candidates = list(candidates)
        self.good = -1  # index of the good bound: the newest build seen good before `bad` (-1: the good end)
        self.bad = len(self.candidates) - 1  # index of the bad bound
        self.skipped: set[int] = set()
        self.rounds = 0

    def next_round(self, at_once: int = 1) -> list[Build]:
        """Up to `at_once` builds to probe together, oldest first, the nearest untried builds to the points that
        split the open interval (good, bad) into at_once + 1 equal parts; [] when the search is over."""
        untried = [i for i in range(self.good + 1, self.bad) if i not in self.skipped]
        if len(untried) <= at_once:
            return [self.candidates[i] for i in untried]
        picked: list[int] = []
        for part in range(1, at_once + 1):
            split = self.good + part * (self.bad - self.good) / (at_once + 1)
            picked.append(min((i for i in untried if i not in picked), key=lambda i: (abs(i - split), i)))
        return [self.candidates[i] for i in sorted(picked)]

    def record_round(self, verdicts: Mapping[Build, Verdict]) -> None:
        """The verdicts of one round, all at once. The bounds move to the first good → bad step among the builds seen
        (the two bounds and this round's verdicts), so both are always measured, never inferred; where the round saw
        the change come and go (bad, good again, bad), the search goes on in its first step."""
        seen: dict[int, Verdict] = {self.good: "good", self.bad: "bad"}
        for build, verdict in verdicts.items():
            i = self.candidates.index(build)
            if verdict == "skip":
                self.skipped.add(i)
            elif self.good < i < self.bad:
                seen[i] = verdict
        steps = itertools.pairwise(sorted(seen))  # from the good bound to the bad one: a good → bad step is among them
        self.good, self.bad = next((a, b) for a, b in steps if (seen[a], seen[b]) == ("good", "bad"))
        self.rounds += 1

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


ProbeFunction = Callable[[Build], Probe]


def search(
    candidates: Sequence[Build], probe: ProbeFunction, at_once: int = 1
) -> Generator[Probe, None, Search | None]:
    """Probe builds until the first bad one is found; yields each probe as it finishes. The last candidate (the bad
    end) is probed first: when it is not bad there (it matches the good end, or it cannot be probed), there is
    nothing to search and the result is None. Then rounds of up to `at_once` probes side by side (`side_by_side`),
    each round's verdicts recorded together."""
    state = Search(candidates)
    first = probe(candidates[-1])
    yield first
    if first.verdict != "bad":
        return None
    builds = state.next_round(at_once)
    while builds:
        verdicts: dict[Build, Verdict] = {}
        for result in side_by_side(probe, builds):
            verdicts[result.build] = result.verdict
            yield result
        state.record_round(verdicts)
        builds = state.next_round(at_once)
    return state


def side_by_side(work: Callable[[Build], T], builds: Sequence[Build]) -> Iterator[T]:
    """work(build) for every build, each in a thread of its own, yielded as each finishes; a lone build runs here."""
    if len(builds) == 1:
        yield work(builds[0])
        return
    pool = ThreadPoolExecutor(len(builds), thread_name_prefix="bisect-probe")
    try:
        for done in as_completed([pool.submit(work, build) for build in builds]):
            yield done.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class Measurement:
    """One build installed and run; `doc` None when that failed (`failure` says why)."""

    build: Build
    doc: Document | None
    install_s: float = 0.0
    run_s: float = 0.0
    freeze: list[str] = field(default_factory=list)
    failure: str = ""


def measure(workspace: Workspace, build: Build) -> Measurement:
    """Install and run one build, then drop its environment."""
    try:
        install_s = workspace.install(build)
        doc, run_s = workspace.run(build)
        return Measurement(build, doc, install_s, run_s, workspace.freeze(build))
    except ProbeFailed as exc:
        return Measurement(build, None, failure=str(exc))
    finally:
        workspace.remove(build)


def bisect(
    workspace: Workspace,
    good: Build,
    bad: Build,
    kinds: Sequence[str] = DEFAULT_KINDS,
    versions: Callable[[str], list[str]] | None = None,
    at_once: int = 1,
) -> Generator[str, None, int]:
    """Lines for a person as the search goes; returns the exit code: 0 the first differing build was found, 1 the
    bad end does not differ from the good end here (or could not be probed), 2 the good end could not be probed.
    With `at_once` > 1 both ends are probed side by side, then rounds of that many probes."""
    workspace.preflight(good, bad)
    listed = (versions or (lambda name: published_versions(name, workspace.index_url or DEFAULT_INDEX)))(bad.package)
    candidates = builds_between(good, bad, listed)
    pinned = ", ".join(workspace.pins) or "nothing else"
    yield f"bisect {' '.join(workspace.target)}: {len(candidates)} builds of {bad.package} after {good} up to {bad}"
    yield f"  pinned: {pinned}; judged on: {', '.join(kinds)}; {_expected(len(candidates), at_once)}"
    with workspace.session():
        yield f"  {workspace.where()}"
        try:
            return (yield from _probes(workspace, good, bad, candidates, kinds, at_once))
        finally:  # Ctrl-C or an error: the probes still running end too (before the Ray they use)
            workspace.stop()


def _expected(count: int, at_once: int) -> str:
    """How many probes the search should take, for the header."""
    if at_once == 1:
        return f"about {max(1, math.ceil(math.log2(count + 1))) + 2} probes (both ends included)"
    rounds = max(0, math.ceil(math.log(count, at_once + 1) - 1e-9))  # the bad end is probed before them
    return f"{at_once} probes at once: both ends, then about {rounds} round{'s' * (rounds != 1)} of up to {at_once}"


def _probes(
    workspace: Workspace, good: Build, bad: Build, candidates: Sequence[Build], kinds: Sequence[str], at_once: int
) -> Generator[str, None, int]:
    """`bisect` once the builds are listed and the workspace is open."""
    early: dict[Build, Measurement] = {}
    if at_once > 1:  # both ends side by side: the bad end's verdict waits only for the good end's results
        early = {m.build: m for m in side_by_side(lambda b: measure(workspace, b), [good, bad])}
    reference = early.pop(good, None) or measure(workspace, good)
    if reference.doc is None:
        yield f"  good end {good}: {reference.failure}"
        if not workspace.factories:
            yield "  (model factories are refused in the probes: where the scenario uses one, bisect with --factories)"
        return 2
    good_doc, good_freeze = reference.doc, reference.freeze
    yield _line("good end", good, reference.install_s, reference.run_s, "reference")
    probes: dict[Build, Probe] = {}

    def probe(build: Build) -> Probe:
        done = early.pop(build, None) or measure(workspace, build)
        if done.doc is None:
            return Probe(build, "skip", detail=done.failure)
        try:
            changes = differences(good_doc, done.doc, kinds)
        except InputError as exc:  # a results file the judgement cannot read: neither good nor bad
            return Probe(build, "skip", done.install_s, done.run_s, f"its results cannot be judged: {exc}")
        # the probe's line names the first difference briefly; the first bad build's are listed in full at the end
        text = f"{changes[0].kind}: {one_line(changes[0].message.split('; ')[0], 90)}" if changes else "as the good end"
        return Probe(build, "bad" if changes else "good", done.install_s, done.run_s, text, done.freeze, changes)

    runs = search(candidates, probe, at_once)
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
    if at_once > 1:
        yield f"  {count + 1} probes: both ends, then {state.rounds} rounds of up to {at_once} at once"
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
