"""`pytest-convergence merge`: CI shards (pytest-split's groups, each with its own results file) as the one results
file an unsplit run writes; shards that are not parts of one run are refused."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from texts import HEADER

from pytest_convergence import cli, merge, results

SCENARIOS = (
    "".join(
        f"  - name: s{i}\n    epochs: {5 + i}\n    seed: {i}\n    expect: {{converges: {{loss_below: 1e9}}}}\n"
        for i in range(5)
    )
    + "  - name: fails\n    epochs: 8\n    expect: {converges: {loss_below: 1e-9}}\n"
)


def what_is_judged(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Per scenario: id, outcome, pass rate, and per seed its curve, outcome and predictions (not timings)."""
    return [
        (
            r["id"],
            r["outcome"],
            r.get("pass_rate"),
            [(s["seed"], s.get("losses"), s.get("outcome"), s.get("predictions")) for s in r.get("seeds", [])],
        )
        for r in doc["scenarios"]
    ]


@pytest.mark.keras
@pytest.mark.usefixtures("tensorflow_imported_once")
def test_merged_shards_equal_the_unsplit_run(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    """Split in three with pytest-split (as a CI matrix would: one group per job), merged: the same scenarios,
    outcomes and curves as one unsplit run; compare finds no change between the two."""
    pytester.makefile(".yaml", s=HEADER + SCENARIOS)
    whole = pytester.runpytest("--scenarios", "s.yaml", "--convergence-json", "whole.json", "-p", "no:randomly")
    whole.assert_outcomes(passed=5, failed=1)
    shards = []
    for group in (1, 2, 3):
        out = f"shard-{group}.json"
        run = pytester.runpytest(
            "--scenarios", "s.yaml", "--splits", "3", "--group", str(group), "--convergence-json", out,
        )  # fmt: skip
        assert run.ret in (0, 1)
        shards.append(pytester.path / out)
    sizes = [len(json.loads(p.read_text())["scenarios"]) for p in shards]
    assert sizes == [2, 2, 2]
    code = cli.main(["merge", str(pytester.path / "merged.json"), *map(str, shards)])
    assert code == 0
    assert "merged 3 shard(s): 6 scenario(s), 0 collection error(s)" in capsys.readouterr().out
    merged = results.read(pytester.path / "merged.json")
    assert what_is_judged(merged) == what_is_judged(results.read(pytester.path / "whole.json"))
    assert merged["exitstatus"] == 1 and merged.get("complete", True)
    code = cli.main(["compare", str(pytester.path / "whole.json"), str(pytester.path / "merged.json"), "--width", "0"])
    out = capsys.readouterr().out
    assert code == 0, out


def doc(ids: list[str], **environment: Any) -> dict[str, Any]:
    env = {"python": "3.11.7", "tensorflow": "2.21.0", "keras": "3.13.2", "keras_package": "keras", **environment}
    return {
        "schema": results.SCHEMA,
        "started": "2026-12-06T10:00:00+00:00",
        "finished": "2026-12-06T10:01:00+00:00",
        "exitstatus": 0,
        "argv": [],
        "environment": env,
        "collection_errors": [],
        "scenarios": [
            {"id": i, "file": "s.yaml", "line": 1, "name": i.split("::")[-1], "outcome": "passed", "seeds": []}
            for i in ids
        ],
    }


def write(tmp_path: Path, name: str, document: dict[str, Any]) -> Path:
    path = tmp_path / name
    results.write(path, document)  # type: ignore[arg-type]
    return path


def test_shards_of_other_runs_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "a.json", doc(["s.yaml::a"]))
    other_tf = write(tmp_path, "b.json", doc(["s.yaml::b"], tensorflow="2.15.1"))
    assert cli.main(["merge", str(tmp_path / "m.json"), str(a), str(other_tf)]) == 2
    err = capsys.readouterr().err
    assert "the shards are not parts of one run: their environment differ (tensorflow: 2.21.0 in" in err
    twice = write(tmp_path, "c.json", doc(["s.yaml::a"]))
    assert cli.main(["merge", str(tmp_path / "m.json"), str(a), str(twice)]) == 2
    assert f"s.yaml::a is in {a} and in {twice}: shards of one run hold each scenario once" in capsys.readouterr().err
    assert cli.main(["merge", str(a), str(a)]) == 2
    assert "is one of the shards" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text('{"scenarios": 5}')
    assert cli.main(["merge", str(tmp_path / "m.json"), str(tmp_path / "junk.json")]) == 2
    assert not (tmp_path / "m.json").exists()


