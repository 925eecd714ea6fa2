"""Collection and running: ScenarioFile (one YAML file) and ScenarioItem (one scenario = one test)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import pytest

from .choices import ConditionKind, FitInput
from .errors import ChildError, IsolatedFailure, Problem, ScenarioError, ScenarioFailed
from .options import SCENARIOS_KEY
from .text import one_line, printable, unprintable_in, without_native_chatter

if TYPE_CHECKING:  # the modules behind these load numpy, pydantic, yaml: only once a scenario file is collected
    from . import expect, isolation
    from .cluster import Cluster
    from .conditions import VersionCondition
    from .evaluate import Evaluation
    from .isolation import Trainer
    from .record import Declared, Runtime, ScenarioRecord, SeedRun
    from .scenario import Scenario

RECORD_KEY: pytest.StashKey[ScenarioRecord] = pytest.StashKey()
XFAIL_KEY = pytest.StashKey[str]()  # the reason, when an xfail condition applies to this run
DECLARED_KEY: pytest.StashKey[Declared] = pytest.StashKey()  # the skip/xfail condition that applies to this run
TRAINER_KEY: pytest.StashKey[Trainer] = pytest.StashKey()  # --convergence-isolate: this process's training child
CLUSTER_KEY: pytest.StashKey[Cluster] = pytest.StashKey()  # --convergence-ray: the controller's connection
SUBMITTED_KEY: pytest.StashKey[Any] = pytest.StashKey()  # --convergence-ray: the item's task (an ObjectRef)
TRAINED_KEY: pytest.StashKey[tuple[dict[str, str], Any]] = pytest.StashKey()  # its worker's versions and runtime
REPORT_ATTRIBUTE = "convergence_record"  # plain dict on the TestReport; xdist carries it to the controller


def collect_file(file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
    if not parent.config.stash[SCENARIOS_KEY].is_scenario_file(file_path):
        return None
    why = ""
    if unprintable_in(str(file_path)) is not None:
        # pytest prints a test's file in its own lines (progress, FAILED, ERROR collecting …), as it is: a name with a
        # newline in it would start a line of its own in a CI log ("::error …"). Such a file is not collected.
        why = "has a control character in its path (a newline, ESC, …); rename it"
    elif not file_path.resolve().is_relative_to(parent.config.rootpath.resolve()):
        why = f"resolves outside the rootdir {printable(parent.config.rootpath)} (a symlink?): scenarios live in it"
    if why:  # said without a node's id: pytest would print the folder's name as it is
        message = f"not collected: the scenario file {printable(file_path)} {why}"
        warnings.warn(pytest.PytestCollectionWarning(message), stacklevel=1)
        return None
    return ScenarioFile.from_parent(parent, path=file_path)


class ScenarioFile(pytest.File):
    """A YAML file of scenarios. Any problem in it is one collection error listing every problem."""

    def collect(self) -> Iterator[ScenarioItem]:
        from .scenario import load_file

        settings = self.config.stash[SCENARIOS_KEY]
        try:
            scenarios = load_file(self.path, display=self.nodeid, root=self.config.rootpath, limits=settings.limits)
            problems, versions = self._checked(scenarios)
            if problems:
                raise ScenarioError(problems)
        except ScenarioError as exc:
            raise self.CollectError(str(exc)) from None  # each problem is printable (Problem.__str__)
        for scenario in scenarios:
            if settings.min_seeds:
                scenario = scenario.with_seed_window(settings.min_seeds, settings.seed_from)
            scenario = scenario.with_run_defaults(settings.dtype_policy, settings.jit_compile)
            item = ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)
            item.apply_conditions(versions)
            yield item

    def _checked(self, scenarios: list[Scenario]) -> tuple[list[Problem], dict[str, str]]:
        """The problems with the Keras names the scenarios use, and the versions that would train them."""
        settings = self.config.stash[SCENARIOS_KEY]
        if not settings.isolate and not settings.ray:
            from . import keras as keras_side  # imports Keras: only once there are scenarios to check

            return [p for s in scenarios for p in keras_side.check(s, settings.factories)], keras_side.versions()
        from . import isolation  # the training child checks them: this process never imports Keras

        job = isolation.CheckJob(
            str(self.path), self.nodeid, str(self.config.rootpath), settings.factories, settings.limits.to_plain()
        )
        try:
            if settings.ray:  # a worker of the cluster checks it, in the environment that trains
                ray_side = cluster_of(self.config)
                return ray_side.check(job), ray_side.versions
            trainer = training_child(self.config)
            return trainer.check(job), trainer.versions
        except IsolatedFailure as exc:
            raise self.CollectError(f"{self.nodeid}: {exc}") from None
        except ChildError as exc:  # what in-process collection would raise, as text
            detail = f"\n\n{exc.trace}" if self.config.get_verbosity() > 0 else " (run with -v for the traceback)"
            message = f"{self.nodeid}: checking the file raised {exc.type_name}: {exc}{detail}"
            raise self.CollectError(printable(message, lines=True)) from None


class ScenarioItem(pytest.Item):
    """One scenario: trains it for each seed and judges the expectations."""

    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.add_marker("convergence")
        for mark in scenario.spec.marks:
            self.add_marker(mark)

    def apply_conditions(self, versions: dict[str, str]) -> None:
        """Turn the scenario's `skip:` / `xfail:` entries that match these versions into pytest marks.
        xfail is strict: a scenario that passes where it was declared to fail is a failure."""
        spec = self.scenario.spec
        kinds: tuple[tuple[ConditionKind, list[VersionCondition]], ...] = (
            ("skip", spec.skip),
            ("xfail", spec.xfail),
        )
        for kind, conditions in kinds:
            for condition in conditions:
                if condition.applies(versions, self.scenario.settings):
                    reason = f"{condition.reason} [{kind} where {condition.describe()}]".strip()
                    declared: Declared = {"kind": kind, "where": condition.describe(), "reason": condition.reason}
                    self.stash[DECLARED_KEY] = declared
                    if kind == "skip":
                        self.add_marker(pytest.mark.skip(reason=reason))
                    else:
                        self.stash[XFAIL_KEY] = reason
                        self.add_marker(pytest.mark.xfail(reason=reason, strict=True))

    @property
    def file_id(self) -> str:
        """The YAML file as pytest names it (relative to rootdir)."""
        return self.parent.nodeid if self.parent else str(self.path)

    @property
    def where(self) -> str:
        return f"{self.file_id}:{self.scenario.line}"

    @property
    def timeout_s(self) -> float | None:
        """The scenario's timeout_s under the run's (--convergence-timeout, a ceiling no scenario raises)."""
        ceiling, own = self.config.stash[SCENARIOS_KEY].timeout_s, self.scenario.spec.timeout_s
        if own is None or ceiling is None:
            return own if ceiling is None else ceiling
        return min(own, ceiling)

    @property
    def timeout_per_batch(self) -> bool:
        """A limit someone set is checked after every batch; the default one after every epoch (no batch hook,
        which costs Keras 3 a few per cent per batch)."""
        return self.scenario.spec.timeout_s is not None or not self.config.stash[SCENARIOS_KEY].timeout_default

    @property
    def fit_input(self) -> FitInput:
        """What the run asks for this scenario: auto, numpy or dataset (the path that trains is in its record)."""
        return self.scenario.fit_input(self.config.stash[SCENARIOS_KEY].fit_input)

    def runtest(self) -> None:
        from . import failure_text
        from .evaluate import evaluate

        settings = self.config.stash[SCENARIOS_KEY]
        if settings.ray:
            result = self._on_cluster()
        elif settings.isolate:
            result = self._in_child()
        else:
            result = evaluate(
                self.scenario,
                self.fit_input,
                timeout_s=self.timeout_s,
                per_batch=self.timeout_per_batch,
                noise_floor=settings.noise_floor,
            )
        self.stash[RECORD_KEY] = self._record(result)
        for note in self.stash[RECORD_KEY].get("unmet_settings", []):
            self.warn(pytest.PytestWarning(f"{self.file_id}::{self.scenario.name}: {note}"))
        if result.error is not None:
            raise result.error
        assert result.verdict is not None
        if settings.plots_dir is not None:
            self._plot(settings.plots_dir, result.runs, result.verdict)
        if not result.verdict.ok:
            message = failure_text.failure(
                self.scenario.name, self.where, result.verdict, result.runs, result.explanation
            )
            raise ScenarioFailed(message)

    def job(self) -> isolation.Job:
        """This scenario's training job as plain data: what a training child or a Ray worker runs."""
        from . import isolation

        settings = self.config.stash[SCENARIOS_KEY]
        return isolation.Job(
            file=str(self.path),
            display=self.file_id,
            root=str(self.config.rootpath),
            name=self.scenario.name,
            min_seeds=settings.min_seeds,
            seed_from=settings.seed_from,
            fit_input=self.fit_input,
            timeout_s=self.timeout_s,
            per_batch=self.timeout_per_batch,
            noise_floor=settings.noise_floor,
            dtype_policy=settings.dtype_policy,
            jit_compile=settings.jit_compile,
            limits=settings.limits.to_plain(),
            digest=self.scenario.digest,
        )

    def _in_child(self) -> Evaluation:
        """The same evaluation in this pytest process's training child (--convergence-isolate)."""
        from .evaluate import Evaluation

        job = self.job()
        trainer = training_child(self.config)
        try:
            result: Evaluation = Evaluation.from_plain(trainer.run(job), self.scenario, self.timeout_s)
        except Exception as exc:  # died, killed, or could not be reached: this scenario fails, the run goes on
            return Evaluation(error=exc, pid=trainer.pid, fit_input="" if self.fit_input == "auto" else self.fit_input)
        return result

    def _on_cluster(self) -> Evaluation:
        """The same evaluation on the Ray cluster (--convergence-ray): the task submitted before the run began."""
        from .evaluate import Evaluation

        ray_side = cluster_of(self.config)
        ref = self.stash.get(SUBMITTED_KEY, None)
        if ref is not None:
            del self.stash[SUBMITTED_KEY]  # used once: a rerun (pytest-rerunfailures) submits the scenario again
        try:
            if isinstance(ref, Exception):  # refused when it was submitted (no node can hold it)
                raise ref
            if ref is None:  # not submitted up front (a rerun): now
                ref = ray_side.submit(self.job(), task_of(self))
            out = ray_side.result(ref)
        except Exception as exc:  # died past Ray's retries, hung, or raised there: this scenario fails, the run goes on
            return Evaluation(error=exc, fit_input="" if self.fit_input == "auto" else self.fit_input)
        self.stash[TRAINED_KEY] = (out["versions"], {**out["runtime"], "ray_node": out.get("node", "")})
        return Evaluation.from_plain(out, self.scenario, self.timeout_s)

    def _environment(self) -> tuple[dict[str, str], Runtime]:
        """The versions and thread settings of the process that trains: the Ray worker's, the training child's, with
        isolation (reported when it started), else this one's."""
        if TRAINED_KEY in self.stash:
            versions, runtime = self.stash[TRAINED_KEY]
            return dict(versions), cast("Runtime", dict(runtime))
        if self.config.stash[SCENARIOS_KEY].ray:
            ray_side = cluster_of(self.config)
            return dict(ray_side.versions), cast("Runtime", dict(ray_side.runtime))
        if self.config.stash[SCENARIOS_KEY].isolate:
            trainer = training_child(self.config)
            return dict(trainer.versions), cast("Runtime", dict(trainer.runtime))
        from . import keras as keras_side

        return keras_side.versions(), keras_side.runtime_settings()

    def _plot(self, folder: Path, runs: list[SeedRun], verdict: expect.Verdict) -> None:
        from . import plots

        v, _ = self._environment()
        title = f"{self.scenario.name} — {'pass' if verdict.ok else 'FAIL'} · TF {v['tensorflow']} · Keras {v['keras']}"
        path = plots.path_for(folder, self.file_id, self.scenario.name)
        try:
            plots.loss_curves(path, title, runs, self.scenario.spec.expect)
        except Exception as exc:  # a picture that cannot be drawn must not change the test's outcome
            self.warn(pytest.PytestWarning(f"--convergence-plots: could not write {path}: {type(exc).__name__}: {exc}"))

    def _record(self, result: Evaluation) -> ScenarioRecord:
        from . import results

        kind = getattr(result.error, "type_name", type(result.error).__name__)  # a child's exception keeps its name
        error = None if result.error is None else f"{kind}: {result.error}"
        runs = [] if result.error is not None else result.runs
        versions, runtime = self._environment()
        record = results.scenario_record(
            self.nodeid, self.file_id, self.scenario.line, self.scenario.name, runs, result.verdict, versions, error
        )
        runtime["timeout_s"] = self.timeout_s
        runtime["fit_input_asked"] = self.fit_input
        runtime["isolate"] = self.config.stash[SCENARIOS_KEY].isolate
        runtime["noise_floor"] = self.config.stash[SCENARIOS_KEY].noise_floor
        runtime["dtype_policy"] = self.scenario.settings["dtype_policy"]
        runtime["jit_compile"] = self.scenario.settings["jit_compile"]
        record["runtime"] = runtime
        result.into_record(record)  # what the evaluation measured: its runtime keys, timing, fidelity, diagnosis
        from .evaluate import unmet_settings

        unmet = unmet_settings(self.scenario, runs)
        if unmet:
            record["unmet_settings"] = unmet
        return record

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """What pytest shows for a failed scenario; text made printable (text.printable) on the way out."""
        shown = self._failure(excinfo, style)
        return printable(shown, lines=True) if isinstance(shown, str) else shown

    def _failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any) -> Any:
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        kind = getattr(excinfo.value, "type_name", None)
        trace = getattr(excinfo.value, "trace", None)  # an exception raised in the training child, as text
        if isinstance(excinfo.value, IsolatedFailure):  # the child died or hung: no traceback of ours to show
            return f"{self.where}: scenario {self.scenario.name!r}: {excinfo.value}"
        # The training itself raised: say so first, in one line; the traceback is for -v.
        summary = (
            f"{self.where}: scenario {self.scenario.name!r}: training raised "
            f"{kind or excinfo.typename}: {one_line(excinfo.value, 500)}"
        )
        if self.config.get_verbosity() > 0:
            return f"{summary}\n\n{trace or super().repr_failure(excinfo, style=style)}"
        return f"{summary}\n(run with -v for the traceback)"

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.scenario.line - 1, f"{self.scenario.name} ({self.where})"


