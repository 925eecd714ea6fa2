"""JSON Schemas generated from the models that validate and the structures that are written: one for scenario
files (so editors complete and check YAML: `# yaml-language-server: $schema=…`), one for results files, one for
accepted-changes files.

`pytest-convergence schema scenario|results|accepted` prints them; the copies in the repository's schemas/ folder are
checked against these by the tests.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import TypeAdapter

from .accepted import AcceptedFile
from .record import Document
from .spec import CALLBACKS, MAX_SEEDS, SCHEDULES, ScenarioSpec

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_URL = "https://pytest-convergence.invalid/schemas/"  # an identifier, not a download: nothing is fetched
_SCALAR = {"type": ["number", "string", "boolean", "null"]}


def _named_form(description: str, names: tuple[str, ...], alone: bool = True) -> dict[str, Any]:
    """{Name: {keyword: value, ...}} with Name one of `names` (or just Name, where `alone`)."""
    keywords = {"anyOf": [{"type": "null"}, {"type": "object", "additionalProperties": {"$ref": "#/$defs/Keyword"}}]}
    mapping = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "propertyNames": {"enum": list(names)},
        "additionalProperties": keywords,
    }
    return {"description": description, "anyOf": [{"enum": list(names)}, mapping] if alone else [mapping]}


# Where YAML is shorter than the validated model, the model's before-validator reads the short form; the schema
# must describe what is written, so these definitions replace the generated ones.
WRITTEN_FORMS: dict[str, dict[str, Any]] = {
    # a keyword value for a layer or an optimizer: scalars and (nested) lists of them, never a mapping
    "Keyword": {"anyOf": [_SCALAR, {"type": "array", "items": {"$ref": "#/$defs/Keyword"}}]},
    "LayerSpec": {
        "description": "A Keras layer: {ClassName: {keyword: value, ...}} (one key) or just ClassName.",
        "anyOf": [
            {"type": "string"},
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": {
                    "anyOf": [{"type": "null"}, {"type": "object", "additionalProperties": {"$ref": "#/$defs/Keyword"}}]
                },
            },
        ],
    },
    "OptimizerSpec": {
        "description": "A Keras optimizer name, or {name: ..., keyword: value, ...}; learning_rate is a number or a "
        "schedule {ExponentialDecay: {keyword: value, ...}}.",
        "anyOf": [
            {"type": "string"},
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "learning_rate": {"anyOf": [{"type": "number"}, {"$ref": "#/$defs/ScheduleSpec"}]},
                },
                "required": ["name"],
                "additionalProperties": {"$ref": "#/$defs/Keyword"},
            },
        ],
    },
    "LossSpec": {
        "description": "A Keras loss name, or {name: LossClass, keyword: value, ...} (e.g. from_logits: true).",
        "anyOf": [
            {"type": "string"},
            {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
                "additionalProperties": {"$ref": "#/$defs/Keyword"},
            },
        ],
    },
    "ScheduleSpec": _named_form("A learning-rate schedule, {Name: {keyword: value, ...}}.", SCHEDULES, alone=False),
    "CallbackSpec": _named_form(
        "A Keras callback the plugin builds: {Name: {keyword: value, ...}} or Name.", CALLBACKS
    ),
}


def scenario_file() -> dict[str, Any]:
    """The schema of a scenario file: `defaults:` (any scenario keys but name) and `scenarios:` (a non-empty list).
    A scenario must name itself; every other key may come from `defaults:`, so none is required on its own."""
    spec = ScenarioSpec.model_json_schema(ref_template="#/$defs/{model}")
    defs = spec.pop("$defs") | WRITTEN_FORMS
    # `seeds: K` means seeds 0..K-1
    spec["properties"]["seeds"]["anyOf"].append({"type": "integer", "minimum": 1, "maximum": MAX_SEEDS})
    defaults = copy.deepcopy(spec)
    defaults["properties"].pop("name")
    defaults.pop("required", None)
    defaults.update(title="Defaults", description="Keys merged under every scenario of the file; its own keys win.")
    defs["Scenario"] = spec | {"required": ["name"]}
    defs["Defaults"] = defaults
    return {
        "$schema": DRAFT,
        "$id": BASE_URL + "scenario-file.schema.json",
        "title": "pytest-convergence scenario file",
        "type": "object",
        "properties": {
            "defaults": {"$ref": "#/$defs/Defaults"},
            "scenarios": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/Scenario"}},
        },
        "required": ["scenarios"],
        "additionalProperties": False,
        "$defs": defs,
    }


def results_file() -> dict[str, Any]:
    """The schema of a results file (`--convergence-json`), from the typed structures in record.py."""
    schema = TypeAdapter(Document).json_schema(ref_template="#/$defs/{model}")
    head = {"$schema": DRAFT, "$id": BASE_URL + "results-file.schema.json"}
    return head | schema | {"title": "pytest-convergence results file"}


def accepted_file() -> dict[str, Any]:
    """The schema of an accepted-changes file (`--accepted`, ini `convergence_accepted`), from its models."""
    schema = AcceptedFile.model_json_schema(ref_template="#/$defs/{model}")
    until = schema["$defs"]["Entry"]["properties"]["until"]
    until["anyOf"] = [{"type": "string", "format": "date"}, {"type": "null"}]  # YAML's 2027-06-30, a date
    head = {"$schema": DRAFT, "$id": BASE_URL + "accepted-file.schema.json"}
    return head | schema | {"title": "pytest-convergence accepted changes"}


SCHEMAS = {"scenario": scenario_file, "results": results_file, "accepted": accepted_file}
