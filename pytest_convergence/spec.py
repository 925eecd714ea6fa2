"""What a scenario file may say: the validated models (pydantic) of a scenario — data, model, optimizer, loss,
callbacks, expectations, skip/xfail — and their limits. No pytest, no Keras; `scenario` loads files into them."""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import data as data_mod
from .choices import DtypePolicy, FitInput
from .conditions import Strict, VersionCondition
from .errors import DataError
from .loader import Path as KeyPath
from .text import did_you_mean

FILE_KEYS = ("defaults", "scenarios")


# How `defaults:` merge under a scenario: mappings merge, except these values, which a scenario
# replaces whole, and these groups of keys, where giving one drops the default's others.
REPLACED_WHOLE: set[KeyPath] = {("data", "x"), ("data", "y"), ("optimizer",), ("loss",), ("model",)}


EXCLUSIVE: dict[KeyPath, Sequence[Collection[str]]] = {
    (): (("seed",), ("seeds",)),
    ("data",): (("x", "y"), ("file", "x_columns", "y_columns"), ("dataset",)),
}


NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.+=@-]*$"


MARK_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"  # a name pytest.mark takes (not `_x`), and one `-m` can select


# pytest's own marks take arguments a scenario file cannot give; `skip:` and `xfail:` say those things here.
PYTEST_MARKS = ("skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings")


MAX_SEEDS = 1000  # seeds of one scenario, as a count or a list


FACTORY_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


# What YAML may build besides layers, by name, with scalar keywords only: learning-rate schedules
# (`learning_rate: {ExponentialDecay: {...}}`) and callbacks. Each compute from numbers alone.
SCHEDULES = (
    "ExponentialDecay",
    "InverseTimeDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "CosineDecay",
    "CosineDecayRestarts",
)


CALLBACKS = ("EarlyStopping", "ReduceLROnPlateau", "TerminateOnNaN")


# Keyword values for layers and optimizers: YAML scalars and lists of them. Mappings are
# refused on purpose: Keras would deserialise them into objects, which a data file must not do.
KeywordValue = Any


def _one_or_list(schema: dict[str, Any]) -> None:
    """JSON Schema of a list field whose before-validator also takes one item alone (`metric: {...}`)."""
    listed = {k: schema.pop(k) for k in ("type", "items")}
    schema["anyOf"] = [listed["items"], listed]


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list holding a mapping or another non-scalar"
    return f"a {type(value).__name__}"


MAX_INT = 2**31 - 1  # the largest whole number a keyword, seed or batch size may be: what TensorFlow's int32 holds


