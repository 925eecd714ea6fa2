"""A comparison (compare.Comparison) for people: terminal text within 120 columns, Markdown for a CI job summary,
and a self-contained HTML page whose loss curves show each version's seeds as a band with the median."""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Callable, Sequence

from .choices import ChangeKind
from .compare import Change, Column, Comparison, adjacent_pairs, environment_changes
from .findings import STATES, Finding, State, common_folder, kind_shown, names, span
from .record import ScenarioRecord, SeedEntry
from .svg import svg_bands

SHORT = {
    "passed": "pass",
    "failed": "FAIL",
    "error": "ERROR",
    "skipped": "skip",
    "xfailed": "xfail",
    "xpassed": "XPASS",
    None: "-",
}
LETTER: dict[ChangeKind, str] = {
    "outcome": "o",
    "error": "e",
    "shift": "s",
    "slowdown": "t",
    "drift": "d",
    "missing": "m",
}
LEGEND = (
    "cells: the outcome, then each change against the baseline as its state's mark and its kind's letter:",
    "       " + "  ".join(f"{mark} {state}" for state, (mark, _) in STATES.items()),
    "       o outcome  e error  s seed statistics  t time per epoch  d loss curve  m missing",
)
WIDTH = 120
ID_WIDTH = 58
MANY = 3  # a finding with more scenarios than this lists their names only
SCREEN_MESSAGE = 40  # a change's text on the first screen is clipped within WIDTH, keeping at least this much
# the sections of the first screen: which states, under which heading
SECTIONS: tuple[tuple[State, str], ...] = (
    ("regression", "Regression (blocks)"),
    ("accepted", "Accepted (does not count)"),
    ("declared", "Declared by the scenarios (does not count)"),
    ("moved", "Moved (does not count)"),
    ("improved", "Improved (does not count)"),
)


def cell(cmp: Comparison, scenario: str, col: Column) -> str:
    """'pass', 'pass !t' (a slowdown that counts), 'xfail =e' (a declared error), 'pass ~d' (a curve that moved)."""
    record = col.scenarios.get(scenario)
    text = SHORT.get(record["outcome"] if record else None, "?")
    mine = [c for c in cmp.changes if c.scenario == scenario and c.column == col.label]
    marks = sorted({_mark(c) for c in mine})
    return f"{text} {''.join(marks)}" if marks else text


def _mark(change: Change) -> str:
    assert change.state is not None
    return STATES[change.state][0] + LETTER[kind_shown(change)]


def decision(cmp: Comparison) -> str:
    """'BLOCKS — 1 finding counts (exit 1)', or 'PASSES — nothing that counts changed; 1 accepted (exit 0)'."""
    found = cmp.findings
    counting = [f for f in found if f.counts]
    accepted = [f for f in found if f.state == "accepted"]
    also = f"; {len(accepted)} accepted" if accepted else ""
    why = [_count(len(counting), "finding counts", "findings count")] if counting else []
    if cmp.unfinished:
        keys = ", ".join(c.key for c in cmp.unfinished)
        why.insert(0, f"the run of {keys} did not finish (it crashed, was killed or was interrupted)")
    if why:
        return f"BLOCKS — {'; '.join(why)}{also} (exit 1)"
    return f"PASSES — nothing that counts changed{also} (exit 0)"


def first_screen(cmp: Comparison, code: bool = False, width: int = WIDTH) -> list[str]:
    """The decision, the versions, what was run unlike the rest, then every finding, one sentence each: what a person
    acts on, before any detail."""
    prefix = common_folder(cmp.rows)
    versions = "; ".join(f"{c.key}{'*' if c is cmp.baseline else ''} {c.label}" for c in cmp.columns)
    lines = [f"Decision: {decision(cmp)}", f"  versions: {versions} (* the baseline, which each is compared with)"]
    for line in cmp.mixed:
        lines.append(f"  warning: runs made with other settings side by side: {line}")
    for col in cmp.unfinished:
        lines.append(
            f"  warning: {col.key} is a run that did not finish ({col.stopped}): its scenarios without a result count "
            "as errors, and the comparison cannot pass; run it again to the end"
        )
    for col in cmp.columns:
        lines += [f"  warning: {col.key}: {note}" for note in col.notes]
    lines += finding_lines(cmp.findings, lambda f: _where_finding(cmp, f), prefix, code, width=width)
    if cmp.rules.accepted is not None:
        lines += cmp.rules.accepted.report(cmp.rules.fail_on)
    return lines


