"""The published JSON Schemas: generated, in step with the copies in schemas/, and in agreement with the
validation of scenario files (what the schema accepts or refuses, the loader does too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pytest_convergence import schemas
from pytest_convergence.cli import main
from pytest_convergence.errors import ScenarioError
from pytest_convergence.scenario import load_file

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))
SCHEMA_LINE = "# yaml-language-server: $schema=../schemas/scenario-file.schema.json"


def validator(which: str) -> jsonschema.Draft202012Validator:
    schema = schemas.SCHEMAS[which]()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("which", ["scenario", "results", "accepted"])
def test_published_copies_are_the_generated_schemas(which: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", which]) == 0
    printed = json.loads(capsys.readouterr().out)
    published = ROOT / "schemas" / f"{which}-file.schema.json"
    assert printed == json.loads(published.read_text(encoding="utf-8")), (
        f"schemas/ is stale: pytest-convergence schema {which} > {published.relative_to(ROOT)}"
    )


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_scenario_file_names_and_meets_the_schema(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == SCHEMA_LINE
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator("scenario").iter_errors(yaml.safe_load(text))]
    assert errors == []


VALID = """\
defaults:
  data: {x: {arange: [1, 11]}, y: "0.5 * x"}
  model: [Flatten, {Dense: {units: 1, activation: null}}, {Dense: {units: 2, kernel_size: [3, [1, 2]]}}]
  optimizer: {name: sgd, learning_rate: 0.01, momentum: 0.9}
  loss: mse
  epochs: 5
scenarios:
  - name: a
    seeds: 3
    expect: {converges: {loss_below: 1.0}}
  - name: b
    metrics: [mae]
    optimizer: adam
    xfail: {keras: ">=3", reason: why}
    expect: {metric: {name: mae, below: 1.0}, min_pass_rate: 0.5}
"""


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d["scenarios"][0].update(epochz=5), ["scenarios", 0]),  # a misspelt key
        (lambda d: d["scenarios"][0].update(epochs="fifty"), ["scenarios", 0, "epochs"]),
        (lambda d: d["scenarios"][0].update(epochs=0), ["scenarios", 0, "epochs"]),
        (lambda d: d["scenarios"][0].pop("name"), ["scenarios", 0]),
        (lambda d: d["defaults"]["model"].append({"Dense": {}, "Flatten": {}}), ["defaults", "model"]),
        (lambda d: d["defaults"]["model"].append({"Dense": {"units": {"class_name": "X"}}}), ["defaults", "model"]),
        (lambda d: d["defaults"]["optimizer"].update(momentum={"a": 1}), ["defaults", "optimizer"]),
        (lambda d: d.update(scenario=[]), []),
    ],
)
def test_schema_and_loader_refuse_the_same_mistakes(tmp_path: Path, change: Any, where: list[Any]) -> None:
    doc = yaml.safe_load(VALID)
    assert list(validator("scenario").iter_errors(doc)) == []
    (tmp_path / "ok.yaml").write_text(VALID, encoding="utf-8")
    assert len(load_file(tmp_path / "ok.yaml")) == 2

    change(doc)
    errors = list(validator("scenario").iter_errors(doc))
    assert errors and any(list(e.absolute_path)[: len(where)] == where for e in errors)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ScenarioError):
        load_file(tmp_path / "bad.yaml")


def test_results_schema_takes_non_finite_numbers_as_written_and_refuses_wrong_kinds() -> None:
    check = validator("results")
    seed = {"seed": 0, "losses": [1.0, "Infinity", "NaN"], "summary": {"final_loss": "NaN"}}
    doc = {"schema": "pytest-convergence/1", "environment": {}, "scenarios": [{"id": "s::a", "outcome": "failed"}]}
    doc["scenarios"][0]["seeds"] = [seed]
    assert list(check.iter_errors(doc)) == []
    seed["losses"] = [1.0, "lots"]
    assert [list(e.absolute_path) for e in check.iter_errors(doc)] == [["scenarios", 0, "seeds", 0, "losses", 1]]
