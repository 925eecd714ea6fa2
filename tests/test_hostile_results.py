"""Results files and journals are data from elsewhere (another machine, an old run, an attacker's pull request):
`compare` and the next run's recovery must neither crash nor pass on them, nor let their text act on a terminal, a
CI log or a Markdown job summary."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from test_compare import run, scenario, write

from pytest_convergence import results
from pytest_convergence.cli import main

HEADER = json.dumps({"started": "2026-11-25T10:00:00+00:00", "argv": []})


def journal_line(**entry: Any) -> str:
    return json.dumps(entry)


def starts_a_command(text: str) -> list[str]:
    """The lines a GitHub runner would read as workflow commands."""
    return [line for line in text.splitlines() if line.lstrip().startswith("::")]


# ---- untrusted text on the way out (3)


EVIL_ID = "s.yaml::a`b``c|d\n::warning::id\x1b]0;title\x07"
EVIL_ERROR = (
    "ValueError: ![img](https://evil.example/p.png) [link](https://evil.example/l) <img src=x> "
    "https://evil.example/bare www.evil.example &amp; \x1b[2J\r::error::cr"
)


def test_text_from_a_results_file_cannot_act_on_a_terminal_or_a_ci_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A version string, an id and an error with line breaks, ANSI escapes and carriage returns: none starts a line
    of its own (a `::` workflow command), none reaches the terminal as a control character."""
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x"))
    new = write(
        tmp_path,
        "b",
        "2.21\n::error title=x::pwned\x1b[2J",
        "3.15.1",
        scenario("x", "error", error=EVIL_ERROR),
        {**scenario("y"), "id": EVIL_ID},
    )
    md = tmp_path / "c.md"
    for width in ("0", "120", "40"):  # the baseline by its file: its version string is no version
        code, out = run(capsys, base, new, "--markdown", str(md), "--baseline", "a.json", width=width)
        assert code == 1
        assert starts_a_command(out) == [] and starts_a_command(md.read_text()) == []
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", out + md.read_text())
    assert "\\x1b[2J" in out and "2.21\\n::error" in out  # shown, escaped: a reader sees what the file holds


def test_markdown_renders_untrusted_text_as_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rendered as CommonMark with tables: no image, no link, no HTML from a record; an id with backticks and a pipe
    stays one code span in its table cell."""
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x"), {**scenario("y"), "id": "s.yaml::a`b``c|d"})
    new = write(
        tmp_path,
        "b",
        "2.21.0",
        "3.15.1",
        scenario("x", "error", error=EVIL_ERROR),
        {**scenario("y", "failed"), "id": "s.yaml::a`b``c|d"},
    )
    md = tmp_path / "c.md"
    assert run(capsys, base, new, "--markdown", str(md))[0] == 1
    source = md.read_text()
    page = MarkdownIt("commonmark").enable("table").render(source)
    assert "<img" not in page and "<a " not in page
    assert "&lt;img src=x&gt;" in page and "![img](https://evil.example/p.png)" in page  # as text
    assert "<code>s.yaml::a`b``c|d</code>" in page  # one code span, whole
    # GitHub also links bare URLs and www. names (GFM autolinks): none survives in the source as such
    assert "https://evil" not in source and "www.evil" not in source


# ---- wrong-typed or hostile results files (6): exit 2 with where and what, never a traceback


def results_text(**change: Any) -> str:
    doc = results.document([scenario("x")], [], dt.datetime.now(dt.timezone.utc), 0)
    doc.update(change)
    return json.dumps(results._encode(doc))


def with_seeds(seeds: Any) -> str:
    return results_text(scenarios=[{**scenario("x"), "seeds": seeds}])


@pytest.mark.parametrize(
    ("content", "where", "allowed"),
    [
        (results_text(scenarios=5), "scenarios", "valid list"),
        (results_text(scenarios={"s::x": {}}), "scenarios", "valid list"),
        (results_text(scenarios=["s.yaml::x", "s.yaml::y"]), "scenarios[0]", "valid dictionary"),
        (with_seeds(5), "scenarios[0].seeds", "valid list"),
        (with_seeds(["0"]), "scenarios[0].seeds[0]", "valid dictionary"),
        (with_seeds([{"seed": 0, "losses": {"a": 1}}]), "scenarios[0].seeds[0].losses", "valid list"),
        (results_text(environment="TF"), "environment", "valid dictionary"),
        (results_text(collection_errors=[5]), "collection_errors[0]", "valid dictionary"),
        (results_text(scenarios=[{**scenario("x"), "id": ["s", "x"]}]), "scenarios[0].id", "valid string"),
    ],
)
def test_a_wrong_typed_results_file_exits_2_naming_the_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, where: str, allowed: str
) -> None:
    good = write(tmp_path, "good", "2.15.1", "2.15.0", scenario("x"))
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, out = run(capsys, good, str(bad))
    assert code == 2 and "Traceback" not in out
    assert f"{bad}: malformed results file: {where}: " in out and allowed in out


def test_a_huge_version_string_is_a_label_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "a", "1" * 5000, "2.15.0", scenario("x"))
    new = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("x"))
    code, out = run(capsys, base, new)
    assert code == 0 and "Traceback" not in out


def test_html_draws_the_largest_finite_losses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1.8e308 reads as infinity; a curve that stays at the largest finite float has no decade above it."""
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x", losses=[1.7e308, 1.79e308, 1.8e308]))
    new = write(tmp_path, "b", "2.21.0", "3.15.1", scenario("x", losses=[1.79e308] * 3))
    page = tmp_path / "c.html"
    assert run(capsys, base, new, "--html", str(page))[0] in (0, 1)
    assert "<svg" in page.read_text() and ">1.79e+308</text>" in page.read_text()
    assert run(capsys, new, new, "--html", str(page))[0] == 0


