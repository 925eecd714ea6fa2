"""YAML scenario files → validated, frozen Scenario objects that know their source lines.

No pytest and no Keras here: names of Keras objects (layers, optimizers, losses) are checked
against the installed Keras in `keras.names.check`, which reports through the same locations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import (
    BaseModel,
    ValidationError,
)

from . import data as data_mod
from .choices import FitInput
from .errors import DataError, Problem, ScenarioError
from .limits import DEFAULTS, Limits
from .loader import Key, LocDict, LocList, deep_merge, format_path, load, locate
from .loader import Path as KeyPath
from .spec import (
    EXCLUSIVE,
    FILE_KEYS,
    REPLACED_WHOLE,
    OptimizerSpec,
    ScenarioSpec,
    _short,
)
from .text import did_you_mean, one_line


@dataclass(frozen=True, eq=False)
class Scenario:
    """A validated scenario with its data built: everything needed to train and judge it."""

    spec: ScenarioSpec
    file: Path
    line: int  # of the scenario's first key
    x: np.ndarray  # (samples, *x_shape): float32, or int32 (tokens)
    y: np.ndarray  # (samples, outputs), float32
    source: LocDict = field(repr=False)  # the merged YAML, for locating later problems
    start: tuple[KeyPath, int] = field(repr=False)
    shown: str = ""  # the file as problems name it
    base: Path | None = None  # the run's root directory: data files and model factories must lie inside it
    limits: Limits = DEFAULTS  # the operator's caps (the model's size is checked when it is built)
    digest: str = ""  # sha256 of the file's bytes as read: what an isolated child must find to train it

    @property
    def root(self) -> Path:
        return self.base or self.file.parent

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.spec.seed_list

    def with_learning_rate(self, learning_rate: float) -> Scenario:
        """The same scenario with another learning rate (for a learning-rate sweep)."""
        optimizer = OptimizerSpec.model_validate(
            {"name": self.spec.optimizer.name, **self.spec.optimizer.kwargs, "learning_rate": float(learning_rate)}
        )
        return dataclasses.replace(self, spec=self.spec.model_copy(update={"optimizer": optimizer}))

    def with_min_seeds(self, count: int) -> Scenario:
        """The same scenario on at least `count` seeds: its own, then the smallest unused ones."""
        seeds = list(self.seeds)
        unused = (i for i in itertools.count() if i not in seeds)
        seeds += [next(unused) for _ in range(count - len(seeds))]
        return self.with_seeds(seeds)

    def with_run_defaults(self, dtype_policy: str | None = None, jit_compile: bool | None = None) -> Scenario:
        """The scenario with the run's settings (--convergence-dtype-policy, --convergence-jit-compile) where it
        gives none of its own."""
        update: dict[str, Any] = {}
        if dtype_policy is not None and self.spec.dtype_policy is None:
            update["dtype_policy"] = dtype_policy
        if jit_compile is not None and self.spec.jit_compile is None:
            update["jit_compile"] = jit_compile
        return dataclasses.replace(self, spec=self.spec.model_copy(update=update)) if update else self

    @property
    def settings(self) -> dict[str, Any]:
        """What the scenario trains under besides the versions: dtype_policy (float32 unless set) and jit_compile
        (None: Keras's default), as skip/xfail conditions see them."""
        return {"dtype_policy": self.spec.dtype_policy or "float32", "jit_compile": self.spec.jit_compile}

    def with_seed_window(self, count: int, start: int = 0) -> Scenario:
        """`--convergence-seeds [START:]COUNT`: at least `count` seeds (its own, then the smallest unused); with
        `start`, only those from position `start` on, up to `count` (seeds added to an earlier run of `start`)."""
        extended = self.with_min_seeds(count)
        return extended if start == 0 else self.with_seeds(extended.seeds[start:count])

    def with_seeds(self, seeds: Sequence[int]) -> Scenario:
        """The same scenario trained on `seeds` instead of its own."""
        return dataclasses.replace(self, spec=self.spec.model_copy(update={"seeds": list(seeds), "seed": None}))

    def fit_input(self, default: FitInput = "numpy") -> FitInput:
        """How the data reaches model.fit: the scenario's fit.input, else the run's default."""
        return self.spec.fit.input or default

    def problem(self, loc: Sequence[Key], message: str) -> Problem:
        """A Problem located at `loc` (keys relative to the scenario) in its YAML file."""
        path, line = locate(self.source, loc, self.start)
        return Problem(self.shown or str(self.file), line, format_path(path), message)


def load_file(
    file: Path, display: str | None = None, root: Path | None = None, limits: Limits = DEFAULTS
) -> list[Scenario]:
    """Read, validate and build every scenario of one file. Raises ScenarioError listing problems. Data files
    must lie inside `root` (the run's root directory; default: the file's folder); the file, its data files and its
    models stay within `limits`."""
    shown = display or str(file)
    cap = limits.scenario_file_bytes
    try:
        with file.open("rb") as fh:
            if root is not None and not data_mod.opened_inside(fh, file, root):
                message = f"resolves outside {root} (the run's root directory): scenario files are project files"
                raise ScenarioError([Problem(shown, 0, "", message)])
            raw = fh.read(cap + 1)  # never more than the cap is held, whatever the file's size
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([Problem(shown, 0, "", f"cannot read: {exc}")]) from None
    if len(raw) > cap:
        message = (
            f"larger than {cap} bytes, the limit for a scenario file (raise it with --convergence-limit "
            "scenario_file_bytes=N, or split the file)"
        )
        raise ScenarioError([Problem(shown, 0, "", message)])
    doc = load(text, shown)
    scenarios, problems = _scenarios(doc, file, shown, root or file.parent, limits)
    if problems:
        raise ScenarioError(_unique(problems))
    digest = hashlib.sha256(raw).hexdigest()
    return [dataclasses.replace(s, limits=limits, digest=digest) for s in scenarios]


def _scenarios(doc: Any, file: Path, shown: str, root: Path, limits: Limits) -> tuple[list[Scenario], list[Problem]]:
    if not isinstance(doc, LocDict):
        got = "an empty file" if doc is None else ("a list" if isinstance(doc, list) else f"the value {_short(doc)}")
        msg = f"a scenario file is a mapping with the keys {', '.join(FILE_KEYS)}; got {got}"
        return [], [Problem(shown, 1, "", msg)]
    problems: list[Problem] = []
    for key in doc:
        if key not in FILE_KEYS:
            (path, line) = doc.where[key]
            msg = _unknown_key(str(key), FILE_KEYS, "at the top of a scenario file")
            problems.append(Problem(shown, line, format_path(path), msg))
    defaults = doc.get("defaults", LocDict())
    if not isinstance(defaults, LocDict):
        path, line = doc.where["defaults"]
        problems.append(Problem(shown, line, "defaults", "must be a mapping of scenario keys"))
        defaults = LocDict()
    elif "name" in defaults:
        path, line = defaults.where["name"]
        problems.append(Problem(shown, line, format_path(path), "each scenario names itself; no name here"))
    items = doc.get("scenarios")
    if not isinstance(items, LocList) or not items:
        line = doc.where["scenarios"][1] if "scenarios" in doc else 1
        msg = "missing required key" if items is None else "must be a non-empty list of scenarios"
        return [], [*problems, Problem(shown, line, "scenarios", msg)]

    scenarios: list[Scenario] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(items):
        start = items.where[i]
        if not isinstance(raw, LocDict):
            problems.append(Problem(shown, start[1], format_path(start[0]), "a scenario must be a mapping"))
            continue
        merged = deep_merge(defaults, raw, REPLACED_WHOLE, EXCLUSIVE)
        try:
            spec = ScenarioSpec.model_validate(dict(merged))
        except ValidationError as exc:
            problems.extend(_validation_problems(exc, merged, start, shown))
            continue
        except Exception as exc:  # a value no check foresaw: still a located problem, never a traceback
            problems.append(_unforeseen(exc, shown, start))
            continue
        name_path, name_line = merged.where["name"]
        if spec.name in seen:
            msg = f"duplicate scenario name {spec.name!r} (first used on line {seen[spec.name]})"
            problems.append(Problem(shown, name_line, format_path(name_path), msg))
            continue
        seen[spec.name] = name_line
        try:
            x, y = data_mod.build(spec.data, file.parent, root, limits)
        except DataError as exc:
            path, line = locate(merged, ("data", *exc.loc), start)
            problems.append(Problem(shown, line, format_path(path), exc.message))
            continue
        except Exception as exc:
            problems.append(_unforeseen(exc, shown, locate(merged, ("data",), start)))
            continue
        problem = _fits_data(spec, x)
        if problem is not None:
            path, line = locate(merged, problem[0], start)
            problems.append(Problem(shown, line, format_path(path), problem[1]))
            continue
        scenarios.append(Scenario(spec, file, name_line, x, y, merged, start, shown, root))
    return scenarios, problems


def _unforeseen(exc: Exception, shown: str, at: tuple[KeyPath, int]) -> Problem:
    """A problem from an exception no check foresaw (a bug of ours, or a value numpy refuses): located at the scenario
    (or its data), said in one line."""
    message = (
        f"cannot be used: {type(exc).__name__}: {one_line(exc, 300)} (please report this if the message is unclear)"
    )
    return Problem(shown, at[1], format_path(at[0]), message)


def _fits_data(spec: ScenarioSpec, x: np.ndarray) -> tuple[tuple[Key, ...], str] | None:
    """(where, what) when a key does not fit the data: a validation split leaving no sample on a side, predict
    points of another width than a sample."""
    if spec.validation_split is not None:
        train = split_at(len(x), spec.validation_split)
        if not 0 < train < len(x):
            return ("validation_split",), (
                f"{spec.validation_split:g} of {len(x)} samples leaves {train} to train on and {len(x) - train} to "
                "validate on; both must be at least 1"
            )
    predict = spec.expect.predict
    width = int(np.prod(x.shape[1:]))
    given = predict.points()[0].shape[1] if predict is not None else width
    if given != width:
        return ("expect", "predict", "x"), (
            f"each point has {given} value(s), but a sample of x has {width} (shape {list(x.shape[1:])}); give one "
            f"row of {width} numbers per point"
        )
    return None


def split_at(samples: int, validation_split: float) -> int:
    """How many samples `fit(validation_split=…)` trains on: the first ones (Keras 2 and 3 alike); the last
    ones validate."""
    return int(samples * (1.0 - validation_split))


def _validation_problems(
    exc: ValidationError, merged: LocDict, start: tuple[KeyPath, int], shown: str
) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("<")))
        path, line = locate(merged, loc, start)
        problems.append(Problem(shown, line, format_path(path), _message(err, loc)))
    return problems


