"""Seed statistics: did a per-seed summary (final loss, decision epoch, prediction error, …) move between two
versions, judged over the seeds of each? Pure; scipy.stats supplies the test.

A change counts only when three things hold: it is significant (two-sided Mann–Whitney U, Holm-corrected over
the summaries of one scenario), it is large in rank terms (|Cliff's δ| ≥ 0.474, "large" by Romano et al.), and it
is large in the summary's own units (e.g. the median final loss moved by ×2 or more). Significance alone lets a
tiny systematic shift fail a gate; size alone lets seed luck fail it. With too few seeds for the test ever to
reach significance, a large move is reported as "too few seeds to tell", never counted.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

LARGE_DELTA = 0.474
# per summary: (scale, practical threshold on that scale, which direction is worse)
#   log: |Δ log10 median| ≥ threshold; relative: |Δ median| / |baseline median| ≥ threshold;
#   epochs: |Δ median| ≥ max(2, threshold × baseline median); absolute: |Δ mean| ≥ threshold
LOG2 = math.log10(2.0)
RULES: dict[str, tuple[str, float, str]] = {
    "final_loss": ("log", LOG2, "up"),
    "lowest_loss": ("log", LOG2, "up"),
    "prediction_error": ("log", LOG2, "up"),
    "converges_epoch": ("epochs", 0.1, "up"),
    "diverges_epoch": ("epochs", 0.1, "either"),
    "passed": ("absolute", 0.25, "down"),
}
METRIC_RULE = ("relative", 0.05, "up")  # metric:<name>; higher is worse unless the name says otherwise
HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1", "iou", "r2")
PLAIN_NAMES = {
    "final_loss": "final loss",
    "lowest_loss": "lowest loss",
    "prediction_error": "prediction error",
    "converges_epoch": "epoch of convergence",
    "diverges_epoch": "epoch of divergence",
    "passed": "pass rate",
}


@dataclass(frozen=True)
class Shift:
    """One summary compared over the seeds of two versions."""

    key: str
    n_base: int
    n_new: int
    p: float  # two-sided Mann–Whitney U
    p_holm: float  # Holm-corrected over the scenario's summaries
    delta: float  # Cliff's δ: P(new > base) − P(new < base)
    base_median: float  # the mean for a rate (pass rate)
    new_median: float
    size: float  # the move in the summary's own units (see RULES), signed
    threshold: float
    worse: bool  # the move is in the worse direction
    enough_seeds: bool  # could the test reach significance at all with these n?
    alpha: float
    paired: bool = False  # seeds matched by their initial weights: Wilcoxon signed-rank on the differences

    @property
    def large(self) -> bool:
        return abs(self.delta) >= LARGE_DELTA and abs(self.size) >= self.threshold

    @property
    def significant(self) -> bool:
        # below the smallest p the exact test can give, only a tie-corrected approximation gets there: not trusted
        return self.p_holm < self.alpha and self.enough_seeds

    @property
    def counts(self) -> bool:
        """A real change for the worse: significant, large in ranks and in units."""
        return self.significant and self.large and self.worse

    @property
    def verdict(self) -> str:
        """shifted | too few seeds | none"""
        if self.significant and self.large:
            return "shifted"
        if not self.enough_seeds and abs(self.delta) == 1.0 and abs(self.size) >= self.threshold:
            return "too few seeds"
        return "none"

    @property
    def name(self) -> str:
        return PLAIN_NAMES.get(self.key, self.key.replace("metric:", "final "))

    def describe(self) -> str:
        """'final loss median 1.6e-04 → 2.6e-04 (×1.6), Mann–Whitney p = 0.39, Cliff's δ = 0.19, n = 8 vs 8'"""
        if self.key == "passed":
            return (
                f"pass rate {self.base_median:.0%} → {self.new_median:.0%}, Mann–Whitney p = {self.p:.2g}, "
                f"n = {self.n_base} vs {self.n_new}"
            )
        move = _move(self.key, self.base_median, self.new_median)
        p = f"p = {self.p:.2g}" + (f" (Holm {self.p_holm:.2g})" if self.p_holm != self.p else "")
        if self.paired:
            return (
                f"{self.name} median {_num(self.base_median)} → {_num(self.new_median)}{move}, Wilcoxon signed-rank "
                f"{p}, {self.n_base} seeds paired by their initial weights, sign balance {self.delta:+.2f}"
            )
        return (
            f"{self.name} median {_num(self.base_median)} → {_num(self.new_median)}{move}, Mann–Whitney {p}, "
            f"Cliff's δ = {self.delta:+.2f}, n = {self.n_base} vs {self.n_new}"
        )


