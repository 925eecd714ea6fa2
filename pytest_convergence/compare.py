"""Several results files (one per TensorFlow/Keras version) → a scenarios × versions grid and the changes
against a baseline version, as terminal text, Markdown or a self-contained HTML page, plus an exit code.

Pure: reads JSON written by `results.write`, never imports pytest or Keras.
"""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from . import results

KINDS = ("outcome", "error", "drift", "slowdown", "missing")
DEFAULT_FAIL_ON = ("outcome", "error", "drift", "slowdown")
DEFAULT_LOSS_RTOL = 0.01
DEFAULT_SLOWDOWN = 2.0
FAILING_OUTCOMES = ("failed", "error", "xpassed")
SHORT = {
    "passed": "pass",
    "failed": "FAIL",
    "error": "ERROR",
    "skipped": "skip",
    "xfailed": "xfail",
    "xpassed": "XPASS",
    None: "-",
}


class CompareInputError(Exception):
    """A results file that is missing or not one: exit code 2, with this message."""


@dataclass(frozen=True)
class Column:
    """One results file: the runs of one TensorFlow/Keras version."""

    label: str
    path: Path
    environment: dict[str, Any]
    scenarios: dict[str, dict[str, Any]]  # by id
    collection_errors: dict[str, str]  # file → message

    @property
    def sort_key(self) -> tuple[Any, ...]:
        return (_version(self.environment.get("tensorflow")), _version(self.environment.get("keras")), self.label)


@dataclass(frozen=True)
class Change:
    scenario: str
    column: str
    kind: str  # one of KINDS
    message: str
    worse: bool  # a change for the worse (an improvement is reported, never counted)


@dataclass(frozen=True)
class Settings:
    loss_rtol: float = DEFAULT_LOSS_RTOL
    slowdown: float = DEFAULT_SLOWDOWN
    fail_on: tuple[str, ...] = DEFAULT_FAIL_ON


@dataclass
class Comparison:
    columns: list[Column]
    baseline: Column
    settings: Settings
    rows: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.worse and c.kind in self.settings.fail_on]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    def cell(self, scenario: str, column: Column) -> str:
        record = column.scenarios.get(scenario)
        text = SHORT[record["outcome"]] if record else SHORT[None]
        mine = [c for c in self.changes if c.scenario == scenario and c.column == column.label]
        counted = [c.kind for c in mine if c in self.regressions]
        if counted:
            return f"{text} ! {'+'.join(counted)}"
        return f"{text} ~ {'+'.join(c.kind for c in mine)}" if mine else text


def load(paths: Sequence[Path]) -> list[Column]:
    """Read results files, ordered oldest version first. Raises CompareInputError with a clear message."""
    if not paths:
        raise CompareInputError("give at least one results file (written by pytest --convergence-json)")
    columns = []
    for path in paths:
        try:
            doc = results.read(path)
        except FileNotFoundError:
            raise CompareInputError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CompareInputError(f"{path}: cannot read: {exc}") from None
        except ValueError as exc:  # json.JSONDecodeError is one
            raise CompareInputError(f"{path}: not a results file: {exc}") from None
        columns.append(column(doc, Path(path)))
    seen: dict[str, int] = {}
    for c in columns:
        seen[c.label] = seen.get(c.label, 0) + 1
    columns = [
        Column(f"{c.label} [{c.path.stem}]", c.path, c.environment, c.scenarios, c.collection_errors)
        if seen[c.label] > 1
        else c
        for c in columns
    ]
    return sorted(columns, key=lambda c: c.sort_key)


def column(doc: dict[str, Any], path: Path) -> Column:
    """One results document as a column of the grid."""
    try:
        scenarios = {s["id"]: s for s in doc["scenarios"]}
        errors = {e["file"]: e["message"] for e in doc.get("collection_errors", [])}
        env = dict(doc["environment"])
    except (KeyError, TypeError) as exc:
        raise CompareInputError(f"{path}: malformed results file (missing {exc})") from None
    return Column(label(env), path, env, scenarios, errors)


