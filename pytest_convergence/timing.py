"""How fast the machine was while a scenario trained: a fixed calibration workload, timed in the training
process, so that epoch times from different runs (a loaded machine, another CI runner) can be compared.

The workload is the same for every TensorFlow/Keras version (Python and numpy only): a ratio of epoch
times to it measures the version, not the machine. Pure; the judgement that uses it lives in compare.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import numpy as np

from .record import EpochTimes

WORKLOAD = "pytest-convergence/1: 1000 × (16×16 float32 matmul, 64-key dict churn)"  # change the name if it changes
REPEATS = 5  # each side of a scenario's training


def _workload() -> float:
    """A few milliseconds of the kind of work a tiny Keras epoch does: small array ops and Python bookkeeping."""
    a = np.full((16, 16), 0.5, dtype=np.float32)
    table: dict[int, float] = {}
    total = 0.0
    for i in range(1000):
        a = (a @ a) * np.float32(0.0625) + np.float32(0.25)
        table[i % 64] = float(a[0, 0])
        total += sum(table.values())
    return total


def calibrate(repeats: int = REPEATS) -> list[float]:
    """Seconds per run of the fixed workload, `repeats` times (after one untimed warm-up)."""
    _workload()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        _workload()
        samples.append(time.perf_counter() - start)
    return samples


def spread(samples: Sequence[float]) -> float:
    """max / min of positive samples: how much the machine's speed moved while they were taken (1 = steady)."""
    good = [s for s in samples if s > 0]
    return max(good) / min(good) if good else 1.0


def epoch_summary(epoch_seconds: Sequence[Sequence[float]]) -> EpochTimes | None:
    """Median and 10th/90th percentiles of the steady epoch times of all seeds (each seed's first epoch, which
    traces and compiles the train step, left out); None with fewer than 3."""
    times = sorted(t for seed in epoch_seconds for t in seed[1:] if t > 0 and t < float("inf"))
    if len(times) < 3:
        return None
    deciles = statistics.quantiles(times, n=10, method="inclusive")
    return EpochTimes(median_s=statistics.median(times), p10_s=deciles[0], p90_s=deciles[-1], n=len(times))
