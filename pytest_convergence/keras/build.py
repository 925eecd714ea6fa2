"""Building what trains: the model (layers or a factory, found without importing it, confined to the project), the
optimizer with its schedule, the loss, the callbacks, compile; fit's batch arithmetic and the initial weights' hash.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FactoryError, UnknownName
from ..scenario import Scenario, split_at
from ..spec import CallbackSpec, LossSpec, ScheduleSpec
from ..text import did_you_mean

KERAS_BATCH_SIZE = 32  # what model.fit uses when batch_size is not given


def fit_batches(samples: int, batch_size: int | None) -> tuple[int, int]:
    """(the batch size fit uses, the steps in one epoch: the last batch may be partial)."""
    batch = batch_size or KERAS_BATCH_SIZE
    return batch, -(-samples // batch)


def array_options(scenario: Scenario) -> dict[str, Any]:
    """What `fit` on the numpy arrays is given besides them: the scenario's batch size, shuffling, validation split."""
    spec = scenario.spec
    options: dict[str, Any] = {}
    if spec.batch_size is not None:
        options["batch_size"] = spec.batch_size
    if spec.shuffle is not None:
        options["shuffle"] = spec.shuffle
    if spec.validation_split is not None:
        options["validation_split"] = spec.validation_split
    return options


def compile_model(keras: Any, model: Any, scenario: Scenario, compiled: dict[str, Any]) -> None:
    spec = scenario.spec
    with warnings.catch_warnings():
        # Keras 3 under op determinism, once per compile; said once per scenario instead (evaluate.unmet_settings)
        warnings.filterwarnings("ignore", "Model doesn't support `jit_compile=True`")
        model.compile(
            optimizer=make_optimizer(keras, spec.optimizer.name, spec.optimizer.kwargs),
            loss=make_loss(keras, spec.loss),
            metrics=list(spec.metrics) or None,
            **compiled,
        )