def cluster_of(config: pytest.Config) -> Cluster:
    """This pytest process's Ray connection (--convergence-ray), made on first use (collection)."""
    if CLUSTER_KEY not in config.stash:
        from .cluster import Cluster, uv_env

        settings = config.stash[SCENARIOS_KEY]
        cluster = Cluster(settings.ray or "local", uv_env(settings.ray_pip))
        config.stash[CLUSTER_KEY] = cluster
        config.add_cleanup(cluster.close)
    return config.stash[CLUSTER_KEY]


def task_of(item: ScenarioItem) -> Any:
    """How the item's task is placed on the cluster: the CPUs and GPUs its scenario asks for."""
    from .cluster import Task

    resources = item.scenario.spec.resources
    return Task(cpus=resources.cpus, gpus=resources.gpus)


def submit_all(session: pytest.Session) -> None:
    """--convergence-ray: every scenario that will train, sent before the first test runs (the cluster works on all of
    them while pytest reports them one by one)."""
    config = session.config
    if config.stash[SCENARIOS_KEY].ray is None or config.option.collectonly:
        return
    if session.testsfailed and not config.option.continue_on_collection_errors:
        return  # pytest stops for the collection errors: nothing runs
    from .errors import Unplaceable

    for item in session.items:
        if isinstance(item, ScenarioItem) and item.get_closest_marker("skip") is None:
            try:
                item.stash[SUBMITTED_KEY] = cluster_of(config).submit(item.job(), task_of(item))
            except Unplaceable as exc:  # its test fails with this; the others run
                item.stash[SUBMITTED_KEY] = exc


