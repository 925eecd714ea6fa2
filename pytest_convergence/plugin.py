"""pytest hooks of pytest-convergence (the `pytest11` entry point). Each hook delegates to a module.

Loading this module must stay cheap: no TensorFlow or Keras import happens here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from . import collect, options


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "convergence: a YAML training scenario run by pytest-convergence")
    settings = options.resolve(config)
    config.stash[options.SCENARIOS_KEY] = settings
    options.steer_collection(config, settings)
    if settings.gathers_records and not hasattr(config, "workerinput"):
        from .writer import ResultsWriter

        config.pluginmanager.register(ResultsWriter(settings, config.rootpath), "convergence-results")


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[options.SCENARIOS_KEY]
    if not settings.scenario_paths:
        return []
    shown = ", ".join(os.path.relpath(p, config.rootpath) for p in settings.scenario_paths)
    lines = [f"convergence: scenarios from {shown}"]
    if settings.fit_input == "auto":
        lines.append(
            "convergence: fit input auto: fit's own batches — through the fast path where a sentinel shows it "
            "trains what fit on the numpy arrays trains (checked per scenario), else fit on the arrays"
        )
    else:
        lines.append(f"convergence: fit input {settings.fit_input} where a scenario does not set fit.input")
    if settings.json_path:
        lines.append(f"convergence: results record -> {settings.json_path}")
    return lines


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    return collect.collect_file(file_path, parent)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    collect.submit_all(session)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    test_report = yield
    collect.attach_record(item, call, test_report)
    return test_report