def compare_summaries(base: Sequence[dict[str, float]], new: Sequence[dict[str, float]], alpha: float) -> list[Shift]:
    """Every summary both sides have, compared; identical samples are left out (nothing moved)."""
    keys = sorted({k for s in base for k in s} & {k for s in new for k in s})
    found = []
    for key in keys:
        a = [_clean(s[key]) for s in base if key in s]
        b = [_clean(s[key]) for s in new if key in s]
        if not a or not b or sorted(a) == sorted(b):
            continue
        found.append((key, a, b, mann_whitney(a, b)))
    adjusted = holm([p for *_, p in found])
    return [_shift(key, a, b, p, p_holm, alpha) for (key, a, b, p), p_holm in zip(found, adjusted, strict=True)]


def compare_pairs(base: Sequence[dict[str, float]], new: Sequence[dict[str, float]], alpha: float) -> list[Shift]:
    """Like `compare_summaries`, for seeds that are matched pairs (`base[i]` and `new[i]` started from the same
    initial weights): each summary's per-seed differences on its own scale (log10 for losses), tested with the
    Wilcoxon signed-rank test (exact for small samples), Holm-corrected over the summaries. The rank effect is the
    sign balance (seeds that moved up − seeds that moved down) / seeds; the size is the median difference."""
    keys = sorted({k for s in base for k in s} & {k for s in new for k in s})
    found = []
    for key in keys:
        pairs = [(_clean(a[key]), _clean(b[key])) for a, b in zip(base, new, strict=True) if key in a and key in b]
        if not pairs or all(x == y for x, y in pairs):
            continue
        found.append((key, pairs, wilcoxon([_on_scale(key, y) - _on_scale(key, x) for x, y in pairs])))
    adjusted = holm([p for *_, p in found])
    return [
        _paired_shift(key, pairs, p, p_holm, alpha) for (key, pairs, p), p_holm in zip(found, adjusted, strict=True)
    ]


def wilcoxon(differences: Sequence[float]) -> float:
    """Two-sided p of the Wilcoxon signed-rank test (zero differences dropped; exact without ties); 1 when no
    difference is non-zero."""
    from scipy import stats

    moved = [d for d in differences if d != 0 and not math.isnan(d)]
    if not moved:
        return 1.0
    p = float(stats.wilcoxon(moved, zero_method="wilcox", alternative="two-sided").pvalue)
    return 1.0 if math.isnan(p) else p


def smallest_paired_p(n: int) -> float:
    """The smallest two-sided p of the signed-rank (or sign) test with n pairs: 2 / 2^n."""
    return min(1.0, 2.0 / 2.0**n)


def _on_scale(key: str, value: float) -> float:
    """A summary on the scale its practical threshold is stated in (RULES): log10 for losses."""
    scale = RULES.get(key, METRIC_RULE)[0]
    if scale == "log":
        return _log(value)
    return 300.0 if math.isinf(value) else value


def _paired_shift(key: str, pairs: list[tuple[float, float]], p: float, p_holm: float, alpha: float) -> Shift:
    scale, threshold, worse_way = _rule(key)
    a = [x for x, _ in pairs]
    b = [y for _, y in pairs]
    differences = [_on_scale(key, y) - _on_scale(key, x) for x, y in pairs]
    ma, mb = statistics.median(a), statistics.median(b)
    size = statistics.median(differences)
    if scale == "epochs":
        threshold = max(2.0, threshold * abs(ma))
    elif scale == "absolute":
        ma, mb = statistics.fmean(a), statistics.fmean(b)
        size = mb - ma
    elif scale == "relative":
        size = size / max(abs(ma), 1e-12)
    up = sum(1 for d in differences if d > 0)
    down = sum(1 for d in differences if d < 0)
    worse = worse_way == "either" or (size > 0 if worse_way == "up" else size < 0)
    return Shift(
        key=key,
        n_base=len(pairs),
        n_new=len(pairs),
        p=p,
        p_holm=p_holm,
        delta=(up - down) / len(pairs),
        base_median=ma,
        new_median=mb,
        size=size,
        threshold=threshold,
        worse=worse,
        enough_seeds=smallest_paired_p(len(pairs)) < alpha,
        alpha=alpha,
        paired=True,
    )


