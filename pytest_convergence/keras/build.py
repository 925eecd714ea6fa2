"""Building what trains: the model (layers or a factory, found without importing it, confined to the project), the
optimizer with its schedule, the loss, the callbacks, compile; fit's batch arithmetic and the initial weights' hash.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import math
import sys
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FactoryError, ModelTooLarge, UnknownName
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
    """The scenario's model with `seed`'s initial weights, in a cleared Keras session; a model of layers is first
    measured without its weights (`_measured`): one above the run's caps fails before anything is allocated."""
    measured = (scenario.digest, scenario.name, scenario.x.shape, scenario.spec.dtype_policy, scenario.limits)
    if not isinstance(scenario.spec.model, str) and measured not in _MEASURED:
        _measured(keras, scenario)
        _MEASURED.add(measured)
    # fresh graph and names; TensorFlow still keeps ~2-3 MiB per model (benchmarks/memory.py)
    keras.backend.clear_session()
    if scenario.spec.dtype_policy is not None:  # Keras 3's clear_session resets the global policy: set it after
        keras.mixed_precision.set_global_policy(scenario.spec.dtype_policy)
    keras.utils.set_random_seed(seed)
    with warnings.catch_warnings():
        # Keras 2 seeds its initialisers with random.randint(1, 1e9), which Python 3.10+ deprecates
        warnings.filterwarnings("ignore", "non-integer arguments to randrange", DeprecationWarning)
        model = _model(keras, scenario)
    _within_limits(model, scenario)
    return model


_MEASURED: set[tuple[Any, ...]] = set()  # the scenarios (as run) whose models were measured: once each, not per seed


def _measured(keras: Any, scenario: Scenario) -> None:
    """The model of layers built once without its weights — inside a TensorFlow graph that never runs, its variables
    are nodes, not memory (Keras 2 and 3) — and held to the run's caps: nine lines of YAML
    (`{Dense: {units: 50000000}}`, `{RepeatVector: {n: 20000000}}`) must not allocate gigabytes. The session is
    cleared before the real model is built, with its seed: what trains is what would have trained. A layer that
    cannot be built this way is measured once built for real (`fresh_model`)."""
    import tensorflow as tf

    keras.backend.clear_session()
    try:
        with warnings.catch_warnings(), tf.Graph().as_default():
            warnings.filterwarnings("ignore", "non-integer arguments to randrange", DeprecationWarning)
            _within_limits(_model(keras, scenario), scenario)
    except ModelTooLarge:
        raise
    except Exception:  # the real build raises what is wrong with the model, where it is judged
        pass
    finally:
        keras.backend.clear_session()


def _within_limits(model: Any, scenario: Scenario) -> None:
    """The operator's caps on a model (--convergence-limit params, activations): its weights, and the values one
    sample makes in its largest layer output. A model not built yet (a factory's) is built on the data's shape."""
    if not model.built:
        model.build((None, *scenario.x.shape[1:]))
    limits = scenario.limits
    count = sum(math.prod(int(d) for d in w.shape) for w in model.weights)
    if count > limits.params:
        raise ModelTooLarge(
            f"the model has {count:,} parameters; this run allows {limits.params:,} (--convergence-limit params=N "
            "raises it)"
        )
    widest = max((_values_per_sample(layer) for layer in model.layers), default=0)
    if widest > limits.activations:
        raise ModelTooLarge(
            f"a layer of the model outputs {widest:,} values per sample; this run allows {limits.activations:,} "
            "(--convergence-limit activations=N raises it)"
        )


