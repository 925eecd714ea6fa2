"""`pytest-convergence matrix`: one command, one Ray cluster, every TensorFlow/Keras version of a matrix. Each
version is a requirement set (`--env tf215=tensorflow-cpu==2.15.1`) that Ray installs as a runtime environment on the
nodes (with uv, cached per set); one pytest controller per version sends its scenarios there
(`--convergence-ray ADDRESS --convergence-ray-pip …`) and writes `DIR/NAME.json`, which `compare` and `gate` read
as they read the tox envs' results. A version may set the variables the cluster forwards to its tasks
(`--env 'tf216legacy=TF_USE_LEGACY_KERAS=1 tensorflow==2.16.2 tf-keras~=2.16.0'`): its controller runs with them, so
its tasks do. The controllers run side by side and import no TensorFlow: the cluster does the work. Needs the ray
extra."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=(?!=)")  # one '=': requirements compare with ==, ~=, >=, <=, !=


@dataclass(frozen=True)
class Env:
    """One version of the matrix: its name (the results file's), the requirements Ray installs for it and the
    variables (of `cluster.FORWARDED`) its controller, hence its tasks, run with."""

    name: str
    requirements: tuple[str, ...]
    variables: tuple[tuple[str, str], ...] = ()

    @property
    def words(self) -> str:
        """Its variables and requirements as `--env` gives them."""
        return " ".join([*(f"{k}={v}" for k, v in self.variables), *self.requirements])


def parse_env(given: str) -> Env:
    """'tf215=tensorflow-cpu==2.15.1 numpy<2' → Env (requirements separated by spaces: a specifier keeps its commas,
    `tensorflow-cpu>=2.15,<2.16`); a word VAR=VALUE (one '=') among them sets a variable of `cluster.FORWARDED`
    for that version. InputError saying the form, or which variables are allowed."""
    from packaging.requirements import InvalidRequirement, Requirement

    from .cluster import FORWARDED  # the only variables that reach the tasks

    name, sep, words = given.partition("=")
    variables: dict[str, str] = {}
    requirements = []
    for word in words.split():
        if not VARIABLE.match(word):
            requirements.append(word)
            continue
        var, _, value = word.partition("=")
        if var not in FORWARDED:
            raise InputError(
                f"--env {given!r}: {word!r} sets {var}, but only the variables the cluster forwards to its tasks can "
                f"be set: {', '.join(FORWARDED)}"
            )
        if var in variables:
            raise InputError(f"--env {given!r}: {var} is set twice")
        variables[var] = value
    if not sep or not name or set(name) - NAME_CHARS or not requirements:
        raise InputError(
            f"--env {given!r}: give NAME=REQUIREMENT [REQUIREMENT …], e.g. tf215=tensorflow-cpu==2.15.1 (quoted)"
        )
    for requirement in requirements:
        try:
            Requirement(requirement)  # also refuses options (--index-url=…): only requirements reach the installer
        except InvalidRequirement:
            raise InputError(f"--env {given!r}: {requirement!r} is not a requirement such as numpy<2") from None
    return Env(name, tuple(requirements), tuple(variables.items()))


def command(env: Env, address: str, out: Path, pytest_args: Sequence[str]) -> list[str]:
    """The controller of one version: pytest with the scenarios' tasks sent to the cluster in that environment."""
    from .cluster import controller

    out_file = str(out / f"{env.name}.json")
    return [
        *controller(address, env.requirements),
        "-p",
        "no:cacheprovider",
        *pytest_args,
        "--convergence-json",
        out_file,
    ]


def environment(env: Env, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of one version's controller: `base` (this process's) with the version's variables, which the
    controller's cluster forwards to every task it sends."""
    from .cluster import CONTROLLER_ENV

    return {**base, **CONTROLLER_ENV, **dict(env.variables)}


def run(envs: Sequence[Env], address: str, out: Path, pytest_args: Sequence[str]) -> Generator[str, None, int]:
    """Start Ray here when `address` is local (the controllers join it), run every version's controller side by
    side, and say how each ended; returns (as StopIteration's value) the worst pytest exit code."""
    from .cluster import driver
    from .merge import worst_exit

    out.mkdir(parents=True, exist_ok=True)
    codes: dict[str, int] = {}
    with driver(address, "matrix") as gcs:
        procs: dict[str, tuple[subprocess.Popen[bytes], Any]] = {}
        try:
            for env in envs:
                log = (out / f"{env.name}.log").open("w")
                argv = command(env, gcs, out, pytest_args)
                proc = subprocess.Popen(argv, stdout=log, stderr=log, env=environment(env, os.environ))
                procs[env.name] = (proc, log)
                yield f"{env.name}: {env.words} -> {out / env.name}.json (log {out / env.name}.log)"
            begun = time.monotonic()
            for name, (proc, _) in procs.items():
                codes[name] = proc.wait()
                tail = (out / f"{name}.log").read_text(errors="replace").strip().splitlines()[-1:] or [""]
                yield f"{name}: exit {codes[name]} after {time.monotonic() - begun:.0f} s: {tail[0]}"
        finally:  # Ctrl-C or an error here: the controllers go too, before the Ray they use
            for proc, log in procs.values():
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait()
                log.close()
    files = " ".join(str(out / f"{e.name}.json") for e in envs)
    yield f"compare them: pytest-convergence compare {files}"
    return worst_exit(codes.values())
