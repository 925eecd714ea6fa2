"""The operator's caps on what one scenario file may make this machine do: the size of a model, of the files read,
of a line of CSV, and (for the training child) its memory. They come from the command line (`--convergence-limit
NAME=VALUE`, repeatable) or the ini key `convergence_limits` (one NAME=VALUE per line), and no scenario file can
raise them. The time limit is `--convergence-timeout` (a ceiling too). Pure: no numpy, pydantic or yaml."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    params: int = 10_000_000  # weights of one model (40 MB as float32), counted before any is allocated
    activations: int = 10_000_000  # values one sample makes in a model's largest layer output (×batch in training)
    scenario_file_bytes: int = 256 * 2**10  # a scenario YAML file, refused unread above this
    data_file_bytes: int = 100 * 2**20  # a data.file (CSV or NPZ), refused unread above this
    line_chars: int = 65_536  # one line of a CSV data file
    memory_mib: int = 0  # the training child's address space under --convergence-isolate (0: no limit)
    results_bytes: int = 64 * 2**20  # a journal or baseline this run reads back (compare: --max-results-mib)

    def to_plain(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> Limits:
        return cls(**plain)


NAMES = tuple(f.name for f in dataclasses.fields(Limits))
HELP = (
    "NAME=VALUE (repeatable): a cap no scenario file can raise. "
    + ", ".join(f"{f.name} (default {f.default:_})" for f in dataclasses.fields(Limits))
    + ". params: weights of one model and activations: values one sample makes in its largest layer output (both "
    "measured before anything is allocated); *_bytes: files refused unread above it (results_bytes: the journal and "
    "baseline this run reads back); line_chars: a CSV line; memory_mib: "
    "the training child's address space under --convergence-isolate (a model or batch that would need more fails "
    "its scenario with an allocation error instead of exhausting the machine; 0: none)."
)


def parse(given: list[str], source: str) -> Limits:
    """`["params=5_000_000", "memory_mib=4096"]` → Limits. ValueError names `source` and what is allowed."""
    values: dict[str, int] = {}
    for item in given:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in NAMES:
            raise ValueError(f"{source}: {item!r} is not NAME=VALUE with NAME one of {', '.join(NAMES)}")
        try:
            value = int(raw.strip().replace("_", ""), 10) if len(raw) <= 30 else -1
        except ValueError:
            value = -1
        if value < (0 if name == "memory_mib" else 1):
            raise ValueError(f"{source}: {name} must be a whole number {'>= 0' if name == 'memory_mib' else '>= 1'}")
        values[name] = value
    return Limits(**values)


DEFAULTS = Limits()  # what a run without --convergence-limit allows