def label(env: dict[str, Any]) -> str:
    """'TF 2.15.1 · Keras 2.15.0', or '… · tf_keras 2.21.0' for legacy Keras."""
    package = env.get("keras_package") or "keras"
    name = "Keras" if package == "keras" else package
    return f"TF {env.get('tensorflow') or '?'} · {name} {env.get('keras') or '?'}"


def pick_baseline(columns: Sequence[Column], wanted: str | None) -> Column:
    """The column named by `wanted` (a label, a file, or a unique part of a label); the oldest by default."""
    if wanted is None:
        return columns[0]
    for column in columns:
        if wanted in (column.label, str(column.path), column.path.name):
            return column
    hits = [c for c in columns if wanted in c.label]
    if len(hits) == 1:
        return hits[0]
    known = "; ".join(c.label for c in columns)
    raise CompareInputError(f"--baseline {wanted!r} matches {len(hits)} of the versions given: {known}")


def compare(columns: Sequence[Column], baseline: Column, settings: Settings = Settings()) -> Comparison:
    result = Comparison(list(columns), baseline, settings)
    result.rows = sorted({sid for c in columns for sid in c.scenarios})
    for sid in result.rows:
        for column in columns:
            if column is not baseline:
                result.changes.extend(_changes(sid, baseline, column, settings))
    return result


def _changes(sid: str, base_col: Column, col: Column, s: Settings) -> Iterable[Change]:
    base, new = base_col.scenarios.get(sid), col.scenarios.get(sid)
    file = sid.partition("::")[0]
    if base is None or new is None:
        where, missing_in = (base_col, "baseline") if base is None else (col, col.label)
        if file in where.collection_errors:
            first = where.collection_errors[file].splitlines()[0]
            yield Change(sid, col.label, "error", f"collection error in {missing_in}: {first}", new is None)
        else:
            yield Change(sid, col.label, "missing", f"not in the results of {missing_in}", False)
        return
    base_error, new_error = base.get("error"), new.get("error")
    if not base_error and new_error:
        yield Change(sid, col.label, "error", f"error appeared: {new_error}", True)
    elif base_error and not new_error:
        yield Change(sid, col.label, "error", f"error vanished (was: {base_error})", False)
    elif base["outcome"] != new["outcome"]:
        worse = new["outcome"] in FAILING_OUTCOMES or (base["outcome"] == "passed" and new["outcome"] != "passed")
        yield Change(sid, col.label, "outcome", f"{base['outcome']} → {new['outcome']}", worse)
    drift = _worst_drift(base, new)
    if drift is not None and drift[0] > s.loss_rtol:
        rel, seed, epoch, a, b = drift
        yield Change(
            sid,
            col.label,
            "drift",
            f"loss curve drifted: {_pct(rel)} at epoch {epoch} (seed {seed}: {_num(a)} → {_num(b)}); "
            f"tolerance {_pct(s.loss_rtol)}",
            True,
        )
    ratio = _slowdown(base, new)
    if ratio is not None and ratio[0] > s.slowdown:
        factor, before, after = ratio
        yield Change(
            sid,
            col.label,
            "slowdown",
            f"median epoch time ×{factor:.1f} ({before * 1000:.2g} ms → {after * 1000:.2g} ms); limit ×{s.slowdown:g}",
            True,
        )


def _worst_drift(base: dict[str, Any], new: dict[str, Any]) -> tuple[float, int, int, float, float] | None:
    """(relative difference, seed, epoch, baseline loss, new loss) at the worst epoch over shared seeds."""
    worst = None
    new_seeds = {s["seed"]: s for s in new.get("seeds", [])}
    for seed in base.get("seeds", []):
        other = new_seeds.get(seed["seed"])
        if other is None:
            continue
        for epoch, (a, b) in enumerate(zip(seed.get("losses", []), other.get("losses", []), strict=False), start=1):
            rel = _relative(a, b)
            if worst is None or rel > worst[0]:
                worst = (rel, seed["seed"], epoch, a, b)
    return worst


