"""Known changes, accepted in a file the team reviews (`--accepted FILE`, or the ini key `convergence_accepted`):
`compare`, `gate` and the baseline check show a change an entry matches as accepted and do not count it.

    accepted:
      - kind: slowdown                  # outcome | error | shift | slowdown | drift
        scenarios: "*"                  # a pattern over scenario ids (FILE::NAME), e.g. "linear_sgd.yaml::*"
        where: {keras: ">=3"}           # the versions the change arrives with (the skip:/xfail: form)
        reason: Keras 3 fit on numpy arrays costs more per epoch; accepted in #123
        until: 2027-06-30               # optional: from the day after, the entry accepts nothing

An entry accepts a change of its kind, in a scenario its pattern matches, between a version its `where` does not
cover and one it covers — the change that arrives with those versions. The same kind of change between two versions
that `where` both covers (the next slowdown within Keras 3) is a new change and counts. Entries that matched nothing
in a comparison that crossed into their `where`, and expired entries, are reported, so that the file does not rot.

Read like scenario files: safe YAML only, every problem located by file, line and key.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from .choices import COUNTABLE, CountableKind
from .conditions import Strict, Versions
from .errors import Problem, ScenarioError
from .loader import LocDict, format_path, load, locate
from .text import did_you_mean

INI_KEY = "convergence_accepted"
MAX_ENTRIES = 1000
MAX_FILE_BYTES = 1_000_000


class Entry(Strict):
    """One accepted change."""

    kind: CountableKind
    scenarios: str = Field(min_length=1, max_length=200)
    where: Versions
    reason: str = Field(min_length=1, max_length=1000)
    until: dt.date | None = Field(default=None, strict=False)  # YAML reads 2027-06-30 as a date; a quoted one too

    @field_validator("where")
    @classmethod
    def _versions_given(cls, where: Versions) -> Versions:
        if where.tensorflow is None and where.keras is None:
            raise ValueError("name the versions the change arrives with: tensorflow, keras or both")
        return where


class AcceptedFile(Strict):
    accepted: list[Entry] = Field(max_length=MAX_ENTRIES)


@dataclass
class Accepted:
    """The entries of one file, and what a comparison did with them."""

    path: str  # as shown
    entries: list[Entry]
    lines: list[int]  # of each entry
    today: dt.date = field(default_factory=dt.date.today)
    used: set[int] = field(default_factory=set)  # entries that accepted a change
    crossed: set[int] = field(default_factory=set)  # entries whose `where` a compared pair of versions crossed into

    def where_of(self, i: int) -> str:
        return f"{self.path}:{self.lines[i]}"

    def expired(self, i: int) -> bool:
        until = self.entries[i].until
        return until is not None and until < self.today

    def match(
        self,
        kind: str,
        scenario: str,
        before: dict[str, str],
        after: dict[str, str],
        settings: dict[str, Any] | None = None,
    ) -> int | None:
        """The entry that accepts this change (of `kind`, in `scenario`, from the versions `before` to `after`;
        `settings`: the run's dtype_policy and jit_compile), or None."""
        for i, entry in enumerate(self.entries):
            if self.expired(i) or not crosses(entry.where, before, after, settings):
                continue
            self.crossed.add(i)
            if entry.kind == kind and matches(entry.scenarios, scenario):
                self.used.add(i)
                return i
        return None

    def saw(self, before: dict[str, str], after: dict[str, str]) -> None:
        """Note a compared pair of versions: entries whose `where` it crosses into could have matched."""
        for i, entry in enumerate(self.entries):
            if not self.expired(i) and crosses(entry.where, before, after, None, settings_too=False):
                self.crossed.add(i)

    def report(self, fail_on: Sequence[str]) -> list[str]:
        """Expired entries, entries of a kind that does not count here (--fail-on), and entries that matched
        nothing though the versions compared crossed into their `where`; under a heading, or nothing."""
        lines = []
        for i, entry in enumerate(self.entries):
            what = f"{entry.kind} in {entry.scenarios!r} where {entry.where.describe()}"
            if entry.kind not in fail_on and i in self.crossed:
                lines.append(f"{self.where_of(i)}: not used: {entry.kind} does not count here (--fail-on) ({what})")
            elif self.expired(i):
                lines.append(
                    f"{self.where_of(i)}: expired on {entry.until} ({what}): it accepts nothing now; extend its "
                    "`until` after a new review, or remove it"
                )
            elif i in self.crossed and i not in self.used:
                lines.append(
                    f"{self.where_of(i)}: stale: matched no change here ({what}): the change it accepts is gone, "
                    "or the pattern no longer matches; remove or correct it"
                )
        return [f"The accepted-changes file {self.path}:", *(f"  {line}" for line in lines)] if lines else []

    def describe(self, i: int) -> str:
        entry = self.entries[i]
        until = f", until {entry.until}" if entry.until else ""
        return f"{self.where_of(i)}: where {entry.where.describe()}{until}: {entry.reason}"


def crosses(
    where: Versions,
    before: dict[str, str],
    after: dict[str, str],
    settings: dict[str, Any] | None,
    settings_too: bool = True,
) -> bool:
    """Whether going from the versions `before` to `after` enters `where`: `after` meets it (with the run's settings
    where `settings_too`), `before`'s TensorFlow/Keras versions do not."""
    versions_only = Versions(tensorflow=where.tensorflow, keras=where.keras)
    arrives = where.applies(after, settings) if settings_too else versions_only.applies(after)
    return arrives and not versions_only.applies(before)


def matches(pattern: str, scenario: str) -> bool:
    """Whether a scenario id (folder/FILE::NAME) matches `pattern`, on the whole id or on any part of it that starts
    after a '/': "linear_sgd.yaml::*" matches "scenarios/linear_sgd.yaml::sgd-…"."""
    if fnmatch.fnmatchcase(scenario, pattern):
        return True
    parts = scenario.partition("::")[0].split("/")
    return any(fnmatch.fnmatchcase(scenario.split("/", i)[-1], pattern) for i in range(1, len(parts)))


def read(path: Path, shown: str | None = None, today: dt.date | None = None) -> Accepted:
    """An accepted-changes file, validated; raises ScenarioError with every problem located."""
    shown = shown or str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ScenarioError(
                [Problem(shown, 0, "", f"larger than {MAX_FILE_BYTES} bytes: not an accepted-changes file")]
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([Problem(shown, 0, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([Problem(shown, 0, "", f"cannot read: {exc}")]) from None
    doc = load(text, shown)
    if not isinstance(doc, LocDict):
        raise ScenarioError([Problem(shown, 1, "", "an accepted-changes file is a mapping with the key accepted")])
    try:
        parsed = AcceptedFile.model_validate(dict(doc))
    except ValidationError as exc:
        raise ScenarioError(_problems(exc, doc, shown)) from None
    items = doc["accepted"]
    return Accepted(
        shown, list(parsed.accepted), [items.where[i][1] for i in range(len(items))], today or dt.date.today()
    )


def _problems(exc: ValidationError, doc: LocDict, shown: str) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("<")))
        path, line = locate(doc, loc, ((), 1))
        out.append(Problem(shown, line, format_path(path), _message(err, loc)))
    return out


def _message(err: Any, loc: Sequence[Any]) -> str:
    kind = err["type"]
    if kind == "missing":
        return "missing required key" + (f"; an entry has {', '.join(Entry.model_fields)}" if len(loc) == 3 else "")
    if kind == "extra_forbidden":
        models: dict[int, type[BaseModel]] = {1: AcceptedFile, 3: Entry, 4: Versions}
        allowed = models.get(len(loc))
        listing = f"; allowed here: {', '.join(allowed.model_fields)}" if allowed else ""
        return f"unknown key {loc[-1]!r}{listing}"
    if kind == "literal_error" and loc[-1] == "kind":
        got = str(err["input"])[:60]
        return (
            f"{got!r} is not a kind that can count{did_you_mean(got, COUNTABLE, n=1)} Allowed: {', '.join(COUNTABLE)}."
        )
    if kind in ("date_from_datetime_parsing", "date_parsing", "date_type", "date_from_datetime_inexact"):
        return f"expected a date such as 2027-06-30, got {err['input']!r}"
    if kind == "string_type":
        quote = ' (quote a version specifier: ">=3")' if loc[-1] in ("tensorflow", "keras") else ""
        return f"expected a string{quote}, got {err['input']!r}"
    if kind in ("list_type", "dict_type", "model_type"):
        return f"expected {'a list of entries' if kind == 'list_type' else 'a mapping'}, got {str(err['input'])[:60]!r}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return msg if kind == "value_error" else f"{msg}, got {str(err['input'])[:60]!r}"


def find_ini_setting(start: Path | None = None) -> tuple[str, Path] | None:
    """`convergence_accepted` from the ini file pytest would use from `start` (the working directory): the first of
    pytest.ini, .pytest.ini, pyproject.toml ([tool.pytest.ini_options]), tox.ini ([pytest]), setup.cfg
    ([tool:pytest]) that is a pytest ini file, in this folder or the nearest one above. Returns (value, the ini
    file's folder, which a relative path is relative to), or None."""
    import iniconfig

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
        import tomli as tomllib  # type: ignore[no-redef]

    folder = (start or Path.cwd()).resolve()
    for here in (folder, *folder.parents):
        for name, section in (
            ("pytest.ini", "pytest"),
            (".pytest.ini", "pytest"),
            ("pyproject.toml", None),
            ("tox.ini", "pytest"),
            ("setup.cfg", "tool:pytest"),
        ):
            path = here / name
            if not path.is_file():
                continue
            if section is None:
                try:
                    options = tomllib.loads(path.read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
                except (KeyError, TypeError, ValueError, OSError):
                    continue
                value = options.get(INI_KEY)
                return (str(value), here) if value else None
            try:
                ini = iniconfig.IniConfig(str(path))
            except (iniconfig.ParseError, OSError):
                continue
            if section in ini or name.endswith("pytest.ini"):
                value = ini.get(section, INI_KEY) if section in ini else None
                return (str(value).strip(), here) if value else None
    return None