def training_child(config: pytest.Config) -> Trainer:
    """This pytest process's training child (--convergence-isolate), made on first use (collection)."""
    if TRAINER_KEY not in config.stash:
        from . import isolation

        settings = config.stash[SCENARIOS_KEY]
        trainer = isolation.Trainer(settings.isolate, address_space_mib=settings.limits.memory_mib)
        config.stash[TRAINER_KEY] = trainer
        config.add_cleanup(trainer.close)
    return config.stash[TRAINER_KEY]


def attach_record(item: pytest.Item, call: pytest.CallInfo[None], test_report: pytest.TestReport) -> None:
    """Put the scenario's record on its report (call phase), or a bare one if it never ran."""
    if not isinstance(item, ScenarioItem):
        return
    test_report.sections = _without_chatter(test_report.sections)
    if call.when == "call" and RECORD_KEY in item.stash:
        record = item.stash[RECORD_KEY].copy()
        if XFAIL_KEY in item.stash:
            record["outcome"] = "xpassed" if record["outcome"] == "passed" else "xfailed"
            record["xfail_reason"] = item.stash[XFAIL_KEY]
        if DECLARED_KEY in item.stash:
            record["declared"] = item.stash[DECLARED_KEY]
        setattr(test_report, REPORT_ATTRIBUTE, record)
    elif call.when == "setup" and test_report.outcome != "passed":
        from . import results

        outcome: Literal["skipped", "error"] = "skipped" if test_report.skipped else "error"
        reason = test_report.longrepr[2] if isinstance(test_report.longrepr, tuple) else str(test_report.longrepr)
        record = results.bare_record(item.nodeid, outcome, reason)
        if DECLARED_KEY in item.stash and test_report.skipped:
            record["declared"] = item.stash[DECLARED_KEY]
        setattr(test_report, REPORT_ATTRIBUTE, record)


def _without_chatter(sections: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Captured stderr without TensorFlow's chatter (e.g. tf_keras's `use_unbounded_threadpool` notice at each first
    fit); a section left empty goes."""
    kept = []
    for title, content in sections:
        if "stderr" in title:
            content = without_native_chatter(content)
        if content.strip():
            kept.append((title, content))
    return kept
