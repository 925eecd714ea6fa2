"""loader: YAML with lines, duplicate keys, merge of defaults, locating error paths."""

from __future__ import annotations

import pytest

from pytest_convergence.errors import ScenarioError
from pytest_convergence.loader import LocDict, deep_merge, format_path, load, locate

DOC = """\
defaults:
  data: {x: [1, 2], y: [3, 4]}
  epochs: 5
scenarios:
  - name: a
    data: {y: [5, 6]}
"""


def test_lines_of_keys_and_items_are_recorded() -> None:
    doc = load(DOC, "f.yaml")
    assert doc.where["scenarios"] == (("scenarios",), 4)
    assert doc["scenarios"].where[0] == (("scenarios", 0), 5)
    assert doc["defaults"].where["epochs"] == (("defaults", "epochs"), 3)


def test_merge_keeps_where_each_value_was_written() -> None:
    doc = load(DOC, "f.yaml")
    merged = deep_merge(doc["defaults"], doc["scenarios"][0])
    assert merged["data"] == {"x": [1, 2], "y": [5, 6]}
    assert merged["epochs"] == 5
    assert merged.where["epochs"] == (("defaults", "epochs"), 3)
    assert merged["data"].where["y"][0] == ("scenarios", 0, "data", "y")
    assert merged["data"].where["x"][0] == ("defaults", "data", "x")


def test_locate_follows_as_far_as_the_data_goes() -> None:
    doc = load(DOC, "f.yaml")
    start = doc["scenarios"].where[0]
    scenario = doc["scenarios"][0]
    assert locate(scenario, ("data", "y", 1), start) == (("scenarios", 0, "data", "y", 1), 6)
    # a missing key is reported at its parent, with the key named
    assert locate(scenario, ("expect",), start) == (("scenarios", 0, "expect"), 5)


def test_duplicate_key_names_both_lines() -> None:
    with pytest.raises(ScenarioError) as err:
        load("a: 1\nb: 2\na: 3\n", "f.yaml")
    (problem,) = err.value.problems
    assert (problem.line, problem.key) == (3, "a")
    assert "first given on line 1" in problem.message


def test_a_scalar_that_cannot_be_built_is_located() -> None:
    """YAML reads 2020-13-01 as a timestamp, which cannot be built: a located problem, not a ValueError."""
    with pytest.raises(ScenarioError) as err:
        load("scenarios:\n  - name: a\n    description: 2020-13-01\n", "f.yaml")
    (problem,) = err.value.problems
    assert (problem.line, problem.key) == (3, "scenarios[0].description")
    assert problem.message == "not a valid value: '2020-13-01' (month must be in 1..12)"


def test_malformed_yaml_reports_the_line() -> None:
    with pytest.raises(ScenarioError) as err:
        load("scenarios:\n  - name: a\n    epochs: [1, 2\n", "f.yaml")
    (problem,) = err.value.problems
    assert problem.line == 4 and "not valid YAML" in problem.message


@pytest.mark.parametrize(
    "text",
    [
        "a: !!python/object/apply:os.system ['echo hi']\n",
        "a: !!python/object/apply:os.system {args: ['echo hi']}\n",
        "a: !!python/name:os.system\n",
    ],
)
def test_object_building_tags_are_refused(text: str) -> None:
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load(text, "f.yaml")


def test_alias_bombs_are_bounded() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 8):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        bomb += f"{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
    with pytest.raises(ScenarioError, match="expands to over"):
        load(bomb, "f.yaml")


def test_format_path() -> None:
    assert format_path(("scenarios", 1, "optimizer", "learning_rate")) == "scenarios[1].optimizer.learning_rate"
    assert isinstance(load("a: 1", "f"), LocDict)
