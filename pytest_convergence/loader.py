"""YAML text → plain Python data that remembers the line of every key and list item.

Only YAML's safe types are built (no tags that construct objects), and duplicate keys are an
error instead of the last one silently winning.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any

import yaml

from .errors import Problem, ScenarioError
from .text import unprintable_in

Key = str | int
Path = tuple[Key, ...]


class LocDict(dict):  # type: ignore[type-arg]
    """A mapping from YAML; `where[key]` is (path from the document root, line) of each entry."""

    def __init__(self, *args: Any, where: dict[Hashable, tuple[Path, int]] | None = None) -> None:
        super().__init__(*args)
        self.where = where if where is not None else {}


class LocList(list):  # type: ignore[type-arg]
    """A sequence from YAML; `where[i]` is (path from the document root, line) of each item."""

    def __init__(self, *args: Any, where: list[tuple[Path, int]] | None = None) -> None:
        super().__init__(*args)
        self.where = where if where is not None else []


def format_path(path: Iterable[Key]) -> str:
    """("scenarios", 1, "optimizer") → "scenarios[1].optimizer"."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Loader(yaml.SafeLoader):
    """SafeLoader that builds LocDict/LocList and rejects duplicate keys."""

    nodes_built = 0
    nodes_composed = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """PyYAML's, counted: a document of more than MAX_NODES nodes stops while it is parsed, not after its whole
        tree is held in memory."""
        self.nodes_composed += 1
        if self.nodes_composed > MAX_NODES:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise _TooLarge(mark.line + 1)
        return super().compose_node(parent, index)


class _TooLarge(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


# PyYAML follows YAML 1.1, where `1e-4` (no dot) is a string. Users write learning rates that way,
# so read it as YAML 1.2 does: a float. (add_implicit_resolver copies the table for the subclass.)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
MAX_NODES = 200_000  # aliases can make a small file expand enormously ("billion laughs")


def _build(loader: _Loader, node: yaml.Node, path: Path, file: str) -> Any:
    loader.nodes_built += 1
    if loader.nodes_built > MAX_NODES:
        line = node.start_mark.line + 1
        raise ScenarioError([Problem(file, line, format_path(path), f"document expands to over {MAX_NODES} values")])
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        line = node.start_mark.line + 1
        raise ScenarioError(
            [Problem(file, line, format_path(path), f"not valid YAML here: the tag {node.tag!r} is not allowed")]
        )
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<) the standard way
        out = LocDict()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise ScenarioError([Problem(file, line, format_path(path), f"keys must be strings, got {key!r}")])
            _printable(key, file, line, path)
            if key in out:
                first = out.where[key][1]
                raise ScenarioError(
                    [
                        Problem(
                            file,
                            line,
                            format_path((*path, key)),
                            f"duplicate key (first given on line {first}); each key may appear once",
                        )
                    ]
                )
            out[key] = _build(loader, value_node, (*path, key), file)
            out.where[key] = ((*path, key), line)
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = LocList()
        for i, item in enumerate(node.value):
            seq.append(_build(loader, item, (*path, i), file))
            seq.where.append(((*path, i), item.start_mark.line + 1))
        return seq
    try:
        value = loader.construct_object(node, deep=True)
    except (ValueError, OverflowError) as exc:  # a plain scalar YAML resolves but cannot build: 2020-13-01, …
        line = node.start_mark.line + 1
        raise ScenarioError(
            [Problem(file, line, format_path(path), f"not a valid value: {str(node.value)[:60]!r} ({exc})")]
        ) from None
    _printable(value, file, node.start_mark.line + 1, path)
    return value


PROSE_KEYS = ("description", "reason")  # text that may span lines (a block scalar); a reason is folded onto one (spec)