def test_settings_must_match_too(tmp_path: Path) -> None:
    with_floor, without = doc(["s.yaml::a"]), doc(["s.yaml::b"])
    for d, floor in ((with_floor, True), (without, False)):
        d["scenarios"][0]["seeds"] = [{"seed": 0, "losses": [1.0]}]
        d["scenarios"][0]["runtime"] = {"noise_floor": floor, "op_determinism": True}
    with pytest.raises(merge.MergeInputError, match="their run settings differ \\(noise_floor: \\['True'\\] in"):
        merge.merge([with_floor, without], [Path("a.json"), Path("b.json")])  # type: ignore[list-item]


def test_shards_run_with_other_arguments_are_refused() -> None:
    """Only the group and the results file may differ between the shards' pytest command lines."""
    a, b = doc(["s.yaml::a"]), doc(["s.yaml::b"])
    a["argv"] = ["--scenarios", "s/", "--splits", "2", "--group", "1", "--convergence-json", "r1.json"]
    b["argv"] = ["--scenarios", "s/", "--splits=2", "--group=2", "--convergence-json=r2.json"]
    merge.merge([a, b], [Path("a.json"), Path("b.json")])  # type: ignore[list-item]
    b["argv"].append("--convergence-seeds=8")
    with pytest.raises(merge.MergeInputError, match="their pytest command lines differ"):
        merge.merge([a, b], [Path("a.json"), Path("b.json")])  # type: ignore[list-item]


def test_a_shard_that_did_not_finish_makes_the_merge_unfinished(tmp_path: Path) -> None:
    """One job's crash is the run's: the merged file says so, and compare never passes it."""
    done, died = doc(["s.yaml::a"]), doc(["s.yaml::b"])
    died["complete"], died["exitstatus"] = False, -1
    merged = merge.merge([done, copy.deepcopy(died)], [Path("a.json"), Path("b.json")])  # type: ignore[list-item]
    assert merged["complete"] is False and merged["recovered_from"] == "b.json"
    assert merged["exitstatus"] == -1


@pytest.mark.parametrize(
    ("codes", "worst"),
    [
        ([0, 0], 0),
        ([0, 5, 1], 1),  # a shard or version with nothing to run is no error beside those that ran
        ([5, 5], 5),
        ([], 5),
        ([1, 0, 1], 1),
        ([0, -1], -1),  # a part that died
        ([1, -9], -9),  # dying is worse than failed tests
        ([1, 2, 0], 2),  # interrupted (or 3 internal, 4 usage) too
        ([4, 3, 1], 4),
        ([5, 3], 3),
    ],
)
def test_the_worst_exit_code_of_the_parts_is_the_runs(codes: list[int], worst: int) -> None:
    """`merge` (shards) and `matrix` (versions) both end with this."""
    assert merge.worst_exit(codes) == worst


def test_a_matrix_version_is_a_name_and_requirements() -> None:
    """`pytest-convergence matrix --env 'NAME=REQ [REQ…]'`: one pytest controller per version, its scenarios' tasks in
    that version's Ray runtime environment, its results file named after it (the run itself: .ci/run)."""
    from pytest_convergence import matrix
    from pytest_convergence.errors import InputError

    env = matrix.parse_env("tf215=tensorflow-cpu==2.15.1 numpy<2")
    assert env == matrix.Env("tf215", ("tensorflow-cpu==2.15.1", "numpy<2"))
    assert matrix.parse_env("tf215=tensorflow-cpu>=2.15,<2.16").requirements == ("tensorflow-cpu>=2.15,<2.16",)
    command = matrix.command(env, "127.0.0.1:6379", Path("results"), ["--scenarios", "s/"])
    assert command == [
        sys.executable, "-m", "pytest", "--convergence-ray", "127.0.0.1:6379",
        "--convergence-ray-pip", "tensorflow-cpu==2.15.1", "--convergence-ray-pip", "numpy<2",
        "-p", "no:cacheprovider", "--scenarios", "s/", "--convergence-json", "results/tf215.json",
    ]  # fmt: skip
    for bad in ("tf215", "=x", "t f=x", "tf215=", "tf215=--index-url=http://evil", "tf215=<2.16"):
        with pytest.raises(InputError):
            matrix.parse_env(bad)


