"""The choices the options offer — the kinds of change a comparison reports (and which fail a gate by default),
the ways data reaches fit — in a module of their own: the pytest options need them, and loading the plugin must
not import the modules behind them (numpy, pydantic, yaml, scipy, packaging).
"""

from __future__ import annotations

import typing
from typing import Literal

# auto: fit's own batches always — the dataset path where a sentinel shows every epoch equals fit on numpy arrays,
# else numpy; numpy: fit on the arrays, as user code does; dataset: fit's batches via Keras's adapter, unchecked
FitInput = Literal["auto", "numpy", "dataset"]
FitPath = Literal["numpy", "dataset"]  # what trains, once auto is decided
FIT_INPUTS: tuple[FitInput, ...] = typing.get_args(FitInput)


def fit_input(text: str) -> FitInput:
    """'auto' | 'numpy' | 'dataset' as the Literal it is; ValueError naming the choices otherwise."""
    for choice in FIT_INPUTS:
        if text == choice:
            return choice
    raise ValueError(f"expected one of {', '.join(FIT_INPUTS)}, got {text!r}")


# the kinds that can count (--fail-on) and that an accepted-changes file can accept
CountableKind = Literal["outcome", "error", "shift", "slowdown", "drift"]
COUNTABLE: tuple[CountableKind, ...] = typing.get_args(CountableKind)
# the Keras dtype policies a scenario (or the run) may train under
DtypePolicy = Literal["float32", "mixed_float16", "float64"]
DTYPE_POLICIES: tuple[DtypePolicy, ...] = typing.get_args(DtypePolicy)
# a scenario's declaration for some versions
ConditionKind = Literal["skip", "xfail"]

# the kinds of change a comparison reports, defined once; what each means, in the order the output lists them
ChangeKind = Literal["outcome", "error", "shift", "slowdown", "drift", "declared", "missing"]
KINDS: dict[ChangeKind, str] = {
    "outcome": "the test's outcome changed (passed → failed, …)",
    "error": "training raised where it did not before (an API break), or a file no longer collects",
    "shift": "a per-seed summary (final/lowest loss, decision epoch, prediction error, metric, pass rate) moved: "
    "significant over the seeds and large",
    "slowdown": "time per epoch, relative to the machine's calibration, grew beyond what the measured noise allows",
    "drift": "the loss curve moved: above its rounding floor (counted only when asked for), or within it (shown)",
    "declared": "a change the scenario declares for that version (xfail whose error occurred, skip): never counted",
    "missing": "a scenario in one results file only: never counted",
}
# Counted by default: what a real, consequential change produces and rounding, seed choice or a busy machine
# does not. Curve drift above its floor is real but, with outcomes and seed statistics unchanged, a numerical
# difference (summation order, a kernel): shown, counted only when asked for (--fail-on …,drift).
DEFAULT_FAIL_ON: tuple[CountableKind, ...] = ("outcome", "error", "shift", "slowdown")
# What makes a build differ in `bisect` (either way; never a change within the noise), and its bound per probe
BISECT_KINDS: tuple[CountableKind, ...] = ("outcome", "error", "shift", "drift")
BISECT_PROBE_TIMEOUT_S = 900.0


def parse_fail_on(text: str) -> tuple[CountableKind, ...]:
    """'outcome,error' → ('outcome', 'error'); 'none' → (); raises ValueError naming what is allowed."""
    if text.strip() == "none":
        return ()
    given = [k.strip() for k in text.split(",") if k.strip()]
    kinds = tuple(k for k in COUNTABLE if k in given)
    unknown = [k for k in given if k not in COUNTABLE]
    if unknown or not kinds:
        raise ValueError(
            f"unknown change kind(s) {unknown or [text]}; choose from {', '.join(COUNTABLE)}, "
            "comma-separated, or 'none'"
        )
    return tuple(sorted(kinds, key=given.index))