def _relative(a: float, b: float) -> float:
    if not (math.isfinite(a) and math.isfinite(b)):
        both_nan = math.isnan(a) and math.isnan(b)
        return 0.0 if a == b or both_nan else math.inf
    scale = max(abs(a), abs(b))
    return abs(a - b) / scale if scale > 0 else 0.0


def _slowdown(base: dict[str, Any], new: dict[str, Any]) -> tuple[float, float, float] | None:
    """(ratio, baseline median, new median) of the per-epoch fit time, all seeds pooled; None when the
    two runs fed fit differently (numpy vs the dataset path): their times say nothing about the versions."""
    if _fit_input(base) != _fit_input(new):
        return None
    before, after = _epoch_times(base), _epoch_times(new)
    if len(before) < 3 or len(after) < 3:
        return None
    b, a = statistics.median(before), statistics.median(after)
    return (a / b, b, a) if b > 0 else None


def _fit_input(record: dict[str, Any]) -> str:
    return str((record.get("runtime") or {}).get("fit_input", "numpy"))


def _epoch_times(record: dict[str, Any]) -> list[float]:
    # the first epoch of a run includes tracing and compiling the train step: not the steady cost
    return [t for s in record.get("seeds", []) for t in s.get("epoch_seconds", [])[1:] if math.isfinite(t)]


def _version(text: Any) -> Version:
    try:
        return Version(str(text))
    except InvalidVersion:
        return Version("0")


def _pct(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2%}"


def _num(value: float) -> str:
    return f"{value:.4g}"


# ---- rendering -------------------------------------------------------------------------------------------


def render_text(cmp: Comparison) -> str:
    """The grid and the list of changes, for a terminal."""
    headers = ["scenario", *(c.label + (" (baseline)" if c is cmp.baseline else "") for c in cmp.columns)]
    rows = [[sid, *(cmp.cell(sid, c) for c in cmp.columns)] for sid in cmp.rows]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines += ["", "! changes that count as regressions   ~ changes reported only", ""]
    lines += _change_lines(cmp, bullet="- ")
    lines.append(_summary(cmp))
    return "\n".join(lines)


def render_markdown(cmp: Comparison) -> str:
    """The same, as Markdown suited to a GitHub job summary."""
    out = [f"## Convergence across versions: {_summary(cmp)}", ""]
    heads = ["scenario", *(f"{c.label}{' (baseline)' if c is cmp.baseline else ''}" for c in cmp.columns)]
    out += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for sid in cmp.rows:
        cells = []
        for c in cmp.columns:
            text = cmp.cell(sid, c)
            cells.append(f"**{text}**" if " ! " in text else text)
        out.append(f"| `{sid}` | " + " | ".join(cells) + " |")
    out += ["", "`!` changes that count as regressions, `~` changes reported only.", ""]
    out += _change_lines(cmp, bullet="- ", code=True)
    return "\n".join(out) + "\n"


def _change_lines(cmp: Comparison, bullet: str, code: bool = False) -> list[str]:
    if not cmp.changes:
        return [f"No changes against {cmp.baseline.label}.", ""]
    lines = [f"Changes against {cmp.baseline.label}:"]
    for ch in cmp.changes:
        mark = "REGRESSION" if ch in cmp.regressions else ("worse, not counted" if ch.worse else "better/neutral")
        sid = f"`{ch.scenario}`" if code else ch.scenario
        lines.append(f"{bullet}[{ch.kind}, {mark}] {sid} on {ch.column}: {ch.message}")
    lines.append("")
    return lines


def _summary(cmp: Comparison) -> str:
    n = len(cmp.regressions)
    counted = ", ".join(cmp.settings.fail_on) or "nothing"
    verdict = f"{n} regression(s)" if n else "no regressions"
    return (
        f"{verdict} in {len(cmp.rows)} scenario(s) × {len(cmp.columns)} version(s); "
        f"{len(cmp.changes)} change(s) in all; counted: {counted}"
    )


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


