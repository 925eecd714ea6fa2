"""The plugin's own error types: every user mistake becomes one of these, with a location."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario file: where it is and what to do about it."""

    path: str  # the file, as given
    line: int  # 1-based; 0 when the problem is the file as a whole
    key: str  # dotted key path, e.g. "scenarios[1].optimizer.learning_rate"; "" for the file
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ScenarioError(Exception):
    """A scenario file that cannot be used as written. Carries one or more located problems."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class InputError(Exception):
    """Bad input to a command (a file, a target, an option): it exits with code 2 and this one-line message."""


class ExpressionError(ValueError):
    """An expression in `data.y` that is not in the allowed arithmetic subset."""