def test_any_mutation_of_a_results_file_is_judged_or_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fuzz: every leaf and every list of a valid file replaced, one at a time, by values of other JSON types and
    extreme numbers; compare exits 0, 1 or 2, never with a traceback."""
    base = write(tmp_path, "a", "2.15.1", "2.15.0", scenario("x", seeds=2, runtime={"fit_input": "numpy"}))
    original = json.loads(Path(base).read_text())
    places: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        keys = node.keys() if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else []
        for k in keys:
            places.append((node, k))
            walk(node[k])

    walk(original)
    hostile = [5, -1, 1e308, -1e308, 0, "x", "NaN", "Infinity", None, True, [], {}, [5], {"a": [1]}, "1" * 5000]
    rng = random.Random(26)
    for node, key in rng.sample(places, min(len(places), 120)):
        kept = node[key]
        node[key] = rng.choice(hostile)
        path = tmp_path / "m.json"
        path.write_text(json.dumps(original))
        node[key] = kept
        code, out = run(capsys, base, str(path))
        assert code in (0, 1, 2) and "Traceback" not in out, (key, out)


def test_a_results_file_over_the_size_limit_is_refused_before_it_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "good", "2.15.1", "2.15.0", scenario("x"))
    big = tmp_path / "big.json"
    with big.open("wb") as fh:  # sparse: 100 MiB that take no disk
        fh.truncate(100 * 2**20)
    tracemalloc.start()
    code, out = run(capsys, good, str(big))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert code == 2 and "100.0 MiB, over the limit of 64.0 MiB" in out and "--max-results-mib" in out
    assert peak < 10 * 2**20
    assert run(capsys, good, good, "--max-results-mib", "0.000001")[0] == 2  # the option lowers it too
    Path(f"{good}{results.JOURNAL_SUFFIX}").write_text(HEADER + "\n" + " " * 2**20 + "\n")
    code, out = run(capsys, good, "--max-results-mib", "0.5")
    assert code == 2 and "--max-results-mib" in out  # a journal has the same limit


# ---- crashed runs never pass (6)


def test_a_garbage_journal_without_results_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "good", "2.15.1", "2.15.0", scenario("x"))
    (tmp_path / "gone.json.journal").write_bytes(b'\x00\xff garbage\n{"trunc\n')
    code, out = run(capsys, good, str(tmp_path / "gone.json"))
    assert code == 2 and "gone.json.journal" in out and "not a journal" in out and "Traceback" not in out
    (tmp_path / "empty.json.journal").write_text("")
    assert run(capsys, good, str(tmp_path / "empty.json"))[0] == 2


def test_a_crashed_run_never_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Against a baseline, the scenarios a run that died never finished count; alone, its results still block."""
    good = write(tmp_path, "good", "2.15.1", "2.15.0", scenario("x"), scenario("y"), scenario("z"))
    record = {**scenario("x"), "versions": {"tensorflow": "2.21.0", "keras": "3.15.1"}}
    (tmp_path / "died.json.journal").write_text(
        "\n".join(
            [
                HEADER,
                journal_line(start="s.yaml::x"),
                journal_line(record=record),
                journal_line(start="s.yaml::y"),
                journal_line(record={**scenario("w"), "id": ["s.yaml", "w"]}),  # unhashable: skipped, named
            ]
        )
        + "\n"
    )
    died = str(tmp_path / "died.json")
    code, out = run(capsys, good, died)
    assert code == 1 and "Traceback" not in out
    assert "warning: B: died.json.journal line 5: record.id: Input should be a valid string" in out
    assert "did not finish" in out.splitlines()[0]  # the decision says why
    assert re.search(r"s\.yaml::y on B .*never finished", out)  # the scenario it was running
    assert re.search(r"s\.yaml::z on B .*did not run", out)  # and the one it never reached
    assert run(capsys, died)[0] == 1
    interrupted = write(tmp_path, "ctrl-c", "2.21.0", "3.15.1", scenario("x"))
    doc = json.loads(Path(interrupted).read_text())
    Path(interrupted).write_text(json.dumps({**doc, "complete": False}))
    code, out = run(capsys, good, interrupted)
    assert code == 1 and "did not finish" in out.splitlines()[0]
    assert run(capsys, good, interrupted, "--fail-on", "none")[0] == 1  # not a kind of change one can turn off


