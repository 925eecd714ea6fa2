"""A comparison (compare.Comparison) for people: terminal text within 120 columns, Markdown for a CI job summary,
and a self-contained HTML page whose loss curves show each version's seeds as a band with the median."""

from __future__ import annotations

import html
import math
import os
import statistics
import textwrap
from collections.abc import Sequence

from .compare import Change, Column, Comparison, adjacent_pairs, environment_changes
from .record import ScenarioRecord, SeedEntry

SHORT = {
    "passed": "pass",
    "failed": "FAIL",
    "error": "ERROR",
    "skipped": "skip",
    "xfailed": "xfail",
    "xpassed": "XPASS",
    None: "-",
}
LETTER = {"outcome": "o", "error": "e", "shift": "s", "slowdown": "t", "drift": "d", "missing": "m"}
LEGEND = (
    "cells: the outcome, then its changes against the baseline: ! counted  ~ reported  = declared;",
    "       o outcome  e error  s seed statistics  t time per epoch  d loss curve  m missing",
)
WIDTH = 120
ID_WIDTH = 58


def status(cmp: Comparison, change: Change) -> str:
    if change.kind == "declared":
        return "declared"
    if cmp.counted(change):
        return "REGRESSION"
    return "not counted" if change.worse else "reported"


def kind_shown(change: Change) -> str:
    """A declared change is shown as what it is (error, outcome), marked declared."""
    if change.kind == "declared":
        return "error" if change.message.startswith("error") else "outcome"
    return change.kind


def cell(cmp: Comparison, scenario: str, col: Column) -> str:
    """'pass', 'pass !t' (a counted slowdown), 'xfail =e' (a declared error), 'pass ~d' (reported drift)."""
    record = col.scenarios.get(scenario)
    text = SHORT.get(record["outcome"] if record else None, "?")
    mine = [c for c in cmp.changes if c.scenario == scenario and c.column == col.label]
    marks = sorted({_mark(cmp, c) for c in mine})
    return f"{text} {''.join(marks)}" if marks else text


def _mark(cmp: Comparison, change: Change) -> str:
    if change.kind == "declared":
        return "=" + ("e" if change.message.startswith("error") else "o")
    return ("!" if cmp.counted(change) else "~") + LETTER[change.kind]


def render_text(cmp: Comparison, width: int = WIDTH) -> str:
    """The versions, the grid, the changes (grouped, each with the version where it first appears), for a
    terminal: the grid fits 120 columns; other lines are folded within `width` (0: one line each, for grep)."""
    lines = ["Versions, oldest first:"]
    lines += [f"  {line}" for line in _versions(cmp)]
    prefix = _common_folder(cmp.rows)
    head = f"scenario (in {prefix})" if prefix else "scenario"
    names = [_shorten(sid[len(prefix) :], ID_WIDTH) for sid in cmp.rows]
    cells = [[cell(cmp, sid, c) for c in cmp.columns] for sid in cmp.rows]
    first = max([len(head), *map(len, names)])
    widths = [
        max([len(c.key) + (1 if c is cmp.baseline else 0), *(len(r[i]) for r in cells)])
        for i, c in enumerate(cmp.columns)
    ]
    keys = [c.key + ("*" if c is cmp.baseline else "") for c in cmp.columns]
    lines += ["", "  ".join([head.ljust(first), *(k.ljust(w) for k, w in zip(keys, widths, strict=True))]).rstrip()]
    lines.append("  ".join(["-" * first, *("-" * w for w in widths)]))
    for name, row in zip(names, cells, strict=True):
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


def _wrap(line: str, width: int) -> list[str]:
    """A long line folded within `width` (0: not folded), continuation indented under its text."""
    if not width or len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip(" -")) + 2)
    return textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)