def _check_keywords(kwargs: dict[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> bool:
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (bool, int, float, str))

    def bounded(value: Any) -> bool:
        if isinstance(value, list):
            return all(bounded(v) for v in value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True
        return abs(value) <= MAX_INT if isinstance(value, int) else np.isfinite(value)

    def path_like(value: Any) -> bool:
        if isinstance(value, list):
            return any(path_like(v) for v in value)
        return isinstance(value, str) and (any(c in value for c in "/\\") or value.startswith(("~", ".")))

    for key, value in kwargs.items():
        if not isinstance(key, str):
            raise ValueError(f"keyword names must be strings, got {key!r}")
        if path_like(value):
            raise ValueError(
                f"keyword {key!r}: {_short(value)} looks like a file path; a scenario file may not name files "
                "for Keras to read (data.file is the one place for data); a model factory can load what it needs"
            )
        if plain(value) and not bounded(value):
            raise ValueError(
                f"keyword {key!r}: {_short(value)} is out of range: whole numbers up to {MAX_INT:,} and finite "
                "numbers are allowed"
            )
        if not plain(value):
            raise ValueError(
                f"keyword {key!r}: values must be numbers, strings, booleans, null or lists of them "
                f"(got {_kind(value)}); "
                "for anything richer write a model factory"
            )
    return kwargs


class Noise(Strict):
    std: float = Field(ge=0)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


class DataSpec(Strict):
    """`data:` as written. The values are turned into arrays by `data.build`."""

    x: Any = None
    y: Any = None
    noise: Noise | None = None
    file: str | None = None
    x_columns: list[str] | None = None
    y_columns: list[str] | None = None
    dataset: Literal["digits", "iris", "wine", "breast_cancer", "diabetes"] | None = None  # scikit-learn's
    x_shape: list[Annotated[int, Field(ge=1)]] | None = Field(default=None, min_length=1, max_length=4)
    x_dtype: Literal["float32", "int32"] | None = None  # default: int32 for an .npz file's integer x, else float32
    shuffle_seed: int | None = Field(default=None, ge=0, le=MAX_INT)  # permute the rows once, before validation_split


def _named(value: Any, what: str, allowed: Sequence[str] | None = None) -> dict[str, Any]:
    """`{ClassName: {keyword: value}}` (one key) or `ClassName` → {"class_name": …, "kwargs": …}; ClassName one of
    `allowed` where given (what a scenario file may build)."""
    named: dict[str, Any] | None = None
    if isinstance(value, str):
        named = {"class_name": value, "kwargs": {}}
    elif isinstance(value, dict) and len(value) == 1:
        ((name, kwargs),) = value.items()
        if kwargs is None:
            kwargs = {}
        if isinstance(name, str) and isinstance(kwargs, dict):
            named = {"class_name": name, "kwargs": _check_keywords(dict(kwargs))}
    if named is None:
        raise ValueError(
            f"a {what} is written as {{ClassName: {{keyword: value, ...}}}} (one key) or just ClassName, "
            f"got {_short(value)}"
        )
    if allowed is not None and named["class_name"] not in allowed:
        raise ValueError(
            f"{what} {named['class_name']!r} is not one a scenario file may build"
            f"{did_you_mean(named['class_name'], allowed, n=1)} Allowed: {', '.join(allowed)}."
        )
    return named


class NamedSpec(Strict):
    """`{ClassName: {keyword: value}}` or just `ClassName`: a layer, a callback, a schedule. `WHAT` names it in
    messages; `ALLOWED` (where set) is what a scenario file may build."""

    WHAT: ClassVar[str] = "layer"
    ALLOWED: ClassVar[tuple[str, ...] | None] = None

    class_name: str
    kwargs: dict[str, KeywordValue]

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        return _named(value, cls.WHAT, cls.ALLOWED)


class LayerSpec(NamedSpec):
    """One entry of `model:`, written `{ClassName: {keyword: value}}` or just `ClassName`."""


class CallbackSpec(NamedSpec):
    """One entry of `callbacks:`, one of CALLBACKS, written as a layer is; the plugin builds it."""

    WHAT = "callback"
    ALLOWED = CALLBACKS


class ScheduleSpec(NamedSpec):
    """`learning_rate: {ExponentialDecay: {initial_learning_rate: 0.1, ...}}`: one of SCHEDULES."""

    WHAT = "learning-rate schedule"
    ALLOWED = SCHEDULES

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        one_mapping = isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), dict)
        if not one_mapping:
            raise ValueError(
                "learning_rate is a number, or a schedule written {ExponentialDecay: {initial_learning_rate: 0.1, "
                f"...}} (schedules: {', '.join(SCHEDULES)}); got {_short(value)}"
            )
        return _named(value, cls.WHAT, cls.ALLOWED)