def train_part(scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """The samples `fit` trains on: all, or the first ones with validation_split."""
    if scenario.spec.validation_split is None:
        return scenario.x, scenario.y
    held = split_at(len(scenario.x), scenario.spec.validation_split)
    return scenario.x[:held], scenario.y[:held]


def weights_hash(weights: Sequence[np.ndarray]) -> str:
    """The first 16 hex digits of sha256 over the weights' shapes, dtypes and bytes: equal on two versions when the
    seed drew the same initial weights there."""
    digest = hashlib.sha256()
    for w in weights:
        array = np.ascontiguousarray(w)
        digest.update(f"{array.shape}{array.dtype.str};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def fresh_model(keras: Any, scenario: Scenario, seed: int) -> Any:
    """The scenario's model with `seed`'s initial weights, in a cleared Keras session."""
    # fresh graph and names; TensorFlow still keeps ~2-3 MiB per model (benchmarks/memory.py)
    keras.backend.clear_session()
    if scenario.spec.dtype_policy is not None:  # Keras 3's clear_session resets the global policy: set it after
        keras.mixed_precision.set_global_policy(scenario.spec.dtype_policy)
    keras.utils.set_random_seed(seed)
    with warnings.catch_warnings():
        # Keras 2 seeds its initialisers with random.randint(1, 1e9), which Python 3.10+ deprecates
        warnings.filterwarnings("ignore", "non-integer arguments to randrange", DeprecationWarning)
        return _model(keras, scenario)


def _model(keras: Any, scenario: Scenario) -> Any:
    spec = scenario.spec
    if isinstance(spec.model, str):
        model = load_factory(spec.model, scenario.file.parent, scenario.root)()
        if not isinstance(model, keras.Model):
            raise TypeError(f"model factory {spec.model!r} returned {type(model).__name__}, not a keras.Model")
        if getattr(model, "optimizer", None) is not None:  # set by compile() on Keras 2 and 3
            raise TypeError(
                f"model factory {spec.model!r} returned a compiled model; return it uncompiled: the scenario's "
                "optimizer, loss and metrics compile it"
            )
        return model
    layers = [getattr(keras.layers, layer.class_name)(**layer.kwargs) for layer in spec.model]
    # shape and dtype from the data: (features,), (steps, features), (h, w, c) …; int32 tokens for Embedding
    return keras.Sequential([keras.Input(shape=scenario.x.shape[1:], dtype=scenario.x.dtype.name), *layers])


def make_optimizer(keras: Any, name: str, kwargs: dict[str, Any]) -> Any:
    try:
        default = keras.optimizers.get(name)
    except Exception:
        raise UnknownName(unknown_name("optimizer", name, _optimizer_names(keras))) from None
    built = {k: make_schedule(keras, v) if isinstance(v, ScheduleSpec) else v for k, v in kwargs.items()}
    return type(default)(**built) if kwargs else default


def make_callback(keras: Any, callback: CallbackSpec) -> Any:
    """A callback of spec.CALLBACKS, built from its scalar keywords."""
    return getattr(keras.callbacks, callback.class_name)(**callback.kwargs)


def make_loss(keras: Any, loss: LossSpec) -> Any:
    """The loss by name; with keywords, an instance of the Keras loss class of that name (from_logits, …)."""
    if not loss.kwargs:
        return keras.losses.get(loss.name)
    cls = getattr(keras.losses, loss.name, None)
    if not (isinstance(cls, type) and issubclass(cls, keras.losses.Loss)):
        raise ValueError(
            f"keywords need a loss class such as SparseCategoricalCrossentropy or BinaryCrossentropy; "
            f"{loss.name!r} is not one"
        )
    return cls(**loss.kwargs)


def make_schedule(keras: Any, schedule: ScheduleSpec) -> Any:
    """A learning-rate schedule of spec.SCHEDULES, built from its scalar keywords. Keras 2.12's
    `keras.optimizers.schedules` holds them in its learning_rate_schedule module only."""
    schedules = keras.optimizers.schedules
    where = schedules if hasattr(schedules, schedule.class_name) else schedules.learning_rate_schedule
    return getattr(where, schedule.class_name)(**schedule.kwargs)


def unknown_name(kind: str, name: str, known: list[str], show_all: bool = True) -> str:
    hint = did_you_mean(name, known, cutoff=0.5)
    listing = f" Known: {', '.join(known)}." if show_all else " See keras.layers for the names."
    return f"unknown Keras {kind} {name!r}{hint}{listing}"


def _optimizer_names(keras: Any) -> list[str]:
    base = keras.optimizers.Optimizer
    skip = {"Optimizer", "LossScaleOptimizer", "MultiOptimizer"}
    return sorted(
        n.lower()
        for n, v in vars(keras.optimizers).items()
        if isinstance(v, type) and issubclass(v, base) and n not in skip
    )


def locate_factory(ref: str, near: Path, root: Path) -> tuple[Path, Path]:
    """'package.module:function' → (the folder to import it from, the module's file), found without importing
    anything: the module is a Python file under the YAML file's folder or the root directory, it resolves (symlinks
    followed) inside the root directory, and it defines the function at its top level."""
    module_name, _, attr = ref.partition(":")
    root = root.resolve()
    for base in dict.fromkeys((near.resolve(), root)):
        if not base.is_relative_to(root):
            continue
        for candidate in (
            base.joinpath(*module_name.split(".")).with_suffix(".py"),
            base.joinpath(*module_name.split("."), "__init__.py"),
        ):
            if not candidate.is_file():
                continue
            real = candidate.resolve()
            if not real.is_relative_to(root):
                raise FactoryError(
                    f"the model factory's module {module_name!r} leads outside {root} (the run's root directory): "
                    "a factory must be project code"
                )
            try:
                tree = ast.parse(real.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
                raise FactoryError(f"cannot parse {candidate.name} for the model factory {ref!r}: {exc}") from None
            if not any(isinstance(node, ast.FunctionDef) and node.name == attr for node in tree.body):
                raise FactoryError(
                    f"module {module_name!r} ({candidate.name}) defines no function {attr!r} at its top level "
                    f"(model factory {ref!r})"
                )
            return base, real
    raise FactoryError(
        f"cannot find {module_name!r} for the model factory {ref!r}: a factory is a function in a Python file "
        f"under {near} or {root} (the run's root directory)"
    )


def load_factory(ref: str, near: Path, root: Path) -> Callable[[], Any]:
    """The factory function, imported when the scenario runs (never at collection), from the file that
    `locate_factory` found."""
    base, real = locate_factory(ref, near, root)
    module_name, _, attr = ref.partition(":")
    with _path_prepended(base):
        module = importlib.import_module(module_name)
    if Path(str(module.__file__)).resolve() != real:
        raise FactoryError(f"{module_name!r} was imported from {module.__file__}, not from {real}: rename the module")
    return getattr(module, attr)  # type: ignore[no-any-return]


@contextlib.contextmanager
def _path_prepended(folder: Path) -> Iterator[None]:
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)