def render_markdown(cmp: Comparison) -> str:
    """The same, as Markdown suited to a GitHub job summary."""
    out = [f"## Convergence across versions: {_summary(cmp)}", "", "| | version | environment |", "|---|---|---|"]
    for col, line in zip(cmp.columns, _env_texts(cmp), strict=True):
        mark = " (baseline)" if col is cmp.baseline else ""
        out.append(f"| **{col.key}** | {_md(col.label)}{mark} | {_md(line)} |")
    out += ["", "| scenario | " + " | ".join(c.key for c in cmp.columns) + " |", "|---|" + "---|" * len(cmp.columns)]
    for sid in cmp.rows:
        texts = [cell(cmp, sid, c) for c in cmp.columns]
        out.append(f"| `{_md(sid)}` | " + " | ".join(f"**{t}**" if "!" in t else t for t in texts) + " |")
    out += ["", *(f"{line.strip()}  " for line in LEGEND), ""]
    out += [_md(line) for line in _change_lines(cmp, code=True)]
    out += [_md(line) for line in _adjacent_lines(cmp)]
    out += [_md(line) for line in _timing_lines(cmp)]
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
        key = (status(cmp, ch), tuple(c.key for c in shown), tuple(c.key for c in lacking))
        groups.setdefault(key, []).append(ch)
    for (state, _, _), members in groups.items():
        scenarios = sorted({m.scenario for m in members})
        factors = [m.factor for m in members if m.factor is not None]
        where = _where(cmp, members[0].scenario, "slowdown")
        slower = "faster" if max(factors) < 1 else "slower"
        lines.append(
            f"- [slowdown, {state}] time per epoch {_span(factors)} ({slower}, relative to each run's machine "
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
            f"- [{kind_shown(ch)}, {status(cmp, ch)}] {name(ch.scenario)} {_where(cmp, ch.scenario, ch.kind)}: "
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
    lines = ["Between adjacent versions (each against the one before it of the same Keras package):"]
    for before, after in pairs:
        mine = [c for c in cmp.adjacent if c.column == after.label and c.against == before.label]
        parts = []
        for kind in ("outcome", "error", "declared", "shift", "slowdown", "drift", "missing"):
            of_kind = [c for c in mine if c.kind == kind]
            if not of_kind:
                continue
            worse = len({c.scenario for c in of_kind if c.worse})
            factors = [c.factor for c in of_kind if c.factor is not None]
            span = f" {_span(factors)}" if factors else ""
            names = sorted({c.scenario.partition("::")[2] for c in of_kind})
            which = ", ".join(names) if len(names) <= 3 else f"{len(names)} scenario(s)"
            note = "above the rounding floor" if kind == "drift" else "for the worse"
            parts.append(f"{kind}{span} on {which}" + (f" ({worse} {note})" if worse else ""))
        lines.append(f"- {before.key} → {after.key}: {'; '.join(parts) if parts else 'no changes'}")
    lines.append("")
    return lines


def _timing_lines(cmp: Comparison) -> list[str]:
    limits = [x for col in cmp.columns for x in cmp.detectable.get(col.label, [])]
    if not limits:
        return []
    per = ", ".join(f"{c.key} {_span(cmp.detectable[c.label], 2)}" for c in cmp.columns if cmp.detectable.get(c.label))
    return [
        f"Timing: a slowdown counts above ×{cmp.rules.slowdown:g} or the product of the two runs' calibration "
        f"spreads, whichever is larger (twice that where timed on the auto sentinel's 20 epochs); detectable here: "
        f"{per}. These runs were timed at different times (perhaps on different machines): their slowdowns are "
        "indicative; `pytest-convergence gate OLD NEW` times both versions side by side, for a decision.",
        "",
    ]


def _span(factors: Sequence[float], digits: int = 3) -> str:
    low, high = f"{min(factors):.{digits}g}", f"{max(factors):.{digits}g}"
    return f"×{low}" if low == high else f"×{low}–{high}"


def _summary(cmp: Comparison) -> str:
    found = cmp.regressions
    counted = ", ".join(cmp.rules.fail_on) or "nothing"
    verdict = (
        f"{len(found)} regression(s) in {len({c.scenario for c in found})} of {len(cmp.rows)} scenario(s) on "
        f"{len({c.column for c in found})} of {len(cmp.columns) - 1} version(s)"
        if found
        else f"no regressions in {len(cmp.rows)} scenario(s) × {len(cmp.columns)} version(s)"
    )
    declared = sum(c.kind == "declared" for c in cmp.changes)
    return f"{verdict}; {len(cmp.changes)} change(s) against the baseline, {declared} declared; counted: {counted}"


def _common_folder(ids: Sequence[str]) -> str:
    files = [sid.partition("::")[0] for sid in ids]
    if not files:
        return ""
    prefix = os.path.commonpath(files) if len(files) > 1 else os.path.dirname(files[0])
    if prefix in files:  # one file: keep its name
        prefix = os.path.dirname(prefix)
    return prefix + "/" if prefix else ""


def _shorten(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep // 2] + "…" + text[-(keep - keep // 2) :]


def _code(text: str, code: bool) -> str:
    return f"`{text}`" if code else text


def _md(text: str) -> str:
    """Text for a Markdown cell or line: no raw HTML, no table breaks, no line breaks."""
    return html.escape(_one_line(text), quote=False).replace("|", "\\|")


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
<h1>Convergence across versions</h1>
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


def svg_bands(series: Sequence[tuple[str, str, Sequence[Sequence[float]]]], width: int = 640, height: int = 240) -> str:
    """Loss per epoch on a log scale: per (colour, title, curves of its seeds) a min–max band and the median line;
    a × marks the first epoch where the median is non-finite."""
    finite = [v for _, _, curves in series for ls in curves for v in ls if math.isfinite(v) and v > 0]
    epochs = max((len(ls) for _, _, curves in series for ls in curves), default=0)
    if not finite or epochs == 0:
        return "<p>no finite losses recorded</p>"
    lo, hi = math.log10(min(finite)), math.log10(max(finite))
    hi = hi if hi > lo else lo + 1
    pad = 40

    def xy(i: int, v: float) -> str:
        x = pad + (width - 2 * pad) * (i / max(epochs - 1, 1))
        y = height - pad - (height - 2 * pad) * ((math.log10(v) - lo) / (hi - lo))
        return f"{x:.1f},{y:.1f}"

    inner_w, inner_h, below = width - 2 * pad, height - 2 * pad, height - pad + 14
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<rect x="{pad}" y="{pad}" width="{inner_w}" height="{inner_h}" fill="none" stroke="#ccc"/>',
        f'<text x="{pad}" y="{pad - 8}" font-size="11">{10**hi:.3g}</text>',
        f'<text x="{pad}" y="{below}" font-size="11">{10**lo:.3g} · epoch 1</text>',
        f'<text x="{width - pad}" y="{below}" font-size="11" text-anchor="end">epoch {epochs}</text>',
    ]
    for colour, title, curves in series:
        lows, highs, medians, mark = [], [], [], None
        for i in range(max((len(c) for c in curves), default=0)):
            values = [c[i] for c in curves if i < len(c)]
            good = [v for v in values if math.isfinite(v) and v > 0]
            median = statistics.median(values) if values else math.nan
            if not math.isfinite(median):
                mark = i
                break
            if good:
                lows.append(xy(i, min(good)))
                highs.append(xy(i, max(good)))
                if median > 0:
                    medians.append(xy(i, median))
        t = html.escape(title)
        if len(curves) > 1 and lows:
            band = " ".join(lows + highs[::-1])
            parts.append(
                f'<polygon fill="{colour}" fill-opacity="0.15" stroke="none" points="{band}">'
                f"<title>{t}: min–max over {len(curves)} seeds</title></polygon>"
            )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" stroke-opacity="0.9" '
            f'points="{" ".join(medians)}"><title>{t}: median</title></polyline>'
        )
        if mark is not None:
            x = xy(mark, 10**hi).split(",")[0]
            parts.append(f'<text x="{x}" y="{pad + 4}" fill="{colour}" font-size="12">×</text>')
    parts.append("</svg>")
    return "".join(parts)


def _seeds(record: ScenarioRecord | None) -> list[SeedEntry]:
    return record.get("seeds", []) if record else []