class OptimizerSpec(BaseModel):
    """`optimizer:` — a Keras optimizer name, or {name: ..., keyword: value, ...}."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    name: str

    # a number, or a schedule {ExponentialDecay: {...}} (a ScheduleSpec once validated); None: the optimizer's default
    learning_rate: Any = None

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keywords as given, learning_rate included (a schedule as its ScheduleSpec)."""
        given = {"learning_rate": self.learning_rate} if self.learning_rate is not None else {}
        return given | dict(self.model_extra or {})

    @property
    def schedule(self) -> ScheduleSpec | None:
        return self.learning_rate if isinstance(self.learning_rate, ScheduleSpec) else None

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _number_or_schedule(cls, value: Any) -> Any:
        if value is None or isinstance(value, ScheduleSpec):
            return value
        if isinstance(value, dict):
            return ScheduleSpec.model_validate(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(
                f"learning_rate is a number, or a schedule {{ExponentialDecay: {{...}}}}; got {_short(value)}"
            )
        return float(value)

    @model_validator(mode="after")
    def _plain_keywords(self) -> OptimizerSpec:
        _check_keywords(dict(self.model_extra or {}))
        return self


class LossSpec(BaseModel):
    """`loss:` — a Keras loss name (mean_squared_error), or a loss class with keywords:
    {name: SparseCategoricalCrossentropy, from_logits: true}."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    name: str

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _plain_keywords(self) -> LossSpec:
        _check_keywords(self.kwargs)
        return self


class Converges(Strict):
    loss_below: float = Field(gt=0)
    within_epochs: int | None = Field(default=None, ge=1)


class Diverges(Strict):
    within_epochs: int = Field(ge=1)
    growth_factor: float = Field(default=1.0e6, gt=1)


class Predict(Strict):
    x: Any
    y: Any
    abs_tol: float | None = Field(default=None, ge=0)
    rel_tol: float | None = Field(default=None, ge=0)
    # how x reaches model.predict: a float32 numpy array, or a plain Python list as user code often passes
    input: Literal["array", "list"] = "array"

    @field_validator("x", "y", mode="after")
    @classmethod
    def _rows(cls, value: Any, info: ValidationInfo) -> Any:
        """Parsed once, here: the written form (a number, a list of numbers or of rows) → rows of floats."""
        return tuple(tuple(float(v) for v in row) for row in _points(value, str(info.field_name)))

    @model_validator(mode="after")
    def _points(self) -> Predict:
        if self.abs_tol is None and self.rel_tol is None:
            raise ValueError("give a tolerance: abs_tol, rel_tol or both")
        if len(self.x) != len(self.y):
            raise ValueError(f"x gives {len(self.x)} points but y gives {len(self.y)} values")
        return self

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """x as (points, features) and y as (points, outputs), both float64."""
        return np.array(self.x, dtype=np.float64), np.array(self.y, dtype=np.float64)

    def tolerance(self, expected: float) -> float:
        return max(self.abs_tol or 0.0, (self.rel_tol or 0.0) * abs(expected))


class MetricCheck(Strict):
    name: str  # a compiled metric, or val_loss / val_<metric> with validation_split
    above: float | None = None
    below: float | None = None
    within_epochs: int | None = Field(default=None, ge=1)  # the bound holds at some epoch up to this one

    @model_validator(mode="after")
    def _one_bound(self) -> MetricCheck:
        if self.above is None and self.below is None:
            raise ValueError("give a bound: above, below or both")
        return self


class Raises(Strict):
    """The run (training, then prediction) must raise this exception: an API expectation."""

    error: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # a class name, matched along the exception's MRO
    match: str | None = Field(default=None, max_length=1000)  # a regular expression searched in the message (RE2)

    @field_validator("match")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            bounded_regex(value)
        return value

    def matches(self, message: str) -> bool:
        """Whether `match` (when given) is found in `message`, by RE2: time linear in the message, whatever the
        pattern (no catastrophic backtracking from a file's regular expression)."""
        return self.match is None or bounded_regex(self.match).search(message) is not None


@functools.lru_cache(maxsize=256)
def bounded_regex(pattern: str) -> Any:
    """`pattern` compiled by RE2 (google-re2), the matcher for regular expressions a scenario file gives: Python's
    syntax without backreferences and lookarounds, in linear time. ValueError says what is wrong with it."""
    import re2  # imported when a scenario file gives one

    options = re2.Options()
    options.log_errors = False  # the error comes back as ours, not as a line on stderr
    options.max_mem = 8 << 20  # the compiled program's memory: `a{1000}{1000}` is refused, not built
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(
            f"match is not a regular expression this can run: {reason} (RE2 syntax: Python's, without "
            "backreferences or lookarounds, which make matching take exponential time)"
        ) from None


class Stable(Strict):
    """An assertion on the stability diagnosis: the learning rate against the bound 2/λmax,
    or the bound itself (within rel_tol), so a threshold is checked against theory."""

    lr_below_bound: bool | None = None
    bound: float | None = Field(default=None, gt=0)
    rel_tol: float = Field(default=0.02, gt=0)

    @model_validator(mode="after")
    def _one_claim(self) -> Stable:
        if self.lr_below_bound is None and self.bound is None:
            raise ValueError("give lr_below_bound (true or false), bound (a learning rate), or both")
        return self


class Expect(Strict):
    converges: Converges | None = None
    diverges: Diverges | None = None
    predict: Predict | None = None
    metric: list[MetricCheck] = Field(default=[], json_schema_extra=_one_or_list)
    raises: Raises | None = None
    stable: Stable | None = None
    min_pass_rate: float = Field(default=1.0, gt=0, le=1)

    @field_validator("metric", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _something(self) -> Expect:
        if not (self.converges or self.diverges or self.predict or self.metric or self.raises or self.stable):
            raise ValueError("expect needs at least one of: converges, diverges, predict, metric, raises, stable")
        if self.converges and self.diverges:
            raise ValueError("a scenario cannot expect both converges and diverges")
        return self


class FitSpec(Strict):
    """`fit:` — how the data reaches `model.fit`.

    auto (the run's default): fit's own batches, always: the dataset path where a sentinel shows, for this scenario
    on this version, that every epoch equals `fit` on the numpy arrays (evaluate.py), else numpy.
    numpy: the arrays, as user code passes them: for scenarios about how `fit` itself treats arrays.
    dataset: the batches `fit` makes of the arrays, made once by Keras's own array adapter and kept for the whole
    fit — many times faster per epoch on Keras 3 for tiny models; unchecked.
    """

    input: FitInput | None = None  # None: the run's --convergence-input


def _model_kind(value: Any) -> str:
    return "<factory>" if isinstance(value, str) else "<layers>"


ModelField = Annotated[
    Annotated[list[LayerSpec], Tag("<layers>")] | Annotated[str, Field(pattern=FACTORY_PATTERN), Tag("<factory>")],
    Discriminator(_model_kind),
]


class Resources(Strict):
    """What one scenario's training holds on a Ray cluster (--convergence-ray): CPUs and GPUs of a node."""

    cpus: float = Field(default=1.0, gt=0, le=1024)
    gpus: float = Field(default=0.0, ge=0, le=64)


class ScenarioSpec(Strict):
    """One scenario as written (after `defaults:` are merged in)."""

    name: str = Field(pattern=NAME_PATTERN, max_length=200)
    description: str = Field(default="", max_length=10_000)
    marks: list[Annotated[str, Field(pattern=MARK_PATTERN, max_length=100)]] = Field(default=[], max_length=100)
    data: DataSpec
    model: ModelField
    optimizer: OptimizerSpec
    loss: LossSpec
    metrics: list[str] = Field(default=[])
    epochs: int = Field(ge=1, le=1_000_000)
    batch_size: int | None = Field(default=None, ge=1, le=MAX_INT)
    shuffle: bool | None = None
    validation_split: float | None = Field(default=None, gt=0, lt=1)
    callbacks: list[CallbackSpec] = Field(default=[])
    dtype_policy: DtypePolicy | None = None  # None: the run's (float32)
    jit_compile: bool | None = None  # None: Keras's default (Keras 2: off; Keras 3: on where XLA can)
    fit: FitSpec = FitSpec()
    seed: int | None = Field(default=None, ge=0, le=MAX_INT)
    seeds: list[Annotated[int, Field(ge=0, le=MAX_INT)]] | None = None  # also `seeds: K` (0..K-1)
    expect: Expect
    timeout_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)  # under --convergence-timeout
    resources: Resources = Resources()  # its task's CPUs and GPUs on a Ray cluster
    skip: list[VersionCondition] = Field(default=[], json_schema_extra=_one_or_list)
    xfail: list[VersionCondition] = Field(default=[], json_schema_extra=_one_or_list)

    @field_validator("skip", "xfail", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("marks")
    @classmethod
    def _not_pytest_marks(cls, value: list[str]) -> list[str]:
        for mark in value:
            if mark in PYTEST_MARKS:
                raise ValueError(
                    f"marks: {mark!r} is one of pytest's own marks, which take arguments; a scenario says it with "
                    "skip: / xfail: (with the versions where it applies)"
                )
        return value

    @field_validator("optimizer", "loss", mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_count(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= MAX_SEEDS:
                raise ValueError(f"seeds: K means seeds 0..K-1 and K must be 1..{MAX_SEEDS}, got {value}")
            return list(range(value))
        if isinstance(value, list) and len(value) > MAX_SEEDS:
            raise ValueError(f"seeds: a list of at most {MAX_SEEDS} seeds, got {len(value)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ScenarioSpec:
        if self.seed is not None and self.seeds is not None:
            raise ValueError("give either seed or seeds, not both")
        if self.seeds is not None and not self.seeds:
            raise ValueError("seeds must name at least one seed")
        known = ["loss", *self.metrics]
        if self.validation_split is not None:
            known += ["val_loss", *(f"val_{m}" for m in self.metrics)]
        for check in self.expect.metric:
            if check.name in known:
                continue
            if check.name.startswith("val_") and self.validation_split is None:
                raise ValueError(
                    f"expect.metric names {check.name!r}, a validation metric: give validation_split "
                    "(e.g. validation_split: 0.2)"
                )
            raise ValueError(
                f"expect.metric names {check.name!r}, which is not compiled: add it to metrics "
                f"(metrics: {self.metrics or '[]'}){did_you_mean(check.name, known, n=1)}"
            )
        return self

    @property
    def seed_list(self) -> tuple[int, ...]:
        if self.seeds is not None:
            return tuple(self.seeds)
        return (self.seed if self.seed is not None else 0,)


def _points(value: Any, what: str) -> np.ndarray:
    """expect.predict's x or y: one number (one point), or a list as data.x and data.y are written; finite."""
    if not (isinstance(value, list) or data_mod.is_number(value)):
        raise ValueError(
            f"{what} must be a number (one point) or a list as data.{what} is written; got {_short(value)}"
        )
    try:
        rows = data_mod.table(value if isinstance(value, list) else [value], (what,))
    except DataError as exc:
        raise ValueError(f"{what} {exc.message}; got {_short(value)}") from None
    if not np.isfinite(rows).all():
        raise ValueError(f"{what} must be finite, got {_short(value)}")
    return rows


def _short(value: Any, limit: int = 60) -> str:
    text = repr(dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
