"""The pytest side of the results record: gathers records from test reports and writes the file.

Registered on the controller only (never on an xdist worker), so the file is written once.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from . import results
from .collect import REPORT_ATTRIBUTE


class ResultsWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = dt.datetime.now(dt.timezone.utc)
        self.records: dict[str, dict[str, Any]] = {}
        self.collection_errors: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, REPORT_ATTRIBUTE, None)
        if record is not None:
            self.records[report.nodeid] = record

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed and str(report.fspath).endswith((".yaml", ".yml")):
            self.collection_errors.append({"file": report.nodeid, "message": str(report.longrepr)})

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        doc = results.document(list(self.records.values()), self.collection_errors, self.started, int(exitstatus))
        results.write(self.path, doc)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_line(f"convergence: results of {len(self.records)} scenario(s) written to {self.path}")