def finding_lines(
    findings: Sequence[Finding],
    where: Callable[[Finding], str],
    prefix: str = "",
    code: bool = False,
    timed: str = "each run against its machine calibration",
    width: int = WIDTH,
) -> list[str]:
    """Per section (blocks, accepted, declared, moved, improved), each finding in one sentence with its scenarios;
    inconclusive changes as one count."""
    lines = []
    number = 0
    for state, heading in SECTIONS:
        mine = [f for f in findings if f.state == state]
        if not mine:
            continue
        lines.append(f"{heading}:")
        for f in mine:
            number += 1
            lines.append(f"  {number}. {sentence(f, where(f), timed)}")
            if f.state in ("regression", "accepted") and (len(f.scenarios) > MANY or f.kind in ("slowdown", "drift")):
                lines.append(f"     {_code(names(f.scenarios, prefix), code)}")
            elif len(f.scenarios) > MANY:
                lines.append("     (the scenarios are listed in the details)")
            else:
                for c in _one_each(f):
                    head = f"     {_code(c.scenario[len(prefix) :], code)}: "
                    lines.append(
                        head + (_clip(c.message, max(SCREEN_MESSAGE, width - len(head))) if width else c.message)
                    )
            if f.accepted_by:
                lines.append(f"     accepted by {f.accepted_by}")
    unsure = [c for f in findings if f.state == "inconclusive" for c in f.changes]
    if unsure:
        lines.append(
            f"Inconclusive (not a change as far as this data can tell): {len(unsure)} on "
            f"{len({c.scenario for c in unsure})} scenario(s) — within a floor's limit, too few seeds to tell, or "
            "not comparable; listed in the details"
        )
    if not any(f.state != "inconclusive" for f in findings):
        lines.append("Nothing moved beyond the noise.")
    return lines


def sentence(f: Finding, where: str, timed: str = "") -> str:
    """One finding in one sentence: its kind, size and direction, where it first appears, how many scenarios."""
    n = f"{len(f.scenarios)} scenario(s)"
    if f.kind == "slowdown":
        factors = f.factors
        way = "slower" if f.worse else "faster"
        size = f" {span(factors)}" if factors else ""
        return f"slowdown: time per epoch{size} ({way}; {timed}) {where}, on {n}"
    if f.kind == "drift":
        seeds = _seed_tally(f.changes)
        floors = sum("no rounding floor was measured" not in c.message for c in f.changes)
        limit = (
            "its limit (×10 its rounding floor, at least 0.1 %)"
            if floors == len(f.changes)
            else "its tolerance (no rounding floor measured: --loss-rtol)"
            if not floors
            else "its limit (×10 its rounding floor, at least 0.1 %; --loss-rtol where no floor was measured)"
        )
        return f"drift: the loss curve moved beyond {limit} {where}, on {n}{seeds}"
    if f.kind == "shift":
        return f"shift: a seed statistic moved {'for the worse' if f.worse else 'for the better'} {where}, on {n}"
    if f.state == "declared":
        return f"{f.kind}: the scenario's own skip/xfail took effect {where}, on {n}"
    if f.kind == "error":
        what = "an error appeared" if f.worse else "an error changed or vanished"
        return f"error: {what} {where}, on {n}"
    if f.kind == "outcome":
        moves = sorted({c.message.split(",")[0][:40] for c in f.changes})
        said = "; ".join(moves) if len(moves) <= 2 else f"{len(moves)} kinds of move"
        return f"outcome: {said} {where}, on {n}"
    return f"{f.kind} {where}, on {n}"


def _seed_tally(changes: Sequence[Change]) -> str:
    """'; final losses: equivalent on 9, too few seeds to tell on 5' from the drift messages' seed statements."""
    tally: dict[str, int] = {}
    for c in changes:
        for key, word in (
            ("equivalent", "equivalent"),
            ("too few seeds", "too few seeds to tell"),
            ("more seeds would tell", "not significant yet"),
            ("final loss shifted", "shifted"),
            ("identical", "identical"),
        ):
            if key in c.message:
                tally[word] = tally.get(word, 0) + 1
                break
    return "; final losses: " + ", ".join(f"{w} on {n}" for w, n in tally.items()) if tally else ""


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_each(f: Finding) -> list[Change]:
    seen: set[str] = set()
    out = []
    for c in f.changes:
        if c.scenario not in seen:
            seen.add(c.scenario)
            out.append(c)
    return sorted(out, key=lambda c: c.scenario)


