"""Where a probe runs, and how this checkout's plugin runs in another environment.

`Workspace`: a throwaway virtual environment per build, made by uv, the scenario run there by this plugin's code (on
PYTHONPATH, loaded with -p, so every probe judges with the same plugin), each step bounded in time. `RayWorkspace`
(`bisect --ray`): a pytest controller here whose scenarios train on a Ray cluster, in a uv runtime environment Ray
makes for the build. `plugin_folder`, `pytest_targets` and `plugin_requirements` serve the gate's two sides too.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from . import results
from .choices import BISECT_PROBE_TIMEOUT_S
from .envcheck import SIBLINGS
from .errors import BisectInputError, InputError, ProbeFailed
from .record import Document

if TYPE_CHECKING:
    from .bisect import Build

BISECTABLE = frozenset().union(*SIBLINGS)
DEFAULT_PROBE_TIMEOUT_S = BISECT_PROBE_TIMEOUT_S


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
    _running: set[subprocess.Popen[str]] = field(default_factory=set, init=False, repr=False)
    _stopped: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        pytest_targets([*self.target, *self.scenario_files], BisectInputError)  # refused before anything is installed

    def preflight(self, good: Build, bad: Build) -> None:
        """What cannot work here, refused before anything is listed or installed."""
        if shutil.which(self.uv) is None:
            raise BisectInputError(f"bisect makes its probes with uv, not found as {self.uv!r}: pip install uv")

    def session(self) -> contextlib.AbstractContextManager[object]:
        """Held while the probes run (a Ray driver for `RayWorkspace`)."""
        return contextlib.nullcontext()

    def where(self) -> str:
        return f"environments and results in {self.root}"

    def stop(self) -> None:
        """Ends the probes still running (Ctrl-C, an error): their process groups are killed, and no probe starts a
        step after this (a probe thread between two steps would start its next one)."""
        with self._lock:
            self._stopped.set()
            for proc in list(self._running):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

    def _go_on(self, step: str) -> None:
        """ProbeFailed once the probes were stopped: called (under the lock) before a step starts."""
        if self._stopped.is_set():
            raise ProbeFailed(f"{step}: bisect stopped")

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
        pytest = [str(python), "-m", "pytest", "-p", "pytest_convergence.plugin", *self.pytest_options(build)]
        return [*pytest, *self.extra_pytest, *pytest_targets(self.target, BisectInputError)]

    def pytest_options(self, build: Build) -> list[str]:
        """What every probe's pytest is given, wherever it runs: the scenario files, rounding floors, where its results
        go, and model factories refused unless `factories`."""
        args = ["-p", "no:cacheprovider", "-q"]
        for file in self.scenario_files:
            args += ["--scenarios", file]
        args += ["--convergence-noise-floor", "--convergence-json", str(self.results_path(build))]
        if not self.factories:
            args.append("--convergence-no-factories")
        return args

    def run_variables(self) -> dict[str, str]:
        """The variables the probe's pytest runs with: this plugin's code on PYTHONPATH; PYTHONSAFEPATH keeps the
        working directory off sys.path, so that a checkout's metadata is not found there."""
        return {"PYTHONPATH": str(self.plugin_path()), "PYTHONSAFEPATH": "1"}

    def install(self, build: Build) -> float:
        started = time.perf_counter()
        env = self.env_dir(build)
        if env.exists():
            shutil.rmtree(env)
        self.root.mkdir(parents=True, exist_ok=True)
        # one file per package, shared by probes running at once: replaced whole, never seen half-written
        ready = self.root / f"{self.exclude_file(build).name}.{build.version}"
        ready.write_text("".join(f"{n}\n" for n in self.excluded(build)), encoding="utf-8")
        ready.replace(self.exclude_file(build))
        for command in self.install_commands(build):
            self._call(command, "install", started)
        return time.perf_counter() - started

    def run(self, build: Build) -> tuple[Document, float]:
        started = time.perf_counter()
        out = self.results_path(build)
        out.unlink(missing_ok=True)
        env = {**os.environ, **self.run_variables()}
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
        with self._lock:
            self._go_on(step)
            try:
                # a session of its own: past the limit the whole group goes (xdist workers, training children too)
                proc = subprocess.Popen(
                    command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
                )
            except OSError as exc:
                raise ProbeFailed(f"{step}: {exc}") from None
            self._running.add(proc)
        try:
            stdout, stderr = proc.communicate(timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ProbeFailed(f"{step} took longer than {self.timeout_s:g} s") from None
        finally:
            self._running.discard(proc)
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
        lines.append(f"{_assignments(self.run_variables())} {shlex.join(self.run_command(build))}")
        return "\n".join(lines)


@dataclass
class RayWorkspace(Workspace):
    """Probes on a Ray cluster (`bisect --ray`): a probe is a pytest controller in this Python, whose installed plugin
    the workers import too, sending its scenarios to the cluster with the build and the pins as the requirements of a
    uv runtime environment that Ray makes on the nodes.

    Such an environment keeps what the nodes' Python holds (Ray copies a virtualenv whole, or makes one that sees the
    system's site-packages) and uv cannot take a package out of it: `--excludes` only keeps a package out of what uv
    installs, and the runtime environment passes uv no options. So a task in the build's environment first lists the
    TensorFlow and Keras distributions there; a sibling of the build or of a pin (keras beside keras-nightly, inherited
    or pulled in by a pin's requirements) skips the probe, whose scenarios would train on a mix of two builds."""

    ray: str = "local"  # as given: local (Ray started here), auto, or a cluster's address
    gcs: str = ""  # the address the probes' controllers join, while `session` is held
    _tasks: set[Any] = field(default_factory=set, init=False, repr=False)  # environment checks under way

    def preflight(self, good: Build, bad: Build) -> None:
        """With `local` the nodes run this Python: a sibling of either end installed here would be in every probe."""
        if self.ray != "local":
            return
        here = visible_distributions()
        for build in (good, bad):
            clash = self.siblings(build, here)
            if clash:
                raise BisectInputError(
                    f"--ray local: this Python ({sys.prefix}), which the Ray workers run, holds {', '.join(clash)}, "
                    f"which a probe of {build} must not hold; a Ray runtime environment keeps what the workers' Python "
                    "holds and uv cannot take it out there. Bisect without --ray (a clean environment per probe), or "
                    "give --ray the address of a cluster whose Python lacks it"
                )

    @contextlib.contextmanager
    def session(self) -> Iterator[object]:
        """This process as the Ray driver (Ray started here for `local`), `gcs` the address its probes join."""
        from .cluster import driver

        with driver(self.ray, "bisect --ray") as gcs:
            self.gcs = gcs
            try:
                yield self
            finally:
                self.gcs = ""

    def where(self) -> str:
        started = "started here" if self.ray == "local" else self.ray
        return (
            f"probes on Ray: the cluster at {self.gcs} ({started}) installs each build in a uv runtime environment on "
            f"its nodes; results in {self.root / 'results'}"
        )

    def stop(self) -> None:
        super().stop()
        with self._lock:
            if self._tasks:
                from .cluster import cancel

                cancel(self._tasks)

    def requirements(self, build: Build) -> list[str]:
        return [build.requirement, *self.pins]

    def install(self, build: Build) -> float:
        """Ray makes the build's runtime environment (on the node the check lands on) and a task there lists its
        TensorFlow and Keras distributions; the seconds that took. ProbeFailed when it cannot, or holds a sibling."""
        import ray

        from .cluster import ray_error_text, remote, uv_env

        started = time.perf_counter()
        runtime_env = uv_env(self.requirements(build))  # the controller's tasks ask for the same: made once
        with self._lock:
            self._go_on("install")
            ref = remote(visible_distributions).options(num_cpus=0, runtime_env=runtime_env).remote()
            self._tasks.add(ref)
        try:
            seen = ray.get(ref, timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref, force=True)
            raise ProbeFailed(f"install took longer than {self.timeout_s:g} s (Ray making its environment)") from None
        except ray.exceptions.RayError as exc:  # RuntimeEnvSetupError: uv's own message is at the end
            raise ProbeFailed(f"install failed on Ray: {ray_error_text(exc, 300)}") from None
        finally:
            self._tasks.discard(ref)
        problem = self.mixture(build, seen)
        if problem:
            raise ProbeFailed(problem)
        return time.perf_counter() - started

    def siblings(self, build: Build, seen: Sequence[tuple[str, str]]) -> list[str]:
        """'keras 3.15.1' for each distribution among `seen` that a probe of `build` must not hold."""
        excluded = set(self.excluded(build))
        return [f"{name} {version}" for name, version in seen if name in excluded]

    def mixture(self, build: Build, seen: Sequence[tuple[str, str]]) -> str:
        """Why a runtime environment whose Python finds `seen` (distribution, version; in the order it finds them)
        cannot probe `build`; "" when it can."""
        clash = self.siblings(build, seen)
        if clash:
            return (
                f"its Ray runtime environment holds {', '.join(clash)} beside {build} (inherited from the nodes' "
                "Python, or a pin's requirement; uv cannot leave it out there): it would train on a mix of builds"
            )
        found = next((version for name, version in seen if name == build.package), None)
        if found is None or not _same_version(found, build.version):
            return f"its Ray runtime environment imports {build.package} {found or '(none)'}, not {build.version}"
        return ""

    def run_command(self, build: Build, address: str | None = None) -> list[str]:
        """pytest in this Python, its scenarios trained on the cluster at `address` (the one joined, by default) in
        the build's runtime environment."""
        from .cluster import controller

        pytest = [*controller(address or self.gcs, self.requirements(build)), *self.pytest_options(build)]
        return [*pytest, *self.extra_pytest, *pytest_targets(self.target, BisectInputError)]

    def run_variables(self) -> dict[str, str]:
        from .cluster import CONTROLLER_ENV

        return dict(CONTROLLER_ENV)

    def freeze(self, build: Build) -> list[str]:
        """What trained, from the probe's results (the workers' TensorFlow, Keras and libraries): the nodes'
        environments cannot be listed from here."""
        try:
            env = results.read(self.results_path(build))["environment"]
        except (OSError, ValueError, InputError):
            return []
        named = {
            "tensorflow": env.get("tensorflow"),
            env.get("keras_package") or "keras": env.get("keras"),
            "numpy": env.get("numpy"),
            "protobuf": env.get("protobuf"),
            "ml_dtypes": env.get("ml_dtypes"),
        }
        return [f"{name}=={version}" for name, version in named.items() if version]

    def reproduce(self, build: Build) -> str:
        """The probe's controller, given the cluster as bisect was (`local`: a Ray of its own)."""
        return f"{_assignments(self.run_variables())} {shlex.join(self.run_command(build, self.ray))}"


def visible_distributions() -> list[tuple[str, str]]:
    """The TensorFlow and Keras distributions this Python finds, in the order it finds them (a Ray runtime
    environment's own before those it sees through to): (canonical name, version). A task of `RayWorkspace.install`."""
    found: list[tuple[str, str]] = []
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        if name in BISECTABLE:
            found.append((name, dist.version))
    return found


def _same_version(text: str, version: Version) -> bool:
    try:
        return Version(text) == version
    except InvalidVersion:
        return False


def plugin_folder(root: Path) -> Path:
    """root/plugin, holding only this plugin's package (a link to it): on PYTHONPATH it brings this code and no
    installed metadata (a checkout's *.egg-info would register the plugin a second time). bisect's probes and both
    sides of a gate run it, so that every environment is judged by the same code."""
    folder = root / "plugin"
    link = folder / "pytest_convergence"
    if not link.is_symlink():
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # made meanwhile by a probe running beside this one
            link.symlink_to(Path(__file__).resolve().parent, target_is_directory=True)
    return folder


def _assignments(variables: Mapping[str, str]) -> str:
    """NAME=VALUE … as a shell command's prefix."""
    return " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items())


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
