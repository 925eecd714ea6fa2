"""The gate's two environments: what OLD and NEW may name (an interpreter, a venv, a tox env, requirement specs),
making them, and running this checkout's plugin in both at once (isolated, rounding floors, a seed window)."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Literal

from packaging.requirements import InvalidRequirement, Requirement

from . import results
from .errors import GateInputError
from .record import Document
from .text import one_line

ISOLATE = 50  # scenarios per training child in the gate's runs


PLUGIN_ENTRY_POINT = "convergence"  # the pytest11 name: blocked, so that this code (on PYTHONPATH) is what runs


@dataclass(frozen=True)
class Side:
    """One of the two environments."""

    role: str  # OLD | NEW
    given: str  # as the user wrote it
    kind: Literal["python", "venv", "tox", "requirements"]
    requirements: tuple[str, ...] = ()
    python: Path | None = None  # known at once for python/venv/tox; made for requirements

    def describe(self, ray: bool = False) -> str:
        if ray and self.kind == "requirements":
            return f"Ray runtime environment with {' '.join(self.requirements)}"
        return {
            "python": f"interpreter {self.given}",
            "venv": f"environment {self.given}",
            "tox": f"tox env {self.given}",
            "requirements": f"throwaway environment with {' '.join(self.requirements)}",
        }[self.kind]

    def check_ray(self) -> None:
        """That this side can be a Ray runtime environment (gate --ray): only requirement specs can."""
        if self.kind != "requirements":
            raise GateInputError(
                f"{self.role} {self.given!r}: on a Ray cluster OLD and NEW are requirement specs that Ray installs on "
                f"the nodes (e.g. 'tensorflow-cpu==2.15.1'), not a {self.kind} of this machine"
            )


def parse_side(role: str, given: str, tox_dir: Path = Path(".tox")) -> Side:
    """What OLD or NEW names: an existing file (a Python) or folder (a virtual environment); requirement specs
    (every word holds a version specifier: 'tensorflow-cpu==2.15.1', 'tensorflow-cpu~=2.21.0 keras==3.15.1'); else a
    tox env name (made with `tox run --notest` if .tox/NAME does not exist yet)."""
    path = Path(given)
    if path.is_file():
        return Side(role, given, "python", python=path)
    if path.is_dir():
        python = path / "bin" / "python"
        if not python.exists():
            raise GateInputError(f"{role} {given!r}: a folder without bin/python (not a virtual environment)")
        return Side(role, given, "venv", python=python)
    words = given.split()
    if words and any(op in given for op in ("=", "<", ">", "~", "!")):
        specs = []
        for word in words:
            try:
                req = Requirement(word)
            except InvalidRequirement as exc:
                raise GateInputError(f"{role} {given!r}: {word!r} is not a requirement: {exc}") from None
            if not req.specifier:
                raise GateInputError(f"{role} {given!r}: {word!r} names no version (e.g. tensorflow-cpu==2.15.1)")
            specs.append(word)
        return Side(role, given, "requirements", tuple(specs))
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", given) and "/" not in given:
        python = tox_dir / given / "bin" / "python"
        return Side(role, given, "tox", python=python)
    raise GateInputError(
        f"{role} {given!r}: not a Python interpreter, a virtual environment, a tox env name or requirement specs "
        "(e.g. .tox/tf215/bin/python, .tox/tf215, tf215, 'tensorflow-cpu==2.15.1')"
    )


def prepare(side: Side, workdir: Path, uv: str | None = None, tox: str | None = None) -> Side:
    """The side with a Python that exists: a tox env made if missing, requirements installed with uv."""
    if side.kind == "tox" and side.python is not None and not side.python.exists():
        command = [tox or shutil.which("tox") or "tox", "run", "-e", side.given, "--notest"]
        _checked(command, f"{side.role}: making tox env {side.given}")
        if not side.python.exists():
            raise GateInputError(f"{side.role}: tox made no {side.python}")
    if side.kind == "requirements":
        from .workspaces import plugin_requirements

        uv = uv or shutil.which("uv")
        if not uv:
            raise GateInputError(f"{side.role}: installing {side.given!r} needs uv (pip install uv)")
        env = workdir / "envs" / side.role.lower()
        shutil.rmtree(env, ignore_errors=True)
        _checked([uv, "venv", "--quiet", "--python", sys.executable, str(env)], f"{side.role}: making {env}")
        install = [uv, "pip", "install", "--quiet", "--python", str(env / "bin" / "python")]
        _checked([*install, *side.requirements, *plugin_requirements()], f"{side.role}: installing {side.given}")
        side = replace(side, python=env / "bin" / "python")
    assert side.python is not None
    return side


def _checked(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GateInputError(f"{what}: {exc}") from None
    if done.returncode != 0:
        raise GateInputError(f"{what} failed (exit {done.returncode}): {one_line(done.stderr or done.stdout, 400)}")


@dataclass
class Runner:
    """Runs pytest with this plugin's code (on PYTHONPATH, loaded with -p) in both environments at once."""

    workdir: Path
    paths: list[str]  # --scenarios PATHS, relative to the working directory
    factories: bool = True
    timeout_s: float = 6 * 3600.0
    ray: str | None = None  # a Ray cluster's address: each side's scenarios train there, in its runtime environment

    def plugin_path(self) -> Path:
        from .workspaces import plugin_folder

        return plugin_folder(self.workdir)

    def workers(self, side: Side, running: int) -> int:
        """xdist workers for one side: the CPUs shared among the sides running at once (on 2 CPUs: none with both
        sides running, 2 with one), where that environment has pytest-xdist. Every training process gets the same
        threads either way (1 per process on 2 CPUs: PYTEST_XDIST_WORKER_COUNT=2)."""
        share = (os.cpu_count() or 1) // max(1, running)
        if share < 2 or self.ray is not None:
            return 0
        try:
            found = subprocess.run([str(side.python), "-c", "import xdist"], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return 0
        return share if found.returncode == 0 else 0

    def environ(self) -> dict[str, str]:
        # PYTHONSAFEPATH: the working directory is not on sys.path, so a checkout's code or metadata is not found there
        env = {**os.environ, "PYTHONSAFEPATH": "1"}
        if self.ray is None:
            env["PYTHONPATH"] = str(self.plugin_path())
        env.pop("PYTEST_ADDOPTS", None)
        # the two sides run at the same time, each with half the CPUs (the thread settings of the tox matrix's -n 2)
        env["PYTEST_XDIST_WORKER_COUNT"] = "2"
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("PYTHONHASHSEED", "0")
        return env

    def command(
        self,
        side: Side,
        out: Path,
        targets: Sequence[str],
        seeds: tuple[int, int] | None,
        floors: bool,
        workers: int = 0,
    ) -> list[str]:
        from .workspaces import pytest_targets

        if self.ray is None:
            args = [str(side.python), "-m", "pytest", "-p", f"no:{PLUGIN_ENTRY_POINT}"]
            args += ["-p", "pytest_convergence.plugin"]
        else:  # each task trains in a worker process of its own side's runtime environment
            from .cluster import controller

            args = controller(self.ray, side.requirements)
        args += ["-p", "no:cacheprovider", "-q", "--no-header", "-p", "no:randomly"]
        if workers > 1:
            args += ["-n", str(workers)]
        # only the files of what runs: the plugin collects every --scenarios path that no argument names
        for path in dict.fromkeys(p.partition("::")[0] for p in (targets or self.paths)):
            args += ["--scenarios", path]
        args += ["--convergence-json", str(out)]
        if self.ray is None:
            args += ["--convergence-isolate", str(ISOLATE)]
        if floors:
            args.append("--convergence-noise-floor")
        if seeds is not None:
            start, count = seeds
            args += ["--convergence-seeds", f"{start}:{count}" if start else str(count)]
        if not self.factories:
            args.append("--convergence-no-factories")
        return [*args, *pytest_targets(targets or self.paths, GateInputError)]

    def run_both(
        self,
        sides: Sequence[Side],
        tag: str,
        targets: Sequence[str] = (),
        seeds: tuple[int, int] | None = None,
        floors: bool = True,
        deadline: float | None = None,
    ) -> list[Document]:
        """Both sides at once; their results documents (OLD first). Past `deadline` (time.monotonic()) both are
        stopped and what their journals hold is returned (the scenarios they finished)."""
        procs: list[tuple[Side, Path, subprocess.Popen[str], IO[str]]] = []
        for side in sides:
            out = self.workdir / f"{side.role.lower()}-{tag}.json"
            out.unlink(missing_ok=True)
            log = self.workdir / f"{side.role.lower()}-{tag}.log"
            handle = log.open("w", encoding="utf-8")
            command = self.command(side, out, targets, seeds, floors, self.workers(side, len(sides)))
            handle.write(shlex.join(command) + "\n")
            handle.flush()
            proc = subprocess.Popen(
                command, stdout=handle, stderr=subprocess.STDOUT, text=True, env=self.environ(), start_new_session=True
            )
            procs.append((side, out, proc, handle))
        docs = []
        try:
            for side, out, proc, stream in procs:
                limit = self.timeout_s if deadline is None else max(1.0, deadline - time.monotonic())
                try:
                    code = proc.wait(timeout=limit)
                except subprocess.TimeoutExpired:
                    _kill(proc)
                    code = -9
                stream.close()
                journal = Path(f"{out}{results.JOURNAL_SUFFIX}")
                if deadline is not None and code == -9 and journal.is_file():
                    docs.append(results.recover(journal))  # out of budget: what it finished
                    continue
                if code not in (0, 1) or not out.is_file():
                    tail = one_line(Path(stream.name).read_text(encoding="utf-8", errors="replace")[-600:], 600)
                    raise GateInputError(
                        f"{side.role}: pytest exited {code} without results (log {stream.name}): {tail}"
                    )
                docs.append(results.read(out))
        finally:
            for _, _, proc, stream in procs:
                if proc.poll() is None:
                    _kill(proc)
                stream.close()
        return docs


def _kill(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