def _printable(value: Any, file: str, line: int, path: Path) -> None:
    """Text in a scenario file ends up in pytest's report lines, tracebacks, CI logs and job summaries: a control
    character in it (ESC, a carriage return, a bidi override; "\\n::error" written as a YAML escape) is refused
    where it is written, and so is a newline anywhere but in prose (PROSE_KEYS): a layer's name goes into Keras's
    error messages as it is."""
    prose = bool(path) and path[-1] in PROSE_KEYS
    bad = unprintable_in(value, lines=prose) if isinstance(value, str) else None
    if bad is not None:
        raise ScenarioError(
            [
                Problem(
                    file,
                    line,
                    format_path(path),
                    f"the control character '{bad}' is not allowed in text (a scenario file's text is shown in "
                    "terminals and CI logs; write plain text, on one line except in a description)",
                )
            ]
        )


def _yaml_problem(exc: yaml.MarkedYAMLError, mark: Any) -> str:
    """PyYAML's complaint in our words where it is about indentation (the usual cause), with the column."""
    what = " ".join(s for s in (exc.context, exc.problem) if s)
    column = f"column {mark.column + 1}" if mark else "its column"
    if "expected <block end>, but found" in what or "did not find expected key" in what:
        return (
            f"the indentation does not line up: this line starts at {column}, which matches no key above it (the "
            "keys of one mapping start in the same column; a nested mapping's further in)"
        )
    if "mapping values are not allowed here" in what:
        return (
            f"a ':' at {column} where no key can start: a key indented under a value, or a value with ': ' in it "
            "(quote it)"
        )
    return f"not valid YAML: {what}"


def load(text: str, file: str) -> Any:
    """Parse one YAML document into LocDict/LocList/scalars. Raises ScenarioError with the line."""
    try:
        loader = _Loader(text)  # the reader already rejects some characters
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem(file, 1, "", f"not valid YAML: {exc}")]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        return _build(loader, node, (), file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise ScenarioError([Problem(file, line, "", _yaml_problem(exc, mark))]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem(file, 0, "", f"not valid YAML: {exc}")]) from None
    except RecursionError:
        raise ScenarioError([Problem(file, 0, "", "not usable: the YAML is nested too deeply")]) from None
    except _TooLarge as exc:
        raise ScenarioError([Problem(file, exc.line, "", f"document has over {MAX_NODES} values")]) from None
    finally:
        loader.dispose()


def deep_merge(
    base: Any,
    over: Any,
    whole: Collection[Path] = (),
    exclusive: Mapping[Path, Sequence[Collection[str]]] = {},
    at: Path = (),
) -> Any:
    """`over` on top of `base`: mappings merge key by key, anything else in `over` wins.

    `whole` names the paths whose values `over` replaces without merging; `exclusive` names, per
    path, groups of keys that exclude each other: a key of one group in `over` drops the keys of
    the other groups from `base`. Each entry keeps the location it was written at, so an error in
    an inherited default points at the `defaults:` line, not at the scenario.
    """
    if not (isinstance(base, LocDict) and isinstance(over, LocDict)) or at in whole:
        return over
    dropped: set[Hashable] = set()
    for group in exclusive.get(at, ()):
        if any(k in over for k in group):
            dropped |= {k for other in exclusive[at] if other is not group for k in other}
    out = LocDict(where={k: w for k, w in base.where.items() if k not in dropped})
    for key, value in base.items():
        if key not in dropped:
            out[key] = value
    for key, value in over.items():
        child = (*at, key) if isinstance(key, str) else at
        out[key] = deep_merge(out[key], value, whole, exclusive, child) if key in out else value
        out.where[key] = over.where[key]
    return out


def locate(node: Any, loc: Iterable[Key], start: tuple[Path, int]) -> tuple[Path, int]:
    """Follow `loc` (a validator's error location) down from `node`, as far as the data goes.

    Returns the path and line of the deepest entry that exists, with the rest of `loc`
    appended to the path (a missing key is reported at its parent's line).
    """
    path, line = start
    rest: list[Key] = []
    for part in loc:
        if rest:
            rest.append(part)
        elif (isinstance(node, LocDict) and part in node) or (
            isinstance(node, LocList) and isinstance(part, int) and 0 <= part < len(node)
        ):
            path, line = node.where[part]  # type: ignore[index]
            node = node[part]  # type: ignore[index]
        else:
            rest.append(part)
    return (*path, *rest), line
