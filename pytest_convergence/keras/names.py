"""A scenario's Keras names checked against the installed Keras before anything trains: layers (an allowlist of what
a scenario file may build) and their keywords, optimizers, schedules, losses, metrics, callbacks, the factory.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

from ..errors import FactoryError, Problem, UnknownName
from ..scenario import Scenario
from ..text import did_you_mean, one_line
from .build import (
    locate_factory,
    make_callback,
    make_loss,
    make_optimizer,
    make_schedule,
    unknown_name,
)
from .environment import frameworks


def check(scenario: Scenario, factories: bool = True) -> list[Problem]:
    """Problems with the Keras names a scenario uses (layers and their keywords, optimizer, loss, metrics) and with
    its model factory, found without importing it. `factories=False` refuses factories altogether."""
    _, keras = frameworks()
    spec = scenario.spec
    problems: list[Problem] = []
    if isinstance(spec.model, str):
        try:
            if not factories:
                raise FactoryError(
                    f"model factories are turned off here (--convergence-no-factories): {spec.model!r} would run "
                    "project code; write the model as a list of layers"
                )
            locate_factory(spec.model, scenario.file.parent, scenario.root)
        except FactoryError as exc:
            problems.append(scenario.problem(("model",), str(exc)))
    else:
        for i, layer in enumerate(spec.model):
            message = _layer_problem(keras, layer.class_name, layer.kwargs)
            if message:
                problems.append(scenario.problem(("model", i), message))
    schedule = spec.optimizer.schedule
    refused = schedule is not None and _refused(lambda: make_schedule(keras, schedule), schedule)
    if refused:  # the optimizer cannot be built to check it
        problems.append(scenario.problem(("optimizer", "learning_rate"), refused))
    try:
        if not refused:
            make_optimizer(keras, spec.optimizer.name, spec.optimizer.kwargs)
    except UnknownName as exc:
        problems.append(scenario.problem(("optimizer", "name"), str(exc)))
    except Exception as exc:  # Keras raises TypeError or ValueError, varying by version
        message = _keyword_problem(keras, spec.optimizer.name, spec.optimizer.kwargs) or one_line(exc)
        problems.append(scenario.problem(("optimizer",), f"{spec.optimizer.name}: {message}"))
    try:
        keras.losses.get(spec.loss.name)
    except Exception:
        where = ("loss", "name") if spec.loss.kwargs else ("loss",)  # written {name: …, …} or as the name alone
        problems.append(scenario.problem(where, unknown_name("loss", spec.loss.name, _loss_names(keras))))
    else:
        loss = _refused(lambda: make_loss(keras, spec.loss), spec.loss)
        if loss:
            problems.append(scenario.problem(("loss",), loss))
    for i, callback in enumerate(spec.callbacks):
        made = _refused(functools.partial(make_callback, keras, callback), callback)
        if made:
            problems.append(scenario.problem(("callbacks", i), made))
    for i, metric in enumerate(spec.metrics):
        try:
            # Keras 2 hands an unknown name back unchanged instead of raising
            if not callable(keras.metrics.get(metric)):
                raise ValueError(metric)
        except Exception:
            problems.append(scenario.problem(("metrics", i), unknown_name("metric", metric, _metric_names(keras))))
    return problems


# The layers a scenario file may build: they compute from their inputs and their scalar keywords only. Left out on
# purpose: layers that read files or run code (TFSMLayer, Lambda, the lookup and text layers with a vocabulary,
# TorchModuleWrapper, …) and wrappers of other layers; a model factory is the place for those.
COMPUTE_LAYERS = frozenset(
    [
        "Dense",
        "EinsumDense",
        "Activation",
        "Dropout",
        "Flatten",
        "Reshape",
        "Permute",
        "RepeatVector",
        "Identity",
        "BatchNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "UnitNormalization",
        "Normalization",
        "Rescaling",
        "Conv1D",
        "Conv2D",
        "Conv3D",
        "Conv1DTranspose",
        "Conv2DTranspose",
        "Conv3DTranspose",
        "SeparableConv1D",
        "SeparableConv2D",
        "DepthwiseConv1D",
        "DepthwiseConv2D",
        "MaxPooling1D",
        "MaxPooling2D",
        "MaxPooling3D",
        "AveragePooling1D",
        "AveragePooling2D",
        "AveragePooling3D",
        "MaxPool1D",
        "MaxPool2D",
        "MaxPool3D",
        "AvgPool1D",
        "AvgPool2D",
        "AvgPool3D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "GlobalMaxPooling3D",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalAveragePooling3D",
        "GlobalMaxPool1D",
        "GlobalMaxPool2D",
        "GlobalMaxPool3D",
        "GlobalAvgPool1D",
        "GlobalAvgPool2D",
        "GlobalAvgPool3D",
        "SimpleRNN",
        "LSTM",
        "GRU",
        "Embedding",
        "ReLU",
        "LeakyReLU",
        "PReLU",
        "ELU",
        "Softmax",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "ActivityRegularization",
        "UpSampling1D",
        "UpSampling2D",
        "UpSampling3D",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "ZeroPadding3D",
        "Cropping1D",
        "Cropping2D",
        "Cropping3D",
    ]
)


def _keyword_problem(keras: Any, name: str, kwargs: dict[str, Any]) -> str | None:
    """'no keyword 'momentun'; did you mean 'momentum'? Its keywords: …' when an optimizer keyword is unknown."""
    try:
        signature = inspect.signature(type(keras.optimizers.get(name)).__init__)
    except (TypeError, ValueError):  # no signature to read: Keras's own message is all there is
        return None
    params = [
        p.name
        for p in signature.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    unknown = [k for k in kwargs if k not in params]
    if not unknown:
        return None
    return f"no keyword {unknown[0]!r}{did_you_mean(unknown[0], params, n=1)} Its keywords: {', '.join(params)}."


def _layer_problem(keras: Any, name: str, kwargs: dict[str, Any]) -> str | None:
    cls = getattr(keras.layers, name, None)
    if name in ("Input", "InputLayer"):
        return "leave out the input layer: the input shape comes from the data"
    if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
        return unknown_name("layer", name, _layer_names(keras), show_all=False)
    if name not in COMPUTE_LAYERS:  # checked before the layer is made: making one may already read a file
        return (
            f"Keras layer {name!r} is not one a scenario file may build: scenario files build only layers that "
            "compute (docs/reliability.md lists them); for layers that read files or run code, write a model factory"
        )
    return _refused(lambda: cls(**kwargs), _Called(name, kwargs)) or None


class _Called(NamedTuple):
    class_name: str
    kwargs: dict[str, Any]


def _refused(make: Callable[[], Any], named: Any) -> str:
    """'Name(k=v, …) is refused by Keras: <why>' when `make()` (building what `named` — a layer, schedule, loss or
    callback with .class_name or .name and .kwargs — describes) raises, else ''."""
    try:
        make()
    except Exception as exc:
        name = getattr(named, "class_name", None) or named.name
        arguments = ", ".join(f"{k}={v!r}" for k, v in named.kwargs.items())
        return f"{name}({arguments}) is refused by Keras: {one_line(exc)}"
    return ""


def _loss_names(keras: Any) -> list[str]:
    skip = {"get", "serialize", "deserialize"}
    return sorted(n for n, v in vars(keras.losses).items() if callable(v) and n[:1].islower() and n not in skip)


def _metric_names(keras: Any) -> list[str]:
    return ["accuracy", "mae", "mse", *(n for n in _loss_names(keras) if "accuracy" in n)]


def _layer_names(keras: Any) -> list[str]:
    return sorted(n for n, v in vars(keras.layers).items() if isinstance(v, type) and issubclass(v, keras.layers.Layer))