def test_a_matrix_version_may_set_the_variables_its_tasks_get(monkeypatch: pytest.MonkeyPatch) -> None:
    """A word VAR=VALUE among the requirements (one '=') is a variable of that version: legacy Keras beside Keras 3
    in one matrix. Its controller runs with it, and the controller's cluster hands it to every task."""
    from pytest_convergence import matrix
    from pytest_convergence.cluster import FORWARDED, Cluster, Task, uv_env
    from pytest_convergence.errors import InputError

    legacy = matrix.parse_env("tf216legacy=TF_USE_LEGACY_KERAS=1 tensorflow==2.16.2 tf-keras~=2.16.0")
    assert legacy == matrix.Env(
        "tf216legacy", ("tensorflow==2.16.2", "tf-keras~=2.16.0"), (("TF_USE_LEGACY_KERAS", "1"),)
    )
    assert legacy.words == "TF_USE_LEGACY_KERAS=1 tensorflow==2.16.2 tf-keras~=2.16.0"  # the progress line's
    both = matrix.parse_env("a=numpy<2 PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=")
    assert both.variables == (("PYTHONHASHSEED", "0"), ("TF_CPP_MIN_LOG_LEVEL", ""))
    assert both.requirements == ("numpy<2",)
    for requirement in ("numpy==2.0", "numpy~=2.0", "numpy>=2", "numpy<=2", "numpy!=2.0", "x_y==1"):
        assert matrix.parse_env(f"a={requirement}") == matrix.Env("a", (requirement,))  # two characters: a requirement
    command = matrix.command(legacy, "127.0.0.1:6379", Path("results"), [])
    assert not [arg for arg in command if "LEGACY" in arg]  # the environment's, not pytest's
    controller = matrix.environment(legacy, {"HOME": "/home/ci", "TF_USE_LEGACY_KERAS": "0", "PYTHONHASHSEED": "3"})
    assert controller == {"HOME": "/home/ci", "TF_USE_LEGACY_KERAS": "1", "PYTHONHASHSEED": "3", "PYTHONSAFEPATH": "1"}
    for name in FORWARDED:
        monkeypatch.delenv(name, raising=False)
    for name in FORWARDED:
        if name in controller:
            monkeypatch.setenv(name, controller[name])
    runtime_env = Cluster("local", uv_env(legacy.requirements))._options(Task())["runtime_env"]
    assert {k: runtime_env["env_vars"][k] for k in FORWARDED if k in runtime_env["env_vars"]} == {
        "TF_USE_LEGACY_KERAS": "1",
        "PYTHONHASHSEED": "3",
    }

    with pytest.raises(InputError) as err:
        matrix.parse_env("a=LD_PRELOAD=/tmp/x.so numpy")
    assert "'LD_PRELOAD=/tmp/x.so'" in str(err.value) and all(name in str(err.value) for name in FORWARDED)
    for bad in ("a=PYTHONHASHSEED=0", "a=PYTHONHASHSEED=0 numpy PYTHONHASHSEED=1", "a=numpy=2"):
        with pytest.raises(InputError):
            matrix.parse_env(bad)


@pytest.mark.keras
def test_a_matrix_versions_variable_reaches_its_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ray_cluster: Any
) -> None:
    """A real matrix on a one-node Ray cluster: the version that sets PYTHONHASHSEED trains with it (each record's
    runtime settings say what its worker ran with). Its requirement is the installed PyYAML, pinned, so that uv
    installs nothing."""
    pytest.importorskip("ray")
    from importlib import metadata

    from texts import DIVERGES

    (tmp_path / "s.yaml").write_text(HEADER + DIVERGES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)  # tox sets one for every process
    pinned = f"pyyaml=={metadata.version('pyyaml')}"
    with ray_cluster(1) as cluster:
        code = cli.main(
            ["matrix", "--env", f"seeded=PYTHONHASHSEED=7 {pinned}", "--ray", cluster.address, "--results-dir", "r",
             "--", "--scenarios", "s.yaml", "-p", "no:randomly"]
        )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out + (tmp_path / "r" / "seeded.log").read_text()
    assert f"seeded: PYTHONHASHSEED=7 {pinned} -> r/seeded.json" in out
    (record,) = results.read(tmp_path / "r" / "seeded.json")["scenarios"]
    assert record["runtime"]["PYTHONHASHSEED"] == "7"
