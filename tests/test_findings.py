"""Findings and accepted changes, on hand-made results files: one finding per cause, the decision on the first
screen, an accepted-changes file (acceptance, the version crossing, expiry, staleness, located errors, the ini key),
runs made with other settings named, and the Markdown read by a CommonMark + GFM-table parser."""

from __future__ import annotations

import dataclasses
import datetime as dt
import textwrap
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from test_compare import run, scenario, write

from pytest_convergence import accepted
from pytest_convergence.compare import Change
from pytest_convergence.findings import group, state_of

SLOW = {"epoch_ms": 30.0}  # ×30 against the baseline's 1 ms: a slowdown that counts


def slow_pair(
    tmp_path: Path, keras_new: str = "3.15.1", tf_new: str = "2.21.0", keras_old: str = "2.15.0"
) -> list[str]:
    tf_old = "2.15.1" if keras_old.startswith("2") else "2.20.0"
    old = write(tmp_path, "old", tf_old, keras_old, scenario("a"), scenario("b"), scenario("c"))
    new = write(tmp_path, "new", tf_new, keras_new, scenario("a", **SLOW), scenario("b", **SLOW), scenario("c"))
    return [old, new]


def accepted_file(tmp_path: Path, body: str) -> str:
    path = tmp_path / "accepted.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return str(path)


K3_SLOWDOWN = """\
accepted:
  - kind: slowdown
    scenarios: "s.yaml::*"
    where: {keras: ">=3"}
    reason: Keras 3 fit on numpy arrays costs more per epoch
"""


def screen(out: str) -> list[str]:
    return out.split("\nDetails\n")[0].splitlines()


def test_one_cause_is_one_finding_said_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, *slow_pair(tmp_path))
    assert code == 1
    first = screen(out)
    assert first[0] == "Decision: BLOCKS — 1 finding counts (exit 1)"
    assert first[2] == "Regression (blocks):" and first[3].startswith("  1. slowdown: time per epoch ×30 (slower;")
    assert "on B, on 2 scenario(s)" in first[3] and first[4] == "     s.yaml: a, b"
    assert (
        "1 finding(s) (1 regression) and 0 inconclusive change(s), from 2 change(s)" in out
    )  # the tally counts findings, not scenarios


def test_state_words_are_one_per_state() -> None:
    def change(kind: str, worse: bool, noise: bool = False) -> Change:
        return Change("s.yaml::x", "B", kind, "m", worse, "A", within_noise=noise)

    fail_on = ("outcome", "error", "shift", "slowdown")
    assert state_of(change("slowdown", True), fail_on) == "regression"
    assert state_of(change("slowdown", True), fail_on, accepted=True) == "accepted"
    assert state_of(change("drift", True), fail_on) == "moved"  # real, of a kind that does not count
    assert state_of(change("drift", False, noise=True), fail_on) == "inconclusive"
    assert state_of(change("outcome", False), fail_on) == "improved"
    assert state_of(change("missing", False), fail_on) == "moved"
    assert state_of(change("declared", False), fail_on) == "declared"
    with pytest.raises(ValueError, match="not settled"):
        group([change("outcome", True)], lambda c: "B")


def test_an_accepted_slowdown_passes_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = accepted_file(tmp_path, K3_SLOWDOWN)
    code, out = run(capsys, *slow_pair(tmp_path), "--accepted", file)
    assert code == 0
    first = screen(out)
    assert first[0] == "Decision: PASSES — nothing that counts changed; 1 accepted (exit 0)"
    assert "Accepted (does not count):" in first
    assert f"     accepted by {file}:2: where keras >=3: Keras 3 fit on numpy arrays costs more per epoch" in first
    assert "- [slowdown, accepted] time per epoch ×30" in out
    assert "stale" not in out and "expired" not in out


