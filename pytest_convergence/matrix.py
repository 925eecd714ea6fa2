"""`pytest-convergence matrix`: one command, one Ray cluster, every TensorFlow/Keras version of a matrix. Each
version is a requirement set (`--env tf215=tensorflow-cpu==2.15.1`) that Ray installs as a runtime environment on the
nodes (with uv, cached per set); one pytest controller per version sends its scenarios there
(`--convergence-ray ADDRESS --convergence-ray-pip …`) and writes `DIR/NAME.json`, which `compare` and `gate` read
as they read the tox envs' results. The controllers run side by side and import no TensorFlow: the cluster does the
work. Needs the ray extra."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass(frozen=True)
class Env:
    """One version of the matrix: its name (the results file's) and the requirements Ray installs for it."""

    name: str
    requirements: tuple[str, ...]


def parse_env(given: str) -> Env:
    """'tf215=tensorflow-cpu==2.15.1 numpy<2' → Env (requirements separated by spaces: a specifier keeps its commas,
    `tensorflow-cpu>=2.15,<2.16`); InputError saying the form."""
    from packaging.requirements import InvalidRequirement, Requirement

    name, sep, reqs = given.partition("=")
    requirements = tuple(reqs.split())
    if not sep or not name or set(name) - NAME_CHARS or not requirements:
        raise InputError(
            f"--env {given!r}: give NAME=REQUIREMENT [REQUIREMENT …], e.g. tf215=tensorflow-cpu==2.15.1 (quoted)"
        )
    for requirement in requirements:
        try:
            Requirement(requirement)  # also refuses options (--index-url=…): only requirements reach the installer
        except InvalidRequirement:
            raise InputError(f"--env {given!r}: {requirement!r} is not a requirement such as numpy<2") from None
    return Env(name, requirements)


def command(env: Env, address: str, out: Path, pytest_args: Sequence[str]) -> list[str]:
    """The controller of one version: pytest with the scenarios' tasks sent to the cluster in that environment."""
    pip = [arg for requirement in env.requirements for arg in ("--convergence-ray-pip", requirement)]
    return [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args,
        "--convergence-ray", address, *pip, "--convergence-json", str(out / f"{env.name}.json"),
    ]  # fmt: skip


def run(envs: Sequence[Env], address: str, out: Path, pytest_args: Sequence[str]) -> Generator[str, None, int]:
    """Start Ray here when `address` is local (the controllers join it), run every version's controller side by
    side, and say how each ended; returns (as StopIteration's value) the worst pytest exit code."""
    try:
        import ray
    except ImportError:
        raise InputError("matrix needs Ray: pip install 'pytest-convergence[ray]'") from None

    started_here = address == "local"
    if started_here:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        address = ray.get_runtime_context().gcs_address
    out.mkdir(parents=True, exist_ok=True)
    procs: dict[str, tuple[subprocess.Popen[bytes], Any]] = {}
    try:
        for env in envs:
            log = (out / f"{env.name}.log").open("w")
            procs[env.name] = (subprocess.Popen(command(env, address, out, pytest_args), stdout=log, stderr=log), log)
            yield f"{env.name}: {' '.join(env.requirements)} -> {out / env.name}.json (log {out / env.name}.log)"
        codes = {}
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
        if started_here:
            ray.shutdown()
    files = " ".join(str(out / f"{e.name}.json") for e in envs)
    yield f"compare them: pytest-convergence compare {files}"
    return max(codes.values(), key=lambda c: (c not in (0, 1), c)) if codes else 0
