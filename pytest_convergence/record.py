"""What training produced, as plain data: `SeedRun` (one seed's run, what expectations judge) and the typed
structures of the results file (`Document` → `ScenarioRecord` → `SeedEntry`), defined once here for every writer
(results.py, collect.py) and reader (compare.py), and the source of the results file's JSON Schema (schemas.py).

Keys a reader cannot do without are required; the writer always writes every key. A newer writer may add keys:
readers ignore what they do not know.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

from typing_extensions import Required, TypedDict  # pydantic reads these on Python < 3.12 too

from .choices import ConditionKind

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
    # completed | non-finite loss | expectations decided | time limit | callback <Name> (e.g. EarlyStopping)
    stop_reason: str = "completed"
    predictions: list[list[float]] = field(default_factory=list)  # one row per expect.predict point
    error: str | None = None  # "ValueError: ..." when the run raised and the scenario expected it
    error_types: list[str] = field(default_factory=list)  # the exception's class names, most derived first
    # How far the loss curve moved when the same seed trained again from initial weights moved by one ulp
    # (largest relative difference over the epochs, and where): the curve's rounding floor. None: not measured.
    rounding_floor: float | None = None
    rounding_floor_epoch: int | None = None
    jit_compile: bool | None = None  # whether the train step used XLA, as Keras resolved it; None: not said
    units: list[UnitState] = field(default_factory=list)  # stuck units at the end of training (layer lists only)
    # sha256 (first 16 hex digits) of the initial weights this seed drew: where two versions' hashes agree, the
    # seed is a matched pair between them (the gate's paired tests); None: not recorded
    initial_weights: str | None = None

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


class _JsonReal:
    """JSON Schema of a float that the results file writes as a string when it is not finite (see results.py)."""

    @staticmethod
    def __get_pydantic_json_schema__(core_schema: Any, handler: Any) -> dict[str, Any]:
        return {"anyOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]}


Real = Annotated[float, _JsonReal()]
Outcome = Literal["passed", "failed", "error", "skipped", "xfailed", "xpassed"]


class UnitState(TypedDict):
    """One layer's units at the end of training: how many are stuck (ReLU: 0 for every training sample, dead;
    sigmoid/tanh: within 0.01 of their asymptotes for 99 % of the samples, saturated). Their gradient is (almost)
    zero."""

    layer: str
    activation: str  # relu | sigmoid | tanh
    units: int
    stuck: int


class Check(TypedDict):
    expectation: str  # converges, diverges, predict, metric, raises, stable, pass_rate
    ok: bool
    message: str


class SeedEntry(TypedDict, total=False):
    """One seed of a scenario: SeedRun's fields, then how it was judged."""

    seed: Required[int]
    losses: list[Real]
    metrics: dict[str, list[Real]]
    epoch_seconds: list[Real]
    fit_seconds: Real
    epochs_planned: int
    stop_reason: str
    predictions: list[list[Real]]
    error: str | None
    error_types: list[str]
    rounding_floor: Real | None
    rounding_floor_epoch: int | None
    jit_compile: bool | None
    units: list[UnitState]
    initial_weights: str | None
    epochs_run: int
    first_nonfinite_epoch: int | None
    outcome: Literal["passed", "failed", "error"]
    checks: list[Check]
    summary: dict[str, Real]  # what compare's seed statistics use: final_loss, lowest_loss, converged_epoch …


class Declared(TypedDict):
    """The scenario's `skip:` or `xfail:` entry that applied to this run."""

    kind: ConditionKind
    where: str
    reason: str