# ---- recovery (7)


def crash(target: Path, *entries: dict[str, Any]) -> results.Journal:
    """A run that journals `entries` and dies (its journal left, its lock released as a dead process's is)."""
    journal = results.Journal(target, dt.datetime.now(dt.timezone.utc))
    for entry in entries:
        journal.append(entry)
    journal._fh.close()
    return journal


def test_a_second_crash_keeps_the_first_recovered_file(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    crash(target, {"record": scenario("a")})
    second = crash(target, {"record": scenario("b")})
    third = crash(target, {"record": scenario("c")})
    fourth = results.Journal(target, dt.datetime.now(dt.timezone.utc))
    assert second.recovered and third.recovered and fourth.recovered
    assert [second.recovered[0].name, third.recovered[0].name, fourth.recovered[0].name] == [
        "r.interrupted.json",
        "r.interrupted-2.json",
        "r.interrupted-3.json",
    ]
    saved = [results.read(tmp_path / n)["scenarios"] for n in ("r.interrupted.json", "r.interrupted-2.json")]
    assert [[s["name"] for s in doc] for doc in saved] == [["a"], ["b"]]
    fourth.close()


def test_malformed_journal_lines_are_skipped_and_reported(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    journal = Path(f"{target}{results.JOURNAL_SUFFIX}")
    lines = [
        HEADER,
        journal_line(record=scenario("a")),
        "\x00\xff\x1b[2J garbage",
        '{"record": {"id": "s.yaml::b", "outc',
        journal_line(record={**scenario("c"), "seeds": 5}),
        journal_line(record={**scenario("d"), "id": ["s.yaml", "d"]}),
        journal_line(record=[1, 2]),
        journal_line(collection_error={"file": 5}),
        journal_line(record=scenario("e")),
    ]
    journal.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe not UTF-8\n")
    left = journal.read_bytes()
    recovering = results.Journal(target, dt.datetime.now(dt.timezone.utc))
    assert recovering.recovered is not None
    saved, count = recovering.recovered
    assert count == 2 and [s["name"] for s in results.read(saved)["scenarios"]] == ["a", "e"]
    said = "\n".join(recovering.problems)
    for line in (3, 4, 5, 6, 7, 8, 10):
        assert f"line {line}:" in said
    assert "\x1b" not in said
    assert "scenarios" not in said and "record.seeds: Input should be a valid list" in said
    assert recovering.kept is not None and recovering.kept.name == "r.interrupted.journal"
    assert recovering.kept.read_bytes() == left  # the journal as it was, beside what could be read of it
    recovering.close()


def test_recovery_is_repeatable_and_keeps_every_finished_record(tmp_path: Path) -> None:
    """Run, crash, run, crash (each with a malformed line), run: every record that finished is in some file."""
    target = tmp_path / "r.json"
    journal = Path(f"{target}{results.JOURNAL_SUFFIX}")
    crash(target, {"record": scenario("a")}, {"start": "s.yaml::b"})
    journal.write_text(journal.read_text() + "{broken\n")
    crash(target, {"record": scenario("c")}, {"record": scenario("d")})
    journal.write_text(journal.read_text() + '{"record": {"id": [1]}}\n')
    last = results.Journal(target, dt.datetime.now(dt.timezone.utc))
    last.append({"record": scenario("e")})
    last.close()
    results.write(target, results.document([scenario("e")], [], dt.datetime.now(dt.timezone.utc), 0))
    kept = {s["name"]: s["outcome"] for p in tmp_path.glob("r*.json") for s in results.read(p)["scenarios"]}
    assert kept == {"a": "passed", "b": "error", "c": "passed", "d": "passed", "e": "passed"}


def test_a_malformed_journal_never_stops_the_next_run(pytester: pytest.Pytester) -> None:
    """The journal a run left is read by the next run with the same results path: bad lines in it are reported,
    never an INTERNALERROR, and the run after that starts clean."""
    pytester.makepyfile("def test_one(): pass")
    record = json.dumps({"record": {"id": "s.yaml::a", "outcome": "passed"}})
    (pytester.path / "r.json.journal").write_text(f'{HEADER}\n{record}\n{{"record": {{"id": [1]}}}}\nxx\n')
    first = pytester.runpytest("--convergence-json", "r.json", "-p", "no:randomly")
    assert first.ret == 0
    first.stdout.no_fnmatch_line("*INTERNALERROR*")
    first.stdout.fnmatch_lines(["*died before it finished*1 result(s)*r.interrupted.json*", "*line 3:*", "*line 4:*"])
    second = pytester.runpytest("--convergence-json", "r.json", "-p", "no:randomly")
    assert second.ret == 0
    second.stdout.no_fnmatch_line("*died before it finished*")
    assert main(["compare", str(pytester.path / "r.interrupted.json")]) == 1  # what a crash left never passes
