"""The gate's timing worker: `python -m pytest_convergence.timeprobe`, started in the environment under test.

It imports TensorFlow once, then answers one JSON line per JSON line it reads on stdin: {"file", "display", "root",
"name", "epochs", "factories"} → {"seconds": [one per epoch]} or {"error": "Type: message"}. The scenario's model is
built and compiled at its first request (`keras_side.epoch_timer`); each request trains it `epochs` epochs more with
`fit` on the numpy arrays, as the scenario asks (its batch size, shuffling, validation split, callbacks: what the
auto sentinel times too). The gate alternates two such workers, one per environment, so that both versions are
timed in the same minutes (`gate.time_side_by_side`).

Its first line is {"ready": {versions}}. Anything the frameworks print goes to stderr: stdout carries only the
answers.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .scenario import Scenario


class Timer:
    """What the worker knows between requests: the scenario files it loaded and the models it built (each built,
    compiled and traced once: its first epoch is not steady). A Ray actor holds one too (cluster._TimingActor)."""

    def __init__(self) -> None:
        self.loaded: dict[tuple[str, str], list[Scenario]] = {}
        self.timers: dict[tuple[str, str, str], Callable[[int], list[float]]] = {}

    @staticmethod
    def versions() -> dict[str, str]:
        from . import keras as keras_side

        return keras_side.versions()

    def answer(self, job: dict[str, Any]) -> dict[str, Any]:
        """{"seconds": [one per epoch]} or {"error": "Type: message"}."""
        from . import keras as keras_side
        from .errors import ScenarioError
        from .scenario import load_file
        from .text import one_line

        try:
            key = (str(job["file"]), str(job["root"]))
            if key not in self.loaded:
                self.loaded[key] = load_file(Path(key[0]), display=str(job["display"]), root=Path(key[1]))
            found = [s for s in self.loaded[key] if s.name == job["name"]]
            if len(found) != 1:
                raise LookupError(f"{job['display']} holds no scenario {job['name']!r}")
            (scenario,) = found
            if not job.get("factories", True) and isinstance(scenario.spec.model, str):
                raise PermissionError("model factories are off (--no-factories)")
            timer = self.timers.get((*key, scenario.name))
            if timer is None:
                timer = self.timers[(*key, scenario.name)] = keras_side.epoch_timer(scenario, scenario.seeds[0])
            return {"seconds": timer(int(job["epochs"]))}
        except (ScenarioError, Exception) as exc:
            return {"error": f"{type(exc).__name__}: {one_line(str(exc), 300)}"}


def serve(requests: TextIO, answers: TextIO) -> None:
    timer = Timer()
    answer(answers, {"ready": timer.versions()})
    for line in requests:
        try:
            job: dict[str, Any] = json.loads(line)
        except ValueError as exc:
            answer(answers, {"error": f"{type(exc).__name__}: {exc}"})
            continue
        answer(answers, timer.answer(job))


def answer(stream: TextIO, message: dict[str, Any]) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def main() -> None:
    # the answers go to a copy of fd 1; fd 1 itself (what native code and print write to) becomes stderr
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin, answers)


if __name__ == "__main__":
    main()