def ratio_interval(base: Sequence[float], new: Sequence[float], confidence: float) -> tuple[float, float, float]:
    """Paired timings (round i of each side measured back to back): the geometric mean of new/base and its
    two-sided confidence interval (Student t on the log ratios). With one round the interval is unbounded."""
    from scipy import stats

    logs = [math.log(b / a) for a, b in zip(base, new, strict=True) if a > 0 and b > 0]
    if not logs:
        return 1.0, 0.0, math.inf
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(mean), 0.0, math.inf
    half = float(stats.t.ppf(0.5 + confidence / 2, len(logs) - 1)) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p of Mann–Whitney U (exact for small samples without ties, else the normal approximation)."""
    from scipy import stats

    if len(set(a) | set(b)) == 1:
        return 1.0
    p = float(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue)
    return 1.0 if math.isnan(p) else p


def smallest_p(n_base: int, n_new: int) -> float:
    """The smallest two-sided p Mann–Whitney U can give with these sample sizes: 2 / C(n1 + n2, n1)."""
    return min(1.0, 2.0 / math.comb(n_base + n_new, n_base))


def seeds_needed(alpha: float) -> int:
    """The fewest seeds per side with which a complete separation is significant at `alpha`."""
    n = 1
    while smallest_p(n, n) >= alpha:
        n += 1
    return n


def cliffs_delta(a: Sequence[float], b: Sequence[float]) -> float:
    """P(b > a) − P(b < a) over all pairs: −1 … 1, 0 when the samples interleave evenly."""
    greater = sum(1 for x in a for y in b if y > x)
    less = sum(1 for x in a for y in b if y < x)
    return (greater - less) / (len(a) * len(b))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the given order."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [1.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def _shift(key: str, a: list[float], b: list[float], p: float, p_holm: float, alpha: float) -> Shift:
    scale, threshold, worse_way = _rule(key)
    ma, mb = statistics.median(a), statistics.median(b)
    if scale == "log":
        size = _log(mb) - _log(ma)
    elif scale == "epochs":
        size, threshold = mb - ma, max(2.0, threshold * abs(ma))
    elif scale == "absolute":  # a rate: compare means (the medians of 0/1 values say little)
        ma, mb = statistics.fmean(a), statistics.fmean(b)
        size = mb - ma
    else:
        size = (mb - ma) / max(abs(ma), 1e-12)
    worse = worse_way == "either" or (size > 0 if worse_way == "up" else size < 0)
    return Shift(
        key=key,
        n_base=len(a),
        n_new=len(b),
        p=p,
        p_holm=p_holm,
        delta=cliffs_delta(a, b),
        base_median=ma,
        new_median=mb,
        size=size,
        threshold=threshold,
        worse=worse,
        enough_seeds=smallest_p(len(a), len(b)) < alpha,
        alpha=alpha,
    )


def _rule(key: str) -> tuple[str, float, str]:
    """(scale, practical threshold, which way is worse) of a summary: RULES, else a metric's (higher is worse unless
    its name says it is a score)."""
    scale, threshold, worse_way = RULES.get(key, METRIC_RULE)
    if key.startswith("metric:") and any(w in key.lower() for w in HIGHER_IS_BETTER):
        worse_way = "down"
    return scale, threshold, worse_way


def _clean(value: float) -> float:
    return math.inf if math.isnan(value) else value  # a NaN loss is the worst outcome, not a missing one


def _log(value: float) -> float:
    if math.isinf(value):
        return 300.0
    return math.log10(max(value, 1e-30))


def _move(key: str, a: float, b: float) -> str:
    scale = RULES.get(key, METRIC_RULE)[0]
    if scale == "log" and a > 0 and math.isfinite(a) and math.isfinite(b):
        return f" (×{b / a:.3g})"
    return ""


def _num(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else str(value)
