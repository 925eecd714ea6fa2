"""compare's judgement on its Change objects (kind, direction, size, whether within the noise, state), independent
of the wording the text output gives them: hand-made records, no files."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from test_compare import scenario

from pytest_convergence import compare, results


def column(label: str, tf: str, keras: str, *records: dict[str, Any]) -> compare.Column:
    doc = results.document(list(records), [], dt.datetime.now(dt.timezone.utc), 0)
    doc["environment"].update({"tensorflow": tf, "keras": keras, "keras_package": "keras"})
    return dataclasses.replace(compare.column(doc, Path(f"{label}.json")), key=label)


def changes(old: dict[str, Any], new: dict[str, Any], **rules: Any) -> list[compare.Change]:
    a, b = column("A", "2.15.1", "2.15.0", old), column("B", "2.21.0", "3.15.1", new)
    return [
        compare.settle(c, a, b, compare.Rules(**rules)) for c in compare.judge(old["id"], a, b, compare.Rules(**rules))
    ]


def test_an_outcome_that_gets_worse_is_a_regression_and_one_that_heals_improved() -> None:
    (broke,) = changes(scenario("x"), scenario("x", "failed"))
    assert (broke.kind, broke.worse, broke.state, broke.message) == ("outcome", True, "regression", "passed → failed")
    (healed,) = changes(scenario("x", "failed"), scenario("x"))
    assert (healed.kind, healed.worse, healed.state) == ("outcome", False, "improved")


def test_a_slowdown_carries_its_ratio_and_counts_only_beyond_the_limit() -> None:
    (slow,) = changes(scenario("x"), scenario("x", epoch_ms=30.0))
    assert (
        slow.kind == "slowdown" and slow.factor is not None and round(slow.factor) == 30 and slow.state == "regression"
    )
    assert changes(scenario("x"), scenario("x", epoch_ms=2.0)) == []  # ×2 is inside the ×3 default
    (allowed,) = changes(scenario("x"), scenario("x", epoch_ms=30.0), fail_on=("outcome",))
    assert allowed.state == "moved"  # real, of a kind that does not count here


def test_drift_within_the_floor_is_inconclusive_and_above_it_moved() -> None:
    curve = [28.5, 7.0, 2.0, 0.5, 0.1]
    moved = [28.5, 7.0, 2.2, 0.5, 0.1]  # 10 % at epoch 3
    (within,) = changes(scenario("x", losses=curve, floor=0.05), scenario("x", losses=moved, floor=0.05))
    assert (within.kind, within.within_noise, within.state) == ("drift", True, "inconclusive")  # limit ×10 = 50 %
    (above,) = changes(scenario("x", losses=curve, floor=1e-7), scenario("x", losses=moved, floor=1e-7))
    assert (above.kind, above.worse, above.within_noise, above.state) == ("drift", True, False, "moved")