def _message(err: Any, loc: tuple[Key, ...]) -> str:
    kind = err["type"]
    if kind == "missing":
        hint = " (give it in the scenario or under defaults)" if len(loc) == 1 else ""
        return "missing required key" + hint
    if kind == "extra_forbidden":
        allowed = _fields_at(ScenarioSpec, loc[:-1])
        return _unknown_key(str(loc[-1]), allowed, "here", _belongs_under(str(loc[-1]), loc[:-1]))
    if err["input"] is None and kind in ("model_type", "dict_type", "list_type", "model_attributes_type"):
        return (
            f"is empty: its keys go on the lines below it, indented further than '{loc[-1]}:' "
            "(or write its value on the same line)"
        )
    msg = OUR_WORDS.get(kind) or str(err["msg"]).removeprefix("Value error, ")
    if kind == "value_error":
        return msg
    if kind == "string_pattern_mismatch" and loc and loc[0] == "model":
        msg = "a model factory is written 'package.module:function'"
    elif kind == "string_pattern_mismatch" and loc == ("name",):
        msg = "names use letters, digits and _ . + = @ - (no spaces, ':' or '/'), as they become test ids"
    return f"{msg}, got {_short(err['input'])}{_allowed_range(loc)}"


OUR_WORDS = {  # pydantic's error types, said as this README says them
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
}