def render_html(cmp: Comparison) -> str:
    """A self-contained page: the grid, the changes, and per scenario the loss curves of every version."""
    e = html.escape
    color = {c.label: PALETTE[i % len(PALETTE)] for i, c in enumerate(cmp.columns)}
    grid = ["<tr><th>scenario</th>" + "".join(f"<th>{e(c.label)}</th>" for c in cmp.columns) + "</tr>"]
    for sid in cmp.rows:
        cells = []
        for c in cmp.columns:
            text = cmp.cell(sid, c)
            cls = "reg" if " ! " in text else ("chg" if " ~ " in text else "")
            cells.append(f'<td class="{cls}">{e(text)}</td>')
        grid.append(f'<tr><td><a href="#{e(sid)}">{e(sid)}</a></td>{"".join(cells)}</tr>')
    changes = "".join(
        f'<li class="{"reg" if ch in cmp.regressions else ""}"><b>{e(ch.kind)}</b> {e(ch.scenario)} '
        f"on {e(ch.column)}: {e(ch.message)}</li>"
        for ch in cmp.changes
    )
    sections = []
    for sid in cmp.rows:
        series = [
            (c.label, seed["seed"], seed.get("losses", []))
            for c in cmp.columns
            for seed in c.scenarios.get(sid, {}).get("seeds", [])
        ]
        legend = " ".join(f'<span style="color:{color[c.label]}">■ {e(c.label)}</span>' for c in cmp.columns)
        sections.append(
            f'<section id="{e(sid)}"><h3>{e(sid)}</h3><p>{legend}</p>'
            f"{svg_curves([(color[lab], f'{lab} seed {seed}', ls) for lab, seed, ls in series])}</section>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pytest-convergence comparison</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }} table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; font-size: 90%; }} .reg {{ background: #fdd; }}
.chg {{ background: #ffd; }} li.reg {{ background: none; color: #b00; }} section {{ margin-top: 2em; }}
</style></head><body>
<h1>Convergence across versions</h1>
<p>{e(_summary(cmp))}. Baseline: {e(cmp.baseline.label)}.</p>
<table>{"".join(grid)}</table>
<h2>Changes</h2><ul>{changes or "<li>none</li>"}</ul>
<h2>Loss curves (log scale, × = non-finite)</h2>
{"".join(sections)}
</body></html>
"""


def svg_curves(series: Sequence[tuple[str, str, Sequence[float]]], width: int = 640, height: int = 240) -> str:
    """Loss per epoch on a log scale, one polyline per (colour, title, losses); a × marks a non-finite loss."""
    finite = [v for _, _, ls in series for v in ls if math.isfinite(v) and v > 0]
    epochs = max((len(ls) for _, _, ls in series), default=0)
    if not finite or epochs == 0:
        return "<p>no finite losses recorded</p>"
    lo, hi = math.log10(min(finite)), math.log10(max(finite))
    hi = hi if hi > lo else lo + 1
    pad = 40

    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad + (width - 2 * pad) * (i / max(epochs - 1, 1))
        y = height - pad - (height - 2 * pad) * ((math.log10(v) - lo) / (hi - lo))
        return x, y

    inner_w, inner_h, below = width - 2 * pad, height - 2 * pad, height - pad + 14
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<rect x="{pad}" y="{pad}" width="{inner_w}" height="{inner_h}" fill="none" stroke="#ccc"/>',
        f'<text x="{pad}" y="{pad - 8}" font-size="11">{10**hi:.3g}</text>',
        f'<text x="{pad}" y="{below}" font-size="11">{10**lo:.3g} · epoch 1</text>',
        f'<text x="{width - pad}" y="{below}" font-size="11" text-anchor="end">epoch {epochs}</text>',
    ]
    for colour, title, losses in series:
        points, marks = [], []
        for i, v in enumerate(losses):
            if math.isfinite(v) and v > 0:
                points.append("{:.1f},{:.1f}".format(*xy(i, v)))
            elif not math.isfinite(v):
                x, _ = xy(i, 10**hi)
                marks.append(f'<text x="{x:.1f}" y="{pad + 4}" fill="{colour}" font-size="12">×</text>')
                break
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" stroke-opacity="0.8" '
            f'points="{" ".join(points)}"><title>{html.escape(title)}</title></polyline>'
        )
        parts.extend(marks)
    parts.append("</svg>")
    return "".join(parts)