def test_acceptance_is_for_the_change_that_arrives_with_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Keras 3.8 → 3.15 stays inside `keras >=3`: the slowdown is a new one, and counts; the entry did not apply to
    these versions, so it is not stale either."""
    file = accepted_file(tmp_path, K3_SLOWDOWN)
    code, out = run(capsys, *slow_pair(tmp_path, keras_old="3.8.0"), "--accepted", file)
    assert code == 1 and "- [slowdown, regression]" in out and "stale" not in out


def test_an_expired_entry_accepts_nothing_and_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = accepted_file(tmp_path, K3_SLOWDOWN + "    until: 2020-01-31\n")
    code, out = run(capsys, *slow_pair(tmp_path), "--accepted", file)
    assert code == 1
    assert f"  {file}:2: expired on 2020-01-31 (slowdown in 's.yaml::*' where keras >=3)" in out


def test_an_entry_that_matches_nothing_is_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = accepted_file(
        tmp_path,
        K3_SLOWDOWN
        + """\
  - kind: error
    scenarios: "s.yaml::c"
    where: {tensorflow: ">=2.16"}
    reason: an error fixed since
  - kind: error
    scenarios: "gone.yaml::*"
    where: {tensorflow: ">=2.16"}
    reason: about scenarios this run did not compare
  - kind: slowdown
    scenarios: "*"
    where: {keras: ">=3.1"}
    reason: the same changes as the first entry
""",
    )
    code, out = run(capsys, *slow_pair(tmp_path), "--accepted", file)
    assert code == 0
    assert f"The accepted-changes file {file}:" in screen(out)
    assert f"  {file}:6: stale: matched no change here (error in 's.yaml::c' where tensorflow >=2.16)" in out
    assert f"{file}:10:" not in out  # gone.yaml was not compared: not stale, just not about this run
    assert f"  {file}:14: shadowed: the entry on line 2 accepts the same changes first" in out


def test_a_malformed_file_exits_2_naming_file_line_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = accepted_file(
        tmp_path,
        """\
    accepted:
      - kind: slowdwn
        scenarios: "*"
        where: {keras: ">=3"}
        reason: r
      - kind: drift
        scenarios: "*"
        where: {keras: "three"}
    """,
    )
    code, out = run(capsys, *slow_pair(tmp_path), "--accepted", file)
    assert code == 2
    assert f"{file}:2: accepted[0].kind: 'slowdwn' is not a kind that can count; did you mean 'slowdown'?" in out
    assert f"{file}:8: accepted[1].where.keras: 'three' is not a version specifier" in out
    assert f"{file}:6: accepted[1].reason: missing required key" in out


def test_patterns_match_ids_from_any_folder() -> None:
    assert accepted.matches("linear_sgd.yaml::*", "scenarios/linear_sgd.yaml::sgd-x")
    assert accepted.matches("*", "a/b/c.yaml::d") and accepted.matches("b/c.yaml::d", "a/b/c.yaml::d")
    assert not accepted.matches("linear_sgd.yaml::*", "scenarios/xlinear_sgd.yaml::a")
    assert not accepted.matches("c.yaml::d*", "c.yaml::e")


def test_the_ini_key_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = slow_pair(tmp_path)
    (tmp_path / "known").mkdir()
    (tmp_path / "known" / "accepted.yaml").write_text(textwrap.dedent(K3_SLOWDOWN), encoding="utf-8")
    (tmp_path / "tox.ini").write_text("[pytest]\nconvergence_accepted = known/accepted.yaml\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # found in the folder above, relative to the ini file
    assert run(capsys, *files)[0] == 0
    assert run(capsys, *files, "--accepted", "none")[0] == 1  # --accepted none: no file
    assert accepted.find_ini_setting(tmp_path / "sub") == ("known/accepted.yaml", tmp_path)


def test_runs_made_with_other_settings_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    isolated = {"noise_floor": True, "isolate": 50, "fit_input_asked": "auto"}
    quick = {"noise_floor": False, "isolate": 0, "fit_input_asked": "auto"}
    a = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x", runtime=isolated))
    b = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("x", runtime=quick))
    _, out = run(capsys, a, b)
    first = screen(out)
    assert "  warning: runs made with other settings side by side: rounding floors: A measured; B not measured" in first
    assert (
        "  warning: runs made with other settings side by side: isolation: A isolated; B in the pytest process" in first
    )
    c = write(tmp_path, "c", "2.21.0", "3.15.1", scenario("x", runtime=isolated))
    assert "warning" not in run(capsys, a, c)[1]


def test_markdown_reads_as_a_job_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Parsed by the rules GitHub renders with (CommonMark, GFM tables, HTML blocks): the decision is the heading,
    the findings an ordered list, the grid a table inside <details>, and nothing from a record is raw HTML."""
    files = slow_pair(tmp_path)
    md = tmp_path / "summary.md"
    assert run(capsys, *files, "--markdown", str(md))[0] == 1
    page = MarkdownIt("commonmark").enable("table").render(md.read_text(encoding="utf-8"))
    head, _, details = page.partition("<details>")
    assert head.startswith("<h2>Convergence across versions: BLOCKS — 1 finding counts (exit 1)</h2>")
    assert "<ol>\n<li>slowdown: time per epoch ×30 (slower;" in head and "<br />\ns.yaml: a, b</li>" in head
    assert "<table>" not in head and "<table>" in details and details.rstrip().endswith("</details>")
    assert "<summary>Details: versions, grid, every change</summary>" in details
    assert "<td><strong>pass !t</strong></td>" in details
    assert "<ul>\n<li>s.yaml::a: ×30 (1 ms → 30 ms" in details  # a group's scenarios: a nested list, one line each


