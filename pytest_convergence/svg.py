"""Loss curves as inline SVG for the comparison's HTML page: no plotting library, a few dozen lines of drawing."""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Sequence


def svg_bands(series: Sequence[tuple[str, str, Sequence[Sequence[float]]]], width: int = 640, height: int = 240) -> str:
    """Loss per epoch on a log scale: per (colour, title, curves of its seeds) a min–max band and the median line;
    a × marks the first epoch where the median is non-finite."""
    finite = [v for _, _, curves in series for ls in curves for v in ls if math.isfinite(v) and v > 0]
    epochs = max((len(ls) for _, _, curves in series for ls in curves), default=0)
    if not finite or epochs == 0:
        return "<p>no finite losses recorded</p>"
    # the axis is labelled with the losses themselves: 10 ** log10(1.8e308) overflows
    bottom, top = min(finite), max(finite)
    lo, hi = math.log10(bottom), math.log10(top)
    if hi <= lo:  # one value: a decade below it
        lo, bottom = hi - 1, top / 10
    pad = 40

    def xy(i: int, v: float) -> str:
        x = pad + (width - 2 * pad) * (i / max(epochs - 1, 1))
        y = height - pad - (height - 2 * pad) * ((math.log10(v) - lo) / (hi - lo))
        return f"{x:.1f},{y:.1f}"

    inner_w, inner_h, below = width - 2 * pad, height - 2 * pad, height - pad + 14
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<rect x="{pad}" y="{pad}" width="{inner_w}" height="{inner_h}" fill="none" stroke="#ccc"/>',
        f'<text x="{pad}" y="{pad - 8}" font-size="11">{top:.3g}</text>',
        f'<text x="{pad}" y="{below}" font-size="11">{bottom:.3g} · epoch 1</text>',
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
            x = xy(mark, top).split(",")[0]
            parts.append(f'<text x="{x}" y="{pad + 4}" fill="{colour}" font-size="12">×</text>')
    parts.append("</svg>")
    return "".join(parts)
