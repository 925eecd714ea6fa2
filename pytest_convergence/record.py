"""What one training run produced, as plain data: the unit that expectations judge and results store."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

TIME_LIMIT = "time limit"  # a stop_reason: the scenario's timeout_s ran out


@dataclass
class SeedRun:
    """The outcome of training one scenario with one seed. Epochs are counted from 1."""

    seed: int
    losses: list[float] = field(default_factory=list)  # one per epoch run
    metrics: dict[str, list[float]] = field(default_factory=dict)  # compiled metrics, per epoch
    epoch_seconds: list[float] = field(default_factory=list)
    fit_seconds: float = 0.0
    epochs_planned: int = 0
    stop_reason: str = "completed"  # completed | non-finite loss | expectations decided | time limit
    predictions: list[list[float]] = field(default_factory=list)  # one row per expect.predict point
    error: str | None = None  # "ValueError: ..." when the run raised and the scenario expected it
    error_types: list[str] = field(default_factory=list)  # the exception's class names, most derived first
    # How far the loss curve moved when the same seed trained again from initial weights moved by one ulp
    # (largest relative difference over the epochs, and where): the curve's rounding floor. None: not measured.
    rounding_floor: float | None = None
    rounding_floor_epoch: int | None = None

    @property
    def epochs_run(self) -> int:
        return len(self.losses)

    @property
    def first_nonfinite_epoch(self) -> int | None:
        for epoch, loss in enumerate(self.losses, start=1):
            if not math.isfinite(loss):
                return epoch
        return None

    def measure_floor(self, perturbed_losses: list[float]) -> None:
        """Keep the rounding floor: the largest relative difference between this curve and `perturbed_losses`."""
        worst, where = 0.0, None
        for epoch, (a, b) in enumerate(zip(self.losses, perturbed_losses, strict=False), start=1):
            rel = relative_difference(a, b)
            if where is None or rel > worst:
                worst, where = rel, epoch
        self.rounding_floor, self.rounding_floor_epoch = worst, where

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["epochs_run"] = self.epochs_run
        out["first_nonfinite_epoch"] = self.first_nonfinite_epoch
        return out


def relative_difference(a: float, b: float) -> float:
    """|a − b| / max(|a|, |b|); 0 for equal values (inf and inf, NaN and NaN too), inf for finite against not."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return 0.0 if a == b or (math.isnan(a) and math.isnan(b)) else math.inf
    scale = max(abs(a), abs(b))
    return abs(a - b) / scale if scale > 0 else 0.0