def _where_finding(cmp: Comparison, f: Finding) -> str:
    first = next((c for c in cmp.columns if c.label == f.first), None)
    if first is None:
        return ""
    if len(cmp.columns) == 2:
        return f"on {first.key}"
    columns = {c.column for c in f.changes}
    later = [c for c in cmp.columns[cmp.columns.index(first) :] if c is not cmp.baseline and c.package == first.package]
    if all(c.label in columns for c in later) and len(later) > 1:
        return f"from {first.key} on"
    shown = [c.key for c in cmp.columns if c.label in columns]
    return f"on {', '.join(shown)}"


def render_text(cmp: Comparison, width: int = WIDTH) -> str:
    """The decision and the findings first (what a person acts on), then the details: the versions, the grid, every
    change, the changes between adjacent versions, timing. The grid fits 120 columns; other lines are folded within
    `width` (0: one line each, for grep)."""
    lines = [wrapped for line in first_screen(cmp, width=width) for wrapped in _wrap(_one_line(line), width)]
    lines += ["", "Details", "Versions, oldest first:"]
    lines += [f"  {line}" for line in _versions(cmp)]
    prefix = common_folder(cmp.rows)
    head = f"scenario (in {prefix})" if prefix else "scenario"
    names_ = [_shorten(sid[len(prefix) :], ID_WIDTH) for sid in cmp.rows]
    cells = [[cell(cmp, sid, c) for c in cmp.columns] for sid in cmp.rows]
    first = max([len(head), *map(len, names_)])
    widths = [
        max([len(c.key) + (1 if c is cmp.baseline else 0), *(len(r[i]) for r in cells)])
        for i, c in enumerate(cmp.columns)
    ]
    keys = [c.key + ("*" if c is cmp.baseline else "") for c in cmp.columns]
    lines += ["", "  ".join([head.ljust(first), *(k.ljust(w) for k, w in zip(keys, widths, strict=True))]).rstrip()]
    lines.append("  ".join(["-" * first, *("-" * w for w in widths)]))
    for name, row in zip(names_, cells, strict=True):
        lines.append("  ".join([name.ljust(first), *(v.ljust(w) for v, w in zip(row, widths, strict=True))]).rstrip())
    lines += ["", *LEGEND, ""]
    rest = [*_change_lines(cmp, code=False, prefix=prefix), *_adjacent_lines(cmp), *_timing_lines(cmp), _summary(cmp)]
    lines += [wrapped for line in rest for wrapped in _wrap(_one_line(line), width)]
    return "\n".join(_inert(line) for line in lines)


def _one_line(text: str) -> str:
    """A record's text (an error message, a name) may hold line breaks: here each change is one line."""
    return text.replace("\r", " ").replace("\n", " ")


def _inert(line: str) -> str:
    """A line that starts with '::' is a GitHub Actions workflow command when a CI log prints it: not from us."""
    return line.replace("::", ":\u200b:", 1) if line.lstrip().startswith("::") else line


def fold(line: str, width: int) -> list[str]:
    """One line of a record's text, made one line and folded within `width` (0: not folded), inert in a CI log."""
    return [_inert(part) for part in _wrap(_one_line(line), width)]


def _wrap(line: str, width: int) -> list[str]:
    """A long line folded within `width` (0: not folded), continuation indented under its text."""
    if not width or len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip(" -")) + 2)
    return textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)