def _allowed_range(loc: Sequence[Key]) -> str:
    """'; allowed: 1 … 1000000' for a field with bounds (so that 'epochs: fifty' says what would do), else ''."""
    if not loc or isinstance(loc[-1], int):
        return ""
    owner: Any = ScenarioSpec
    for part in loc[:-1]:
        if not isinstance(part, int):
            fields = getattr(owner, "model_fields", {})
            owner = _model_in(fields[part].annotation) if part in fields else None
    field_info = getattr(owner, "model_fields", {}).get(loc[-1])
    if field_info is None:
        return ""
    low = next((f"{m.ge}" for m in field_info.metadata if getattr(m, "ge", None) is not None), None)
    low = low or next((f"more than {m.gt}" for m in field_info.metadata if getattr(m, "gt", None) is not None), None)
    high = next((f"{m.le}" for m in field_info.metadata if getattr(m, "le", None) is not None), None)
    if low and high:
        return f"; allowed: {low} … {high}"
    if low:
        return f"; allowed: {low}" if low.startswith("more") else f"; allowed: {low} or more"
    return ""


def _unknown_key(key: str, allowed: Iterable[str] | None, where: str, under: str = "") -> str:
    """'unknown key 'x'; did you mean 'y'? Allowed here: …' — or, for a key that belongs one level down (a mistake of
    indentation), where it goes."""
    allowed = list(allowed or [])
    if under:
        return f"unknown key {key!r} here: it belongs under '{under}:' — indent it further than '{under}:'"
    hint = did_you_mean(key, allowed, n=1) or "."
    listing = f" Allowed {where}: {', '.join(allowed)}." if allowed else ""
    return f"unknown key {key!r}{hint}{listing}"


def _belongs_under(key: str, loc: Sequence[Key]) -> str:
    """The key of the model one level below `loc` whose fields include `key` (e.g. 'converges' → 'expect'), or ''."""
    fields = getattr(_model_at(ScenarioSpec, loc), "model_fields", {})
    for name, info in fields.items():
        child = getattr(_model_in(info.annotation), "model_fields", None)
        if child and key in child:
            return str(name)
    return ""


def _model_at(model: type[BaseModel], loc: Sequence[Key]) -> Any:
    """The pydantic model found by following `loc` (keys; list indices skipped) down from `model`, or None."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        current = _model_in(fields[part].annotation)
    return current


def _fields_at(model: type[BaseModel], loc: Sequence[Key]) -> list[str] | None:
    """The field names of the pydantic model found by following `loc` down from `model`."""
    fields = getattr(_model_at(model, loc), "model_fields", None)
    return list(fields) if fields else None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType, list, Annotated) or origin is Literal:
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[int, str, str]] = set()
    out = []
    for p in sorted(problems, key=lambda p: p.line):
        if (p.line, p.key, p.message) not in seen:
            seen.add((p.line, p.key, p.message))
            out.append(p)
    return out
