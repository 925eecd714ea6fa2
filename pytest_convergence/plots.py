"""Loss-curve pictures (`--convergence-plots DIR`): one PNG per scenario. Matplotlib is optional.

Uses matplotlib's object API with the Agg canvas, not pyplot: no global backend or figure state
is touched in the user's test process.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .record import SeedRun

if TYPE_CHECKING:
    from .spec import Expect

INSTALL_HINT = "--convergence-plots needs matplotlib: pip install matplotlib (the plots extra of pytest-convergence)"


def available() -> bool:
    """Whether matplotlib can be imported (checked without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def path_for(folder: Path, file_id: str, name: str) -> Path:
    """DIR/<the YAML file's path without suffix>/<scenario>.png; '..' parts are kept inside DIR."""
    parts = [p if p not in ("..", ".", "") else "_" for p in PurePosixPath(file_id.replace("\\", "/")).parts]
    parts[-1] = parts[-1].rsplit(".", 1)[0]
    return folder.joinpath(*parts, f"{name}.png")


def loss_curves(path: Path, title: str, runs: Sequence[SeedRun], expect: Expect) -> Path:
    """Loss per epoch on a log scale, one line per seed; non-finite epochs marked with ×; the
    expectation's threshold drawn (converges: loss_below; diverges: growth_factor × the first loss)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    top = max((v for r in runs for v in r.losses if math.isfinite(v) and v > 0), default=1.0)
    for run in runs:
        epochs = range(1, run.epochs_run + 1)
        finite = [v if math.isfinite(v) and v > 0 else math.nan for v in run.losses]
        (line,) = axes.plot(epochs, finite, linewidth=1.2, label=f"seed {run.seed}")
        bad = [e for e, v in zip(epochs, run.losses, strict=False) if not math.isfinite(v)]
        if bad:
            axes.plot(bad, [top] * len(bad), "x", color=line.get_color(), markersize=6, clip_on=False)
            axes.axvline(bad[0], color=line.get_color(), linestyle=":", linewidth=0.8)
    levels = _thresholds(axes, runs, expect)
    axes.set_yscale("log")
    low, high = axes.get_ylim()
    if levels:  # keep the threshold in view even when the curve never comes near it
        axes.set_ylim(min(low, min(levels) / 3), max(high, max(levels) * 3))
    axes.set_xlabel("epoch")
    axes.set_ylabel("training loss (log scale; × = inf/NaN)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="major", alpha=0.3)
    if runs:
        axes.legend(fontsize=8, ncol=max(1, math.ceil(len(runs) / 8)), loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def _thresholds(axes: Any, runs: Sequence[SeedRun], expect: Expect) -> list[float]:
    """Draw the expectation's loss threshold (and epoch limit); return the loss levels drawn."""
    levels = []
    style = {"color": "black", "linestyle": "--", "linewidth": 0.9}
    if expect.converges is not None:
        c = expect.converges
        axes.axhline(c.loss_below, label=f"converges: loss < {c.loss_below:g}", **style)
        levels.append(c.loss_below)
        if c.within_epochs is not None:
            axes.axvline(c.within_epochs, color="grey", linestyle="--", linewidth=0.8)
    if expect.diverges is not None:
        d = expect.diverges
        firsts = [r.losses[0] for r in runs if r.losses and math.isfinite(r.losses[0]) and r.losses[0] > 0]
        if firsts:
            level = d.growth_factor * firsts[0]
            axes.axhline(level, label=f"diverges: {d.growth_factor:g}× first loss", **style)
            levels.append(level)
        axes.axvline(d.within_epochs, color="grey", linestyle="--", linewidth=0.8)
    return levels