def render_markdown(cmp: Comparison) -> str:
    """For a GitHub job summary: the decision as the heading, the findings below it, the details (versions, grid,
    every change) folded in a <details> element. Every text goes through `_md` (or `_md_code`): the markup is this
    function's own."""
    screen = first_screen(cmp, code=False, width=0)  # a page: each change's text in full
    out = [f"## Convergence across versions: {_md(decision(cmp))}", ""]
    for line in screen[1:]:
        text = line.strip()
        if line.endswith(":") and not line.startswith(" "):  # a section's heading
            out += ["", f"**{_md(text)}**", ""]
        elif item := re.match(r"(\d+)\. ", text):  # a finding: an item of the ordered list
            out.append(f"{item[1]}. {_md(text[item.end() :])}  ")
        elif line.startswith("     "):  # the finding's scenarios: the item's next lines
            out.append(f"   {_md(text)}  ")
        else:
            out += ["", f"{_md(text)}  "] if not line.startswith(" ") else [f"{_md(text)}  "]
    out += ["", "<details><summary>Details: versions, grid, every change</summary>", ""]
    out += ["| | version | environment |", "|---|---|---|"]
    for col, line in zip(cmp.columns, _env_texts(cmp), strict=True):
        mark = " (baseline)" if col is cmp.baseline else ""
        out.append(f"| **{_md(col.key)}** | {_md(col.label + mark)} | {_md(line)} |")
    out += ["", "| scenario | " + " | ".join(_md(c.key) for c in cmp.columns) + " |"]
    out.append("|---|" + "---|" * len(cmp.columns))
    for sid in cmp.rows:
        texts = [cell(cmp, sid, c) for c in cmp.columns]
        out.append(f"| {_md_code(sid)} | " + " | ".join(f"**{_md(t)}**" if "!" in t else _md(t) for t in texts) + " |")
    out += ["", *(f"{_md(line.strip())}  " for line in LEGEND), ""]
    details = [*_change_lines(cmp, code=False), *_adjacent_lines(cmp), *_timing_lines(cmp), _summary(cmp)]
    for line in details:
        if line.startswith("    "):  # a slowdown's scenarios: items of its list
            out.append(f"    - {_md(line.strip())}")
        elif line.startswith("- "):
            out.append(f"- {_md(line[2:])}")
        else:
            out.append(_md(line))
    out += ["", "</details>"]
    return "\n".join(out) + "\n"


def _versions(cmp: Comparison) -> list[str]:
    """A line per version, its environment (or what changed in it) wrapped beneath, within WIDTH columns."""
    lines = []
    for c, text in zip(cmp.columns, _env_texts(cmp), strict=True):
        lines.append(f"{c.key}  {c.label}{' (baseline)' if c is cmp.baseline else ''}")
        lines += textwrap.wrap(text, WIDTH - 2, initial_indent="   ", subsequent_indent="   ", break_on_hyphens=False)
    return lines


def _env_texts(cmp: Comparison) -> list[str]:
    """The first column's environment in full, then what each column changed against the one before it (of the
    same Keras package where there is one)."""
    texts = []
    previous = {after.key: before for before, after in adjacent_pairs(cmp.columns)}
    for i, col in enumerate(cmp.columns):
        if i == 0:
            env = col.environment
            parts = [f"{k} {env[k]}" for k in ("python", "numpy", "protobuf", "ml_dtypes") if env.get(k) is not None]
            if env.get("platform"):
                parts.append(f"{str(env['platform']).split('-')[0]} {env.get('machine') or ''}".strip())
            if env.get("cpu"):
                parts.append(f"{env['cpu']} ×{env.get('cpus')}")
            texts.append(" · ".join(parts))
        else:
            before = previous.get(col.key, cmp.columns[i - 1])
            diff = environment_changes(before, col)
            texts.append(f"vs {before.key}: {', '.join(diff) or 'same'}")
    return texts


def _change_lines(cmp: Comparison, code: bool, prefix: str = "") -> list[str]:
    if not cmp.changes:
        return [f"No changes against {cmp.baseline.key} ({cmp.baseline.label}).", ""]
    where = f" (scenarios in {prefix})" if prefix else ""
    lines = [f"Changes against {cmp.baseline.key} ({cmp.baseline.label}){where}, with the first version showing each:"]

    def name(sid: str) -> str:
        return _code(sid[len(prefix) :], code)

    done: set[tuple[str, str]] = set()
    slow = [c for c in cmp.changes if c.kind == "slowdown"]
    groups: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[Change]] = {}
    for ch in slow:
        shown, lacking = cmp.first_seen(ch.scenario, ch.kind)
        key = (str(ch.state), tuple(c.key for c in shown), tuple(c.key for c in lacking))
        groups.setdefault(key, []).append(ch)
    for (state, _, _), members in groups.items():
        scenarios = sorted({m.scenario for m in members})
        factors = [m.factor for m in members if m.factor is not None]
        where = _where(cmp, members[0].scenario, "slowdown")
        slower = "faster" if max(factors) < 1 else "slower"
        lines.append(
            f"- [slowdown, {state}] time per epoch {span(factors)} ({slower}, relative to each run's machine "
            f"calibration) on {len(scenarios)} scenario(s), {where}:"
        )
        for sid in scenarios:
            first = next(m for m in members if m.scenario == sid)
            lines.append(f"    {name(sid)}: {first.message.removeprefix('time per epoch ')}")
        done.update((sid, "slowdown") for sid in scenarios)
    for ch in cmp.changes:
        if (ch.scenario, ch.kind) in done:
            continue
        done.add((ch.scenario, ch.kind))
        same = [c for c in cmp.changes if (c.scenario, c.kind, c.column) == (ch.scenario, ch.kind, ch.column)]
        lines.append(
            f"- [{kind_shown(ch)}, {ch.state}] {name(ch.scenario)} {_where(cmp, ch.scenario, ch.kind)}: "
            f"{'; '.join(c.message for c in same)}"
        )
    lines.append("")
    return lines


