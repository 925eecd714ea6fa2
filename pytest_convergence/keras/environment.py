"""The Keras side's environment: importing TensorFlow and the Keras that `tf.keras` resolves to (quietly), threads
per process, what a run records of its runtime, the versions that train, the dtype policy around a run.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from ..record import Runtime
from ..text import without_native_chatter

LEGACY_ENV = "TF_USE_LEGACY_KERAS"


@functools.cache
def frameworks() -> tuple[Any, Any]:
    """(tensorflow, keras) as `tf.keras` would resolve it: tf_keras when TF_USE_LEGACY_KERAS is set."""
    # TensorFlow's C++ start-up chatter (oneDNN, CPU features) buries the test output; errors stay.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_chatter_filtered():
        import tensorflow as tf

        legacy = os.environ.get(LEGACY_ENV, "").lower() in ("1", "true")
        keras = importlib.import_module("tf_keras" if legacy else "keras")
        # Seeded runs must be reproducible; this makes TF pick deterministic kernels.
        tf.config.experimental.enable_op_determinism()
        # Several xdist workers on a small machine must not each start a thread per core.
        threads = threads_per_process()
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf, keras


@contextlib.contextmanager
def native_chatter_filtered() -> Iterator[None]:
    """Run the block with file descriptor 2 sent to a temporary file; afterwards write back every line of it except
    TensorFlow's chatter (text.NATIVE_CHATTER). Around TensorFlow's start-up, and around `explain`'s training; not
    around a test's training, where a native crash must print its message at once (pytest's captured stderr is
    filtered instead, see collect.attach_record)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                caught.seek(0)
                kept = without_native_chatter(caught.read().decode(errors="replace"))
                if kept:
                    os.write(2, kept.encode())
    finally:
        os.close(saved)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """native_chatter_filtered, with TensorFlow's Python-side warnings held back as well (logger 'tensorflow' at
    ERROR): `explain` trains one model per learning rate of its sweep, which TensorFlow reports as retracing."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with native_chatter_filtered():
            yield
    finally:
        logger.setLevel(level)


THREADS_ENV = "PYTEST_CONVERGENCE_THREADS"  # set by the Ray side: a worker's task holds this many CPUs


def threads_per_process() -> int:
    """The CPUs this process may use, shared among the xdist workers of the run (at least 1); in a Ray worker, the
    CPUs its task holds (THREADS_ENV)."""
    given = os.environ.get(THREADS_ENV, "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // _xdist_workers())


def _xdist_workers() -> int:
    """How many xdist workers this run has (xdist tells each worker); 1 without xdist."""
    return max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))


def runtime_settings() -> Runtime:
    """What a difference between two runs could come from, besides the versions: stored in each record."""
    tf, _ = frameworks()
    return Runtime(
        op_determinism=True,
        intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
        inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads(),
        xdist_workers=_xdist_workers(),
        PYTHONHASHSEED=os.environ.get("PYTHONHASHSEED"),
        TF_USE_LEGACY_KERAS=os.environ.get(LEGACY_ENV),
    )


def versions() -> dict[str, str]:
    """What actually trains: TensorFlow and Keras versions, and which Keras package."""
    tf, keras = frameworks()
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_package": keras.__name__.split(".")[0],
    }


def fast_path_pays() -> bool:
    """Whether `auto` should try the fast path here. Keras 3's `fit` builds a new iterator over the arrays every epoch
    (~25-50 ms for a tiny model on 2 CPUs, against ~3 ms on the fast path). Keras 2 and tf_keras keep one iterator
    for the whole fit (~2 ms an epoch): there only running an epoch's steps in one call saves time, where an epoch
    has several batches (TF 2.15, 64 samples in batches of 8: 9.9 → 4.8 ms an epoch), and the sentinel's extra model
    costs more than that saves in short scenarios (the shipped suite on TF 2.15: 131.6 s fitting the arrays, 151.9 s
    with the sentinel where an epoch has several batches, 2026-12-06). So on Keras 2 `auto` fits the arrays."""
    return keras_major() >= 3


def keras_major() -> int:
    """The major version of the Keras that trains (2 for tf_keras)."""
    return keras_major_of(frameworks()[1])


def keras_major_of(keras: Any) -> int:
    try:
        return int(str(keras.__version__).split(".")[0])
    except ValueError:
        return 3


@contextlib.contextmanager
def dtype_policy(keras: Any, name: str | None) -> Iterator[None]:
    """Keras's global dtype policy set back to what it was after the block, which builds the model under `name`
    (float32, mixed_float16, float64; `fresh_model` sets it, after clearing the session) and trains it. None:
    leave it (float32). Layers keep the policy they were built with."""
    if name is None:
        yield
        return
    before = keras.mixed_precision.global_policy().name
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)
