"""Mutants of an installed Keras 3: the same TensorFlow/Keras changed in one small way, for the gate's calibration.

`make(base_python, kind, folder)` makes a virtual environment whose site-packages hold
  - a .pth that adds the base environment's site-packages (nothing is copied or reinstalled), and
  - a .pth that imports `_convergence_mutant`, which patches Keras right after `import keras` (an import hook:
    Python start-up stays as cheap as the base's where Keras is not imported).
The mutant's Python is then an environment like any other for `pytest-convergence gate`.

Kinds (each a change a Keras release could make):
  sgd-lr       SGD's default learning rate 0.01 → 0.016 (×1.6)
  adam-eps     Adam's default epsilon 1e-7 → 1e-3
  init         Dense's default kernel initializer glorot_uniform → he_uniform
  shuffle      fit's default shuffle=True → False (numpy arrays in mini-batches come in order)
  batch        fit's default batch_size 32 → 16
  reduction    losses reduce by "sum" instead of "sum_over_batch_size" (the loss, and its gradient, × batch)
  schedule     ExponentialDecay is off by one step (decays from step 1 as from step 2)
  sleep        every epoch of fit takes 1.5× as long (a sleep of half the epoch's own time at its end)
  sleep2       … 2× as long
  none         no change at all (a copy: the null mutant)
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

KINDS = ("sgd-lr", "adam-eps", "init", "shuffle", "batch", "reduction", "schedule", "sleep", "sleep2", "none")

SHIM = r'''
"""pytest-convergence calibration mutant: {kind}. Patches Keras right after it is imported."""
import importlib.abc
import importlib.util
import sys
import time

KIND = {kind!r}


def _patch(keras):
    if KIND == "sgd-lr":
        cls = keras.optimizers.SGD
        original = cls.__init__

        def __init__(self, learning_rate=0.016, *args, **kwargs):
            original(self, learning_rate, *args, **kwargs)

        cls.__init__ = __init__
    elif KIND == "adam-eps":
        cls = keras.optimizers.Adam
        original = cls.__init__

        def __init__(self, *args, epsilon=1e-3, **kwargs):
            original(self, *args, epsilon=epsilon, **kwargs)

        cls.__init__ = __init__
    elif KIND == "init":
        cls = keras.layers.Dense
        original = cls.__init__

        def __init__(self, *args, kernel_initializer="he_uniform", **kwargs):
            original(self, *args, kernel_initializer=kernel_initializer, **kwargs)

        cls.__init__ = __init__
    elif KIND in ("shuffle", "batch"):
        cls = keras.Model
        original = cls.fit

        def fit(self, *args, **kwargs):
            if KIND == "shuffle":
                kwargs.setdefault("shuffle", False)
            elif kwargs.get("batch_size") is None and kwargs.get("steps_per_epoch") is None:
                kwargs["batch_size"] = 16
            return original(self, *args, **kwargs)

        cls.fit = fit
        if KIND == "shuffle":  # the fast path builds fit's batches through Keras's own adapter: the same default
            from keras.src.trainers.data_adapters import array_data_adapter

            adapter = array_data_adapter.ArrayDataAdapter
            init = adapter.__init__

            def adapter_init(self, *args, **kwargs):
                kwargs["shuffle"] = False
                init(self, *args, **kwargs)

            adapter.__init__ = adapter_init
    elif KIND == "reduction":
        from keras.src.losses import loss as loss_module

        cls = loss_module.Loss
        original = cls.__init__

        def __init__(self, *args, **kwargs):
            if kwargs.get("reduction", "sum_over_batch_size") == "sum_over_batch_size" and len(args) < 2:
                kwargs["reduction"] = "sum"
            original(self, *args, **kwargs)

        cls.__init__ = __init__
    elif KIND == "schedule":
        cls = keras.optimizers.schedules.ExponentialDecay
        original = cls.__call__

        def __call__(self, step):
            return original(self, step + 1)

        cls.__call__ = __call__
    elif KIND in ("sleep", "sleep2"):
        extra = 0.5 if KIND == "sleep" else 1.0
        cls = keras.callbacks.CallbackList
        begin, end = cls.on_epoch_begin, cls.on_epoch_end

        def on_epoch_begin(self, epoch, logs=None):
            self._mutant_started = time.perf_counter()
            return begin(self, epoch, logs)

        def on_epoch_end(self, epoch, logs=None):
            started = getattr(self, "_mutant_started", None)
            if started is not None:
                time.sleep(extra * (time.perf_counter() - started))
            return end(self, epoch, logs)

        cls.on_epoch_begin, cls.on_epoch_end = on_epoch_begin, on_epoch_end


class _Hook(importlib.abc.MetaPathFinder):
    """Wraps the loader of `keras` so that it is patched once executed. It stays in place until then: TensorFlow asks
    for keras's spec (find_spec) before it imports it."""

    busy = False

    def find_spec(self, name, path=None, target=None):
        if name != "keras" or self.busy:
            return None
        self.busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy = False
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module
        hook = self

        def exec_module(module):
            load(module)
            _patch(module)
            if hook in sys.meta_path:
                sys.meta_path.remove(hook)

        spec.loader.exec_module = exec_module
        return spec


if KIND != "none":
    sys.meta_path.insert(0, _Hook())
'''


def site_packages(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def make(base_python: str, kind: str, folder: Path) -> Path:
    """A mutant of the environment of `base_python`; returns the mutant's Python."""
    if kind not in KINDS:
        raise ValueError(f"unknown mutant {kind!r}; choose from {', '.join(KINDS)}")
    base_site = site_packages(base_python)
    python = folder / "bin" / "python"
    if not python.exists():
        subprocess.run([base_python, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = Path(site_packages(str(python)))
    (site / "_base_environment.pth").write_text(f"import site; site.addsitedir({base_site!r})\n", encoding="utf-8")
    (site / "_convergence_mutant.py").write_text(textwrap.dedent(SHIM.format(kind=kind)), encoding="utf-8")
    (site / "zz_convergence_mutant.pth").write_text("import _convergence_mutant\n", encoding="utf-8")
    return python


if __name__ == "__main__":
    print(make(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
    print(sysconfig.get_paths()["purelib"])