def test_the_baseline_check_reads_the_same_file(pytester: pytest.Pytester) -> None:
    """--convergence-accepted (or the ini key) is checked when the run starts, where a baseline comparison will read
    it: a malformed file is a usage error naming its file, line and key; a missing one too."""
    pytester.makefile(".yaml", accepted="accepted:\n  - kind: slowdown\n    scenarios: '*'\n    where: {keras: 3}\n")
    bad = pytester.runpytest_subprocess("--convergence-baseline", "base", "--convergence-accepted", "accepted.yaml")
    bad.stderr.fnmatch_lines(["*accepted.yaml:4: accepted[[]0[]].where.keras: expected a string*"])
    bad.stderr.fnmatch_lines(["*accepted.yaml:2: accepted[[]0[]].reason: missing required key*"])
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    pytester.makeini("[pytest]\nconvergence_accepted = nowhere.yaml\n")
    missing = pytester.runpytest_subprocess("--collect-only")
    missing.stderr.fnmatch_lines(["*convergence_accepted (in *tox.ini): no such file: *nowhere.yaml"])
    assert missing.ret == pytest.ExitCode.USAGE_ERROR


def test_the_shipped_example_loads_and_meets_its_schema() -> None:
    import json

    import jsonschema
    import yaml

    from pytest_convergence import schemas

    example = Path(__file__).resolve().parents[1] / "examples" / "accepted.yaml"
    loaded = accepted.read(example, today=dt.date(2026, 12, 6))
    assert [(e.kind, e.scenarios, e.where.keras) for e in loaded.entries] == [("slowdown", "*", ">=3")]
    as_json = json.loads(json.dumps(yaml.safe_load(example.read_text(encoding="utf-8")), default=str))
    jsonschema.Draft202012Validator(schemas.accepted_file()).validate(as_json)


def test_the_gate_accepts_and_counts_the_same_way(tmp_path: Path) -> None:
    """The gate settles its changes with the same rules: a shift its accepted-changes file accepts is a finding
    under 'Accepted', and the gate passes; without the file it blocks."""
    from test_gate import SID, column, seed

    from pytest_convergence import compare, gate

    base = [0.02, 0.5, 3.0, 0.09, 8.0, 0.3, 1.2, 22.0]
    old_seeds = [seed(i, e) for i, e in enumerate(base)]
    new_seeds = [seed(i, e * 2.2) for i, e in enumerate(base)]
    old = dataclasses.replace(column(old_seeds, label="OLD"), environment={"tensorflow": "2.15.1", "keras": "2.15.0"})
    new = dataclasses.replace(column(new_seeds, label="NEW"), environment={"tensorflow": "2.21.0", "keras": "3.15.1"})
    file = tmp_path / "accepted.yaml"
    file.write_text(K3_SLOWDOWN.replace("slowdown", "shift").replace("s.yaml::*", "*"), encoding="utf-8")
    outcomes = []
    for known in (None, accepted.read(file)):
        rules = compare.Rules(accepted=known)
        judged = gate.decide(SID, old, new, old_seeds, new_seeds, rules, 16, 8)
        settings = gate.Settings(paths=["s.yaml"], accepted=known)
        outcomes.append(gate.Outcome(old.label, new.label, {SID: judged}, settings))
    blocked, passed = outcomes
    assert blocked.exit_code == 1 and gate.render(blocked)[:2] == [
        "Decision: BLOCKS — 1 finding counts (exit 1)",
        "Regression (blocks):",
    ]
    assert passed.exit_code == 0
    shown = gate.render(passed)
    assert shown[:2] == [
        "Decision: PASSES — nothing that counts changed; 1 accepted (exit 0)",
        "Accepted (does not count):",
    ]
    assert f"accepted by {file}:2: where keras >=3" in " ".join(line.strip() for line in shown)  # folded at 120
    assert passed.to_json()["findings"][0]["state"] == "accepted"