class Runtime(TypedDict, total=False):
    """What a difference between two runs could come from, besides the versions."""

    op_determinism: bool
    intra_op_threads: int
    inter_op_threads: int
    xdist_workers: int
    PYTHONHASHSEED: str | None
    TF_USE_LEGACY_KERAS: str | None
    timeout_s: float | None
    fit_input: str  # the path that trained: numpy | dataset ("": nothing trained, e.g. the child died first)
    fit_input_asked: str  # auto | numpy | dataset
    # the batches `fit` makes of the numpy arrays, in its order: fit on the arrays, or the fast path that the auto
    # sentinel proved equal to it (records written before this key: numpy only)
    fit_batches: bool
    isolate: int  # scenarios per training child (--convergence-isolate); 0: trained in the pytest process
    pid: int  # the process that trained (a child's with --convergence-isolate)
    child_rss_mib: float  # that child's resident size after the scenario (--convergence-isolate only)
    noise_floor: bool
    dtype_policy: str  # float32 | mixed_float16 | float64: the Keras dtype policy the scenario trained under
    jit_compile: bool | None  # XLA for the train step, as asked (None: Keras's default); each seed says what ran
    ray_node: str  # the Ray node that trained it (--convergence-ray)


class EpochTimes(TypedDict):
    median_s: float
    p10_s: float
    p90_s: float
    n: int


class Timing(TypedDict, total=False):
    workload: str  # what the calibration times
    calibration_s: list[float]  # the workload's seconds, 5 runs before and 5 after training
    epochs: EpochTimes | None  # steady epochs of every seed; None with fewer than 3
    # the fidelity sentinel's epochs of `fit` on numpy arrays: what a user's code costs per epoch on this version,
    # whatever path trained (compare times slowdowns on these where both runs have them)
    numpy_epochs: EpochTimes | None


class Fidelity(TypedDict):
    """`fit.input: auto` on a Keras where the fast path pays: the sentinel that decided the input path. The first
    seed trained up to 21 epochs with `fit` on the numpy arrays (the scenario's shuffling, batch size and validation)
    beside its real run on the fast path; the fast path keeps that run and trains the other seeds only if every epoch
    both ran has the same loss and metrics, bit for bit."""

    agrees: bool
    epochs: int  # compared
    largest_difference: Real | None  # relative, over those epochs (inf: one path's loss was not finite)
    at_epoch: int | None  # the first epoch that differs
    reason: str  # why the scenario trains on numpy, or ""


class ScenarioRecord(TypedDict, total=False):
    """One scenario of one run."""

    id: Required[str]  # the pytest node id, FILE::NAME
    file: str
    line: int | None  # of the scenario's name in its YAML file; None when it never trained
    name: str
    outcome: Required[Outcome]
    error: str | None
    reason: str | None  # a skip's or setup error's reason
    xfail_reason: str
    pass_rate: float | None
    min_pass_rate: float | None
    versions: dict[str, str]  # tensorflow, keras, keras_package: what trained
    seeds: list[SeedEntry]
    diagnosis: dict[str, Any] | str  # the stability diagnosis (diagnose.Diagnosis), or why none was made
    runtime: Runtime
    timing: Timing
    declared: Declared
    fidelity: Fidelity  # only where fit.input was auto
    # settings the scenario asked for that could not take effect on this Keras (evaluate.unmet_settings), said once
    unmet_settings: list[str]


class CollectionError(TypedDict):
    file: str
    message: str


class Environment(TypedDict, total=False):
    python: str
    implementation: str
    platform: str
    machine: str
    cpu: str | None
    cpus: int | None
    numpy: str | None
    protobuf: str | None
    ml_dtypes: str | None
    pytest: str | None
    pytest_convergence: str | None
    tensorflow: str | None
    keras: str | None
    keras_package: str | None
    TF_USE_LEGACY_KERAS: str | None


class Document(TypedDict, total=False):
    """A results file (`--convergence-json`)."""

    schema: Required[str]  # "pytest-convergence/1"
    started: str  # ISO 8601
    finished: str
    exitstatus: int  # pytest's; -1 for a document recovered from a run that died
    argv: list[str]
    environment: Required[Environment]
    collection_errors: list[CollectionError]
    scenarios: Required[list[ScenarioRecord]]
    complete: bool  # False: recovered from the journal of a run that died
    recovered_from: str
