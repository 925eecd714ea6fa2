"""The pytest side of the results record: gathers records from test reports, writes the file(s), and
compares the run with a stored baseline.

Registered on the controller only (never on an xdist worker), so files are written once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from . import compare, comparison_text, results
from .accepted import read as read_accepted
from .collect import REPORT_ATTRIBUTE
from .errors import CompareInputError, JournalBusy, ScenarioError
from .options import BASELINE_FILE, Settings, is_yaml
from .record import CollectionError, Document, ScenarioRecord
from .scenario import load_file


def _is_scenario(nodeid: str) -> bool:
    file, sep, _ = nodeid.partition("::")
    return bool(sep) and is_yaml(file)


class ResultsWriter:
    def __init__(self, settings: Settings, rootpath: Path) -> None:
        self.settings = settings
        self.rootpath = rootpath
        self.started = dt.datetime.now(dt.timezone.utc)
        self.records: dict[str, ScenarioRecord] = {}
        self.collection_errors: list[CollectionError] = []
        self.summary: list[str] = []
        self.journal: results.Journal | None = None
        target = settings.json_path or (settings.record_dir / BASELINE_FILE if settings.record_dir else None)
        if target is not None:
            try:
                self.journal = results.Journal(target, self.started, settings.limits.results_bytes)
            except JournalBusy as exc:
                raise pytest.UsageError(str(exc)) from None
            if self.journal.recovered:
                saved, count = self.journal.recovered
                self.summary.append(
                    f"an earlier run writing {target} died before it finished: the {count} result(s) it had were "
                    f"saved to {saved}"
                )
            if self.journal.kept:
                self.summary.append(
                    f"the journal {self.journal.path.name} of an earlier run could not be read in full (kept as it was "
                    f"in {self.journal.kept}):"
                )
                self.summary.extend(f"  {problem}" for problem in self.journal.problems)

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        if self.journal and _is_scenario(nodeid):  # a run that dies now leaves this scenario as one it never finished
            self.journal.append({"start": nodeid}, sync=False)

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        if self.journal and _is_scenario(nodeid) and nodeid not in self.records:  # ended without a record to keep
            self.journal.append({"finish": nodeid}, sync=False)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, REPORT_ATTRIBUTE, None)
        if record is None and report.failed and _is_scenario(report.nodeid) and report.nodeid not in self.records:
            # no record travelled with it: e.g. xdist's report of a worker that died running it
            record = results.bare_record(report.nodeid, "error", str(report.longrepr))
        if record is not None:
            self.records[report.nodeid] = record
            if self.journal:
                self.journal.append({"record": record})

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed and is_yaml(report.fspath):
            error = CollectionError(file=report.nodeid, message=str(report.longrepr))
            self.collection_errors.append(error)
            if self.journal:
                self.journal.append({"collection_error": error})

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        doc = results.document(list(self.records.values()), self.collection_errors, self.started, int(exitstatus))
        # an interrupted run (Ctrl-C, -x, a crash of pytest itself) still writes what finished, marked so
        doc["complete"] = (
            exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED)
            and not session.shouldstop
            and not session.shouldfail
        )
        written = []
        if self.settings.json_path:
            results.write(self.settings.json_path, doc)
            written.append(str(self.settings.json_path))
        if self.settings.record_dir:
            results.write(self.settings.record_dir / BASELINE_FILE, doc)
            written.append(f"{self.settings.record_dir / BASELINE_FILE} (baseline)")
        if written:
            self.summary.append(f"results of {len(self.records)} scenario(s) written to {', '.join(written)}")
        if self.journal:
            self.journal.close()
        if self.settings.baseline_dir and self._against_baseline(doc) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _against_baseline(self, doc: Document) -> bool:
        """Compare with the stored baseline; True when that finds regressions."""
        assert self.settings.baseline_dir is not None
        path = self.settings.baseline_dir / BASELINE_FILE
        if not path.is_file():
            self.summary.append(
                f"no baseline at {path} yet (first run?): record one with --convergence-record "
                f"{self.settings.baseline_dir} on the version you compare against"
            )
            return False
        try:
            baseline = compare.load([path], self.settings.limits.results_bytes)[0]
        except CompareInputError as exc:
            self.summary.append(f"cannot use the baseline: {exc}")
            return True
        current = compare.column(doc, Path("this run"))
        current = dataclasses.replace(current, label=f"{current.label} (this run)", key="B")
        # scenarios this run did not train (deselected, or no longer existing) are no change
        stale = [sid for sid in baseline.scenarios if sid not in current.scenarios and not self._exists(sid)]
        kept = {sid: r for sid, r in baseline.scenarios.items() if sid in current.scenarios}
        try:
            accepted = read_accepted(self.settings.accepted_path) if self.settings.accepted_path else None
        except ScenarioError as exc:  # checked when the run started; changed since
            self.summary.append(f"cannot use the accepted-changes file: {exc}")
            return True
        rules = compare.Rules(fail_on=self.settings.fail_on, accepted=accepted)
        result = compare.compare([dataclasses.replace(baseline, scenarios=kept), current], baseline, rules)
        self.summary.append(f"compared with the baseline {path}:")
        self.summary.extend(comparison_text.render_text(result).splitlines())
        if stale:
            self.summary.append("stale baseline entries (these scenarios no longer exist; re-record the baseline):")
            self.summary.extend(f"  {sid}" for sid in stale)
        return result.exit_code != 0

    def _exists(self, scenario_id: str) -> bool:
        file, _, name = scenario_id.partition("::")
        path = self.rootpath / file
        if not path.resolve().is_relative_to(self.rootpath.resolve()) or not path.is_file():
            return False  # an id naming a file outside the project (an absolute path, ../) names no scenario of it
        try:
            return any(s.name == name for s in load_file(path, root=self.rootpath, limits=self.settings.limits))
        except ScenarioError:
            return True  # the file exists but has errors: not stale, its collection error says what is wrong

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.summary:
            terminalreporter.section("convergence")
            for line in self.summary:
                terminalreporter.write_line(line)