@pytest.mark.parametrize(
    ("b_ms", "c_ms", "accepted_at_c"),
    [(30.0, 30.0, True), (1.0, 30.0, False), (30.0, 900.0, False)],
    ids=["arrived-with-keras-3", "arrived-later-inside-where", "slower-again-inside-where"],
)
def test_a_change_inside_where_is_not_the_accepted_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], b_ms: float, c_ms: float, accepted_at_c: bool
) -> None:
    """TF 2.15 (Keras 2) → 2.16 (Keras 3.3) → 2.21 (Keras 3.15), the entry accepting slowdowns where keras >=3: only
    the slowdown that came with Keras 3 is accepted; one that appeared, or grew, between two Keras 3 versions counts."""
    a = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("a"))
    b = write(tmp_path, "b", "2.16.2", "3.3.3", scenario("a", epoch_ms=b_ms))
    c = write(tmp_path, "c", "2.21.0", "3.15.1", scenario("a", epoch_ms=c_ms))
    code, out = run(capsys, a, b, c, "--accepted", accepted_file(tmp_path, K3_SLOWDOWN))
    row = next(line for line in out.splitlines() if line.startswith("s.yaml::a ")).split()
    assert code == (0 if accepted_at_c else 1)
    if accepted_at_c:
        assert row[-2:] == ["pass", "+t"]
    else:
        assert row[-2:] == ["pass", "!t"] and "it changed again inside its where, at B → C" in out


@pytest.mark.parametrize(
    ("until", "said"),
    [
        ("2020-13-01", "until: not a valid value: '2020-13-01' (month must be in 1..12)"),
        ("0", "until: expected a date such as 2027-06-30, got '0'"),
        ('"next week"', "until: expected a date such as 2027-06-30, got 'next week'"),
    ],
)
def test_until_is_a_date(tmp_path: Path, capsys: pytest.CaptureFixture[str], until: str, said: str) -> None:
    file = accepted_file(tmp_path, K3_SLOWDOWN + f"    until: {until}\n")
    code, out = run(capsys, *slow_pair(tmp_path), "--accepted", file)
    assert code == 2 and f"{file}:6: accepted[0].{said}" in out


@pytest.mark.parametrize(
    ("files", "found"),
    [
        (
            {
                "pytest.toml": '[pytest]\nconvergence_accepted = "a.yaml"\n',
                "tox.ini": "[pytest]\nconvergence_accepted = b.yaml\n",
            },
            "a.yaml",
        ),
        ({"pyproject.toml": '[tool.pytest]\nconvergence_accepted = "native.yaml"\n'}, "native.yaml"),
        ({"pyproject.toml": '[tool.pytest.ini_options]\nconvergence_accepted = "ini.yaml"\n'}, "ini.yaml"),
        (
            {
                "pyproject.toml": "[project]\nname = 'x'\n",
                "setup.cfg": "[tool:pytest]\nconvergence_accepted = c.yaml\n",
            },
            "c.yaml",
        ),
        ({"pytest.ini": "[pytest]\n", "tox.ini": "[pytest]\nconvergence_accepted = b.yaml\n"}, None),  # pytest.ini wins
    ],
    ids=["pytest.toml-first", "pyproject-native", "pyproject-ini-options", "setup.cfg", "empty-pytest.ini-wins"],
)
def test_the_ini_lookup_follows_pytest(tmp_path: Path, files: dict[str, str], found: str | None) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert accepted.find_ini_setting(tmp_path) == ((found, tmp_path) if found else None)
