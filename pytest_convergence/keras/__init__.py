"""The Keras side, behind this front: the only package that imports TensorFlow/Keras, and only inside functions, so
that loading the plugin stays cheap for every pytest run in the environment (import-linter checks it in lint).

    environment  TensorFlow and the Keras `tf.keras` resolves to, threads, runtime, versions, the dtype policy
    names        a scenario's Keras names checked against the installed Keras (the allowlist of buildable layers)
    build        model (layers or a confined factory), optimizer, schedule, loss, callbacks, compile, fit's batches
    fit          one seed through `model.fit` (arrays, or fit's own batches made once), the auto sentinel, timing
    probes       stuck units, the sharpness estimate, the stability diagnosis

The rest of the plugin calls only what this front exports.
"""

from __future__ import annotations

from ..errors import FastPathError
from .environment import (
    THREADS_ENV,
    fast_path_pays,
    frameworks,
    keras_major,
    native_chatter_filtered,
    quiet,
    runtime_settings,
    threads_per_process,
    versions,
)
from .fit import SENTINEL_EPOCHS, agreement, epoch_timer, run, run_seed, sentinel
from .names import check
from .probes import diagnose, sharpness, unit_states

__all__ = [
    "SENTINEL_EPOCHS",
    "THREADS_ENV",
    "FastPathError",
    "agreement",
    "check",
    "diagnose",
    "epoch_timer",
    "fast_path_pays",
    "frameworks",
    "keras_major",
    "native_chatter_filtered",
    "quiet",
    "run",
    "run_seed",
    "runtime_settings",
    "sentinel",
    "sharpness",
    "threads_per_process",
    "unit_states",
    "versions",
]