def _where(cmp: Comparison, scenario: str, kind: str) -> str:
    shown, lacking = cmp.first_seen(scenario, kind)
    if not shown:
        return ""
    first = shown[0]
    later = cmp.columns[cmp.columns.index(first) + 1 :]
    same_line = [c for c in later if c.package == first.package and c is not cmp.baseline]
    if all(c in shown for c in same_line) and len(shown) == 1 + len(same_line):
        text = f"from {first.key} ({first.label}) on" if same_line else f"on {first.key} ({first.label})"
    else:
        text = "on " + ", ".join(c.key for c in shown)
    return text + (f"; not on {', '.join(c.key for c in lacking)}" if lacking and text.startswith("from") else "")


def _adjacent_lines(cmp: Comparison) -> list[str]:
    pairs = [(a, b) for a, b in adjacent_pairs(cmp.columns) if a is not cmp.baseline]
    if not pairs:
        return []
    prefix = common_folder(cmp.rows)
    lines = ["Between adjacent versions (each against the one before it of the same Keras package; never counted):"]
    for before, after in pairs:
        mine = [c for c in cmp.adjacent if c.column == after.label and c.against == before.label]
        parts = []
        for state in STATES:
            for kind in ("outcome", "error", "shift", "slowdown", "drift", "missing"):
                of_kind = [c for c in mine if kind_shown(c) == kind and c.state == state]
                if not of_kind:
                    continue
                factors = [c.factor for c in of_kind if c.factor is not None]
                size = f" {span(factors)}" if factors else ""
                scenarios = sorted({c.scenario for c in of_kind})
                word = "worse" if state in ("regression", "accepted") else state  # a step never blocks
                parts.append(f"{kind} {word}{size} on {len(scenarios)} ({names(scenarios, prefix)})")
        lines.append(f"- {before.key} → {after.key}: {'; '.join(parts) if parts else 'no changes'}")
    lines.append("")
    return lines


def _timing_lines(cmp: Comparison) -> list[str]:
    limits = [x for col in cmp.columns for x in cmp.detectable.get(col.label, [])]
    if not limits:
        return []
    per = ", ".join(f"{c.key} {span(cmp.detectable[c.label], 2)}" for c in cmp.columns if cmp.detectable.get(c.label))
    return [
        f"Timing: a slowdown counts above ×{cmp.rules.slowdown:g} or the product of the two runs' calibration "
        f"spreads, whichever is larger (twice that where timed on the auto sentinel's 20 epochs); detectable here: "
        f"{per}. These runs were timed at different times (perhaps on different machines): their slowdowns are "
        "indicative; `pytest-convergence gate OLD NEW` times both versions side by side, for a decision.",
        "",
    ]


def _summary(cmp: Comparison) -> str:
    """The tally: findings per state, the changes behind them, what counts."""
    found = [f for f in cmp.findings if f.state != "inconclusive"]
    per = ", ".join(f"{n} {state}" for state in STATES if (n := sum(1 for f in found if f.state == state)))
    unsure = sum(1 for c in cmp.changes if c.state == "inconclusive")
    counted = ", ".join(cmp.rules.fail_on) or "nothing"
    return (
        f"{len(found)} finding(s) ({per or 'none'}) and {unsure} inconclusive change(s), from {len(cmp.changes)} "
        f"change(s) in {len(cmp.rows)} scenario(s) × {len(cmp.columns)} version(s) against {cmp.baseline.key}; kinds "
        f"that count: {counted}"
    )