def _values_per_sample(layer: Any) -> int:
    try:
        shapes = layer.output.shape if not isinstance(layer.output, (list, tuple)) else [o.shape for o in layer.output]
    except (AttributeError, ValueError, RuntimeError):  # a layer without one symbolic output
        return 0
    shapes = shapes if isinstance(shapes, list) else [shapes]
    return sum(math.prod(int(d or 1) for d in tuple(s)[1:]) for s in shapes)


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
    anything: the module is a Python file under the YAML file's folder or the root directory, every file importing
    it would run (each package's `__init__.py`, the module) is reviewed source inside the root directory (see
    `_find`), and the module defines the function at its top level."""
    base, chain = _located(ref, near, root)
    source = chain[-1][1].source
    assert source is not None  # _chain ends on a module with source
    return base, source


def load_factory(ref: str, near: Path, root: Path) -> Callable[[], Any]:
    """The factory function, imported when the scenario runs (never at collection), from the file that
    `locate_factory` found. Its module, its packages and the project modules they import (also while the factory
    runs) are compiled from their source text by `_ReviewedSource`: no `__pycache__` file is read or written."""
    base, chain = _located(ref, near, root)
    root = root.resolve()
    module_name, _, attr = ref.partition(":")
    _imported_elsewhere(chain)
    with _confined(base, root, ref):
        module = importlib.import_module(module_name)
    _imported_elsewhere(chain)
    factory = getattr(module, attr)

    @functools.wraps(factory)
    def confined_factory() -> Any:
        with _confined(base, root, ref):  # what it imports lazily is confined too
            return factory()

    return confined_factory


def _located(ref: str, near: Path, root: Path) -> tuple[Path, list[tuple[str, _Found]]]:
    module_name, _, attr = ref.partition(":")
    root = root.resolve()
    for base in dict.fromkeys((near.resolve(), root)):
        if not base.is_relative_to(root):
            continue
        chain = _chain(module_name, base, root, ref)
        if not chain:
            continue
        source = chain[-1][1].source
        assert source is not None  # _chain ends on a module with source
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
            raise FactoryError(f"cannot parse {source.name} for the model factory {ref!r}: {exc}") from None
        if not any(isinstance(node, ast.FunctionDef) and node.name == attr for node in tree.body):
            raise FactoryError(
                f"module {module_name!r} ({source.name}) defines no function {attr!r} at its top level "
                f"(model factory {ref!r})"
            )
        return base, chain
    raise FactoryError(
        f"cannot find {module_name!r} for the model factory {ref!r}: a factory is a function in a Python file "
        f"under {near} or {root} (the run's root directory)"
    )


@dataclass(frozen=True)
class _Found:
    """How the import system would find one module in a folder: its source (resolved; None for a namespace
    package, a folder without `__init__.py`) and, for a package, its folder."""

    source: Path | None
    package: Path | None


# what the import system prefers over a module's .py, or runs without one: no reviewer can read these
_UNREVIEWABLE = (*importlib.machinery.EXTENSION_SUFFIXES, *importlib.machinery.BYTECODE_SUFFIXES)


def _find(folder: Path, fullname: str, root: Path, ref: str) -> _Found | None:
    """Module `fullname` in `folder` as the import system looks for it (the package `name/__init__`, then the module
    `name.py`, then a namespace folder), or None where there is none. A FactoryError where what would be imported is
    not a regular .py file inside the root directory (links followed), where an extension module or bytecode file of
    that name could be imported instead of the source, or where it would replace a standard-library module."""
    name = fullname.rpartition(".")[2]
    package = folder / name
    for shadow in [folder / f"{name}{s}" for s in _UNREVIEWABLE] + [package / f"__init__{s}" for s in _UNREVIEWABLE]:
        if shadow.is_symlink() or shadow.exists():
            raise FactoryError(
                f"{shadow} would be imported instead of the source (model factory {ref!r}): only Python source "
                f"files (.py) inside {root} may run as a factory or what it imports; remove it"
            )
    for source, folder_of_package in ((package / "__init__.py", package), (folder / f"{name}.py", None)):
        if not (source.is_symlink() or source.exists()):
            continue
        real = source.resolve()
        if not real.is_relative_to(root):
            raise FactoryError(
                f"the model factory's module {fullname!r} leads outside {root} (the run's root directory): {source} "
                f"is {real}; a factory, its packages and the project modules they import must be project code "
                f"(model factory {ref!r})"
            )
        if not real.is_file():
            raise FactoryError(f"{source} is not a regular file (model factory {ref!r})")
        if fullname in sys.stdlib_module_names:
            raise FactoryError(
                f"{source} has the name of the standard-library module {fullname!r} (model factory {ref!r}): "
                "rename it; it would be ignored where that module is loaded already and replace it where not"
            )
        return _Found(real, folder_of_package)
    return _Found(None, package) if package.is_dir() else None


def _chain(module_name: str, base: Path, root: Path, ref: str) -> list[tuple[str, _Found]]:
    """Every module importing `module_name` from `base` runs, parents first, each checked by `_find`; empty where
    `base` does not hold it as a module with source."""
    chain: list[tuple[str, _Found]] = []
    folder: Path | None = base
    parts = module_name.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        found = _find(folder, name, root, ref) if folder is not None else None
        if found is None:
            return []
        chain.append((name, found))
        folder = found.package
    return chain if chain[-1][1].source is not None else []


def _imported_elsewhere(chain: Sequence[tuple[str, _Found]]) -> None:
    """A FactoryError where a module of the chain is already loaded from somewhere else (installed, or a module
    Python loads itself): the factory would come from there."""
    for name, found in chain:
        module = sys.modules.get(name)
        if module is None:
            continue
        if found.source is None:
            if found.package is not None and str(found.package) in list(getattr(module, "__path__", [])):
                continue
        elif Path(str(getattr(module, "__file__", None))).resolve() == found.source:
            continue
        where = getattr(module, "__file__", None) or list(getattr(module, "__path__", [])) or "Python itself"
        expected = found.source or found.package
        raise FactoryError(f"{name!r} was imported from {where}, not from {expected}: rename the module")


class _ReviewedSource(importlib.machinery.SourceFileLoader):
    """Loads a module as the standard source loader does (resources, tracebacks), but compiled from its source text
    every time: never from bytecode (a committed `__pycache__` entry with an unchecked hash would run whatever the
    source says), and writing none."""

    def get_code(self, fullname: str) -> types.CodeType:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


class _ProjectFinder(importlib.abc.MetaPathFinder):
    """Finds the modules and packages in `base` (the factory's folder), in every other sys.path folder inside the
    root directory (the current one, under `python -m pytest`) and in the packages found there, each checked by
    `_find` and loaded by `_ReviewedSource`: no project module runs from bytecode or a native library. Namespace
    packages are left to the path-based finder, so that a folder without `__init__.py` does not hide an installed
    package of that name."""

    def __init__(self, base: Path, root: Path, ref: str) -> None:
        self.base, self.root, self.ref = base, root, ref

    def _project(self, folder: Path) -> bool:
        """A folder of the project: inside the root directory, and not an environment's (a virtualenv, a tox env
        kept under the project, whose installed packages are not the project's code)."""
        prefixes = {Path(p).resolve() for p in (sys.prefix, sys.exec_prefix, sys.base_prefix)}
        return folder.is_relative_to(self.root) and not any(folder.is_relative_to(p) for p in prefixes)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if path is None:
            entries = [Path(p or ".").resolve() for p in sys.path]
            folders = list(dict.fromkeys([self.base, *(p for p in entries if self._project(p))]))
        else:
            folders = [Path(p) for p in path if self._project(Path(p).resolve())]
        for folder in folders:
            found = _find(folder, fullname, self.root, self.ref)
            if found is not None and found.source is not None:
                locations = [str(found.package)] if found.package is not None else None
                return importlib.util.spec_from_file_location(
                    fullname,
                    found.source,
                    loader=_ReviewedSource(fullname, str(found.source)),
                    submodule_search_locations=locations,
                )
        return None


@contextlib.contextmanager
def _confined(base: Path, root: Path, ref: str) -> Iterator[None]:
    """`base` first on sys.path, as a script's folder is, with `_ProjectFinder` ahead of the path-based finder (after
    the built-in and frozen modules): what the import system would find in `base` is checked and loaded from its
    source by that finder; the path-based finder sees only namespace folders there."""
    finder = _ProjectFinder(base, root, ref)
    at = next((i for i, f in enumerate(sys.meta_path) if f is importlib.machinery.PathFinder), len(sys.meta_path))
    sys.meta_path.insert(at, finder)
    entry = str(base)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(finder)
