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
from collections.abc import Iterable, Sequence
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

    @field_validator("until", mode="before")
    @classmethod
    def _a_date(cls, value: Any) -> Any:
        if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise ValueError(f"expected a date such as 2027-06-30, got {str(value)[:60]!r}")

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
    crossed: set[int] = field(default_factory=set)  # entries a compared pair of versions (and scenario) could meet
    shadowed: dict[int, int] = field(default_factory=dict)  # entry → the earlier entry that accepted its change

    def where_of(self, i: int) -> str:
        return f"{self.path}:{self.lines[i]}"

    def expired(self, i: int) -> bool:
        until = self.entries[i].until
        return until is not None and until < self.today

    def candidates(self, kind: str, scenario: str) -> list[int]:
        """The entries, in file order, that name this kind and whose pattern matches this scenario, not expired."""
        return [
            i
            for i, entry in enumerate(self.entries)
            if not self.expired(i) and entry.kind == kind and matches(entry.scenarios, scenario)
        ]

    def saw(self, before: dict[str, str], after: dict[str, str], scenarios: Iterable[str]) -> None:
        """Note a compared pair of versions and the scenarios both ran: an entry whose `where` this pair crosses into
        and whose pattern matches one of them could have matched (else it is not stale, just not about this run)."""
        ids = list(scenarios)
        for i, entry in enumerate(self.entries):
            if self.expired(i) or not crosses(entry.where, before, after, None, settings_too=False):
                continue
            if any(matches(entry.scenarios, sid) for sid in ids):
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
            elif i in self.shadowed and i not in self.used:
                lines.append(
                    f"{self.where_of(i)}: shadowed: the entry on line {self.lines[self.shadowed[i]]} accepts the same "
                    f"changes first ({what}); remove or merge it"
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
    arrives = where.applies(after, settings) if settings_too else inside(where, after)
    return arrives and not inside(where, before)


def inside(where: Versions, versions: dict[str, str]) -> bool:
    """Whether these TensorFlow/Keras versions meet `where`'s specifiers (its settings aside)."""
    return Versions(tensorflow=where.tensorflow, keras=where.keras).applies(versions)


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
    """`convergence_accepted` from the configuration file pytest would use when started in `start` (the working
    directory), found as pytest 9 finds it: in this folder or the nearest one above, the first of pytest.toml,
    .pytest.toml ([pytest]), pytest.ini, .pytest.ini, pyproject.toml ([tool.pytest] or [tool.pytest.ini_options]),
    tox.ini ([pytest]), setup.cfg ([tool:pytest]) that holds pytest configuration (pytest.toml and pytest.ini always
    do). Returns (value, the file's folder, which a relative path is relative to), or None."""
    folder = (start or Path.cwd()).resolve()
    for here in (folder, *folder.parents):
        for name in PYTEST_CONFIG_FILES:
            path = here / name
            if path.is_file():
                found = _pytest_config(path)
                if found is not None:
                    value = found.get(INI_KEY)
                    return (str(value).strip(), here) if value else None
    return None


PYTEST_CONFIG_FILES = (
    "pytest.toml",
    ".pytest.toml",
    "pytest.ini",
    ".pytest.ini",
    "pyproject.toml",
    "tox.ini",
    "setup.cfg",
)


def _pytest_config(path: Path) -> dict[str, Any] | None:
    """The pytest settings in one configuration file, or None when it holds none (an unreadable one holds none)."""
    import iniconfig

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        if path.suffix == ".toml":
            document = tomllib.loads(path.read_text(encoding="utf-8"))
            if path.name != "pyproject.toml":
                table = document.get("pytest")
                return dict(table) if isinstance(table, dict) else {}  # a pytest.toml always configures pytest
            tool = (document.get("tool") or {}).get("pytest")
            if not isinstance(tool, dict):
                return None
            native = {k: v for k, v in tool.items() if k != "ini_options"}
            return native or dict(tool.get("ini_options") or {})
        ini = iniconfig.IniConfig(str(path))
    except (OSError, ValueError, iniconfig.ParseError):
        return None
    section = {"tox.ini": "pytest", "setup.cfg": "tool:pytest"}.get(path.name, "pytest")
    if section in ini:
        return dict(ini[section].items())
    return {} if path.name in ("pytest.ini", ".pytest.ini") else None