def _shorten(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep // 2] + "…" + text[-(keep - keep // 2) :]


def _code(text: str, code: bool) -> str:
    return f"`{text}`" if code else text


# CommonMark lets a backslash make any ASCII punctuation character literal, and only punctuation starts markup:
# emphasis, code, links and images, raw HTML and entities, table cells, headings, lists and quotes, and GitHub's
# extensions: links made of bare URLs (`https:`), www. names and addresses (`@`), mentions, math (`$`). Each of these
# escaped leaves text as text (, ; ' " % / ? start nothing and stay as they are, for a readable source).
_MD_PUNCTUATION = re.compile(r"([!#$&()*+\-.:<=>@\[\\\]^_`{|}~])")
_ESCAPED_PIPE = r"\|"


def _md(text: str) -> str:
    """Text for a Markdown line or table cell, read as text whatever it holds: one line, every punctuation character
    that could start markup backslash-escaped (no image, link, HTML, emphasis or table break can come from it)."""
    return _MD_PUNCTUATION.sub(r"\\\1", _one_line(text))


def _md_code(text: str) -> str:
    """Text as one code span in a table cell: fenced by one backtick more than its longest run of backticks, padded
    with a space each side (CommonMark strips one, and a backtick at either end cannot join the fence); its pipes
    escaped, which GitHub's tables read before the span (and give back as pipes). A backslash is literal in a span
    but not to the table's reading of pipes: text with one is escaped text instead."""
    flat = _one_line(text)
    if "\\" in flat:
        return _md(flat)
    fence = "`" * (max((len(run) for run in re.findall("`+", flat)), default=0) + 1)
    return f"{fence} {flat.replace('|', _ESCAPED_PIPE)} {fence}"


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


def render_html(cmp: Comparison) -> str:
    """A self-contained page: the versions, the grid, the changes, and per scenario each version's loss curves as
    a band over its seeds (min–max) with the median."""
    e = html.escape
    color = {c.label: PALETTE[i % len(PALETTE)] for i, c in enumerate(cmp.columns)}
    versions = "".join(
        f"<tr><td><b>{e(c.key)}</b></td><td>{e(c.label)}{' (baseline)' if c is cmp.baseline else ''}</td>"
        f"<td>{e(text)}</td></tr>"
        for c, text in zip(cmp.columns, _env_texts(cmp), strict=True)
    )
    grid = ["<tr><th>scenario</th>" + "".join(f"<th>{e(c.key)}</th>" for c in cmp.columns) + "</tr>"]
    for sid in cmp.rows:
        cells = []
        for c in cmp.columns:
            text = cell(cmp, sid, c)
            cls = "reg" if "!" in text else ("chg" if "~" in text or "=" in text else "")
            cells.append(f'<td class="{cls}">{e(text)}</td>')
        grid.append(f'<tr><td><a href="#{e(sid)}">{e(sid)}</a></td>{"".join(cells)}</tr>')
    changes = "".join(f"<li>{e(line[2:])}</li>" for line in _change_lines(cmp, code=False) if line.startswith("- "))
    sections = []
    for sid in cmp.rows:
        series = [
            (color[c.label], c.label, [s.get("losses", []) for s in _seeds(c.scenarios.get(sid))]) for c in cmp.columns
        ]
        legend = " ".join(f'<span style="color:{color[c.label]}">■ {e(c.key)} {e(c.label)}</span>' for c in cmp.columns)
        validation = [
            (colour, f"{title} validation", curves)
            for (colour, title, _), c in zip(series, cmp.columns, strict=True)
            if (curves := [s.get("metrics", {}).get("val_loss", []) for s in _seeds(c.scenarios.get(sid))])
            and any(curves)
        ]
        extra = f"<p>validation loss (val_loss)</p>{svg_bands(validation)}" if validation else ""
        sections.append(f'<section id="{e(sid)}"><h3>{e(sid)}</h3><p>{legend}</p>{svg_bands(series)}{extra}</section>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pytest-convergence comparison</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }} table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; font-size: 90%; }} .reg {{ background: #fdd; }}
.chg {{ background: #ffd; }} section {{ margin-top: 2em; }}
</style></head><body>
<h1>Convergence across versions: {e(decision(cmp))}</h1>
<pre>{e(chr(10).join(_one_line(line) for line in first_screen(cmp)[1:]))}</pre>
<p>{e(_summary(cmp))}.</p>
<table>{versions}</table>
<h2>Grid</h2>
<table>{"".join(grid)}</table>
<p>{"<br>".join(e(line) for line in LEGEND)}</p>
<h2>Changes against {e(cmp.baseline.key)}</h2><ul>{changes or "<li>none</li>"}</ul>
<h2>Loss curves (log scale; band: min–max over seeds, line: median; × = non-finite)</h2>
{"".join(sections)}
</body></html>
"""


def _seeds(record: ScenarioRecord | None) -> list[SeedEntry]:
    return record.get("seeds", []) if record else []
