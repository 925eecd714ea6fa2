"""The plugin's own error types: every user mistake becomes one of these, with a location."""

from __future__ import annotations

from dataclasses import dataclass

from .text import printable

MAX_MESSAGE = 1000  # characters of one problem's message: a file's content quoted in it cannot flood a log


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario file: where it is and what to do about it."""

    path: str  # the file, as given
    line: int  # 1-based; 0 when the problem is the file as a whole
    key: str  # dotted key path, e.g. "scenarios[1].optimizer.learning_rate"; "" for the file
    message: str

    def __str__(self) -> str:
        """One line, shown where pytest, a terminal or a CI log shows it: printable (text.printable), and at most
        MAX_MESSAGE characters of message."""
        message = self.message if len(self.message) <= MAX_MESSAGE else f"{self.message[:MAX_MESSAGE]}... (cut)"
        where = f"{self.path}:{self.line}" if self.line else self.path
        return printable(f"{where}: {self.key}: {message}" if self.key else f"{where}: {message}")


class ScenarioError(Exception):
    """A scenario file that cannot be used as written. Carries one or more located problems."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class InputError(Exception):
    """Bad input to a command (a file, a target, an option): it exits with code 2 and this one-line message."""


class ExpressionError(ValueError):
    """An expression in `data.y` that is not in the allowed arithmetic subset."""


# ---- input errors of the commands: exit code 2, with their one-line message


class BisectInputError(InputError):
    """A good/bad version that names no build, an unknown package, nothing between the two ends."""


class CompareInputError(InputError):
    """A results file that is missing or not one: exit code 2, with this message."""


class ExplainInputError(InputError):
    """A target that names no scenario, or a scenario file with problems."""


class MergeInputError(InputError):
    """Shards that are not parts of one run (other versions or settings, a scenario twice): exit code 2."""


class GateInputError(InputError):
    """An environment that cannot be found or made, a run that did not produce results: exit code 2."""


# ---- scenario data and Keras names


class DataError(Exception):
    """A data problem at `loc` (keys below `data:`)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


class UnknownName(ValueError):
    """A Keras name (optimizer, …) this Keras does not know: the message lists the known ones."""


class FactoryError(Exception):
    """A model factory that cannot be found or is not allowed (outside the project, turned off)."""


class ModelTooLarge(Exception):
    """A model above the run's cap on parameters (--convergence-limit params): the scenario fails, untrained."""


class FastPathError(Exception):
    """The fast path cannot be built on this Keras (its array adapter is not where this plugin looks): never a
    scenario's own error, so never what `expect.raises` matches."""


# ---- running: a failed expectation, the training child, probes, the journal


class ScenarioFailed(Exception):
    """An expectation did not hold. Its text is the whole failure message: no traceback is shown."""


class IsolatedFailure(Exception):
    """Training in the child failed in a way that is not a Python exception of the scenario: it died, or hung. The
    class name is what the record's error says."""

    @property
    def type_name(self) -> str:
        return type(self).__name__


class TrainingProcessDied(IsolatedFailure):
    """The training child died (a native crash, out of memory, killed from outside)."""


class TrainingProcessKilled(IsolatedFailure):
    """The training child overran the hard time limit and was killed."""


class ChildError(Exception):
    """An exception raised in the child, carried back as text (its class name, message and traceback)."""

    def __init__(self, type_name: str, message: str, trace: str) -> None:
        super().__init__(message)
        self.type_name, self.message, self.trace = type_name, message, trace

    def __str__(self) -> str:
        return self.message

    @classmethod
    def from_plain(cls, data: dict[str, str]) -> ChildError:
        """From evaluate.error_as_text's {type, message, trace}: the one decoder of a child's error."""
        return cls(data["type"], data["message"], data["trace"])


class Unplaceable(Exception):
    """A scenario whose resources (cpus, gpus) no node of the Ray cluster has: its test fails, the others run."""


class ProbeFailed(Exception):
    """A probe that could not be installed or run: skipped."""


class ResultsTooLarge(ValueError):
    """A results file or journal over the size limit: refused before it is read."""

    def __init__(self, path: object, size: int, limit: int) -> None:
        super().__init__(f"{path}: {_size(size)}, over the limit of {_size(limit)}")
        self.path, self.size, self.limit = path, size, limit


class MalformedResults(ValueError):
    """A results document (or journal entry) with a key of the wrong kind; the message says where and what fits."""


class JournalBusy(Exception):
    """Another run holds the journal of the same results file."""


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count:,} bytes"
