"""Scenarios on a Ray cluster (`--convergence-ray ADDRESS|auto|local`, the `ray` extra): each scenario's training
job — the plain-data job the isolation child runs — is a Ray task, retried by Ray when the node it ran on dies. The
pytest process stays the controller: every item's task is submitted before the first test runs, each test waits
for its own result and judges it as an isolated run's, so pytest's output, junit, the results file and the journal
work as always. Checking a file's Keras names at collection runs on the cluster too: the controller never imports
TensorFlow, so its environment need not be the one that trains (`runtime_env`, the version matrix).

Ray is imported only here, and only when the option is given."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ChildError, Problem, TrainingProcessDied, TrainingProcessKilled, Unplaceable
from .isolation import EPOCH_GRACE, HARD_LIMIT_GRACE_S, CheckJob, Job, check_file, run_job
from .keras import THREADS_ENV
from .text import one_line

FORWARDED = ("TF_USE_LEGACY_KERAS", "PYTHONHASHSEED", "TF_CPP_MIN_LOG_LEVEL")  # the controller's, to every task


@dataclass(frozen=True)
class Task:
    """How a scenario's task is placed: the CPUs and GPUs it holds, and how often Ray retries it after its node or
    worker died (not after the scenario failed: that is a verdict)."""

    cpus: float = 1.0
    gpus: float = 0.0
    max_retries: int = 3


@dataclass
class Cluster:
    """The controller's side: connected once per pytest process, shut down at its end (when it started Ray)."""

    address: str
    runtime_env: Mapping[str, Any] = field(default_factory=dict)
    _started_here: bool = False
    _pending: list[Any] = field(default_factory=list)  # submitted tasks whose outcome nobody has read yet
    versions: dict[str, str] = field(default_factory=dict)  # what trains on the cluster (from the first check)
    runtime: dict[str, Any] = field(default_factory=dict)

    def connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        if self.address == "local":
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            self._started_here = True
        else:
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)

    def close(self) -> None:
        """Tasks nobody will read (the run stopped early: -x, Ctrl-C) are cancelled; Ray started here is shut down."""
        import ray

        if not ray.is_initialized():
            return
        for ref in self._pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        self._pending.clear()
        if self._started_here:
            ray.shutdown()

    def _options(self, task: Task) -> dict[str, Any]:
        env = dict(self.runtime_env)
        forwarded = {k: os.environ[k] for k in FORWARDED if k in os.environ}  # what decides the Keras that trains
        env["env_vars"] = {**forwarded, **dict(env.get("env_vars") or {}), THREADS_ENV: str(max(1, int(task.cpus)))}
        return {
            "num_cpus": task.cpus,
            "num_gpus": task.gpus,
            "max_retries": task.max_retries,
            "retry_exceptions": False,
            "runtime_env": env,
        }

    def check(self, job: CheckJob, task: Task = Task()) -> list[Problem]:
        """The problems a worker finds in a scenario file (collection), as the isolation child's check."""
        import ray

        self.connect()
        ref = _check_remote().options(**self._options(task)).remote(dataclasses.asdict(job))
        found = _get(ray, ref, None, "checking the file")
        self.versions, self.runtime = found["versions"], found["runtime"]
        if "error" in found:
            raise ChildError.from_plain(found["error"])
        return [Problem(**p) for p in found["problems"]]

    def submit(self, job: Job, task: Task = Task()) -> Any:
        """Send one scenario's training job; the ObjectRef of its outcome. A task no node of the cluster can hold
        (more CPUs or GPUs than any node has) is refused here, with what the nodes have: Ray would wait for such a node
        for ever."""
        import ray

        self.connect()
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if not any(r.get("CPU", 0) >= task.cpus and r.get("GPU", 0) >= task.gpus for r in nodes):
            largest = max(((r.get("CPU", 0), r.get("GPU", 0)) for r in nodes), default=(0, 0))
            raise Unplaceable(
                f"no node of the Ray cluster has {task.cpus:g} CPU(s) and {task.gpus:g} GPU(s) for this scenario's "
                f"resources (the largest has {largest[0]:g} CPU(s), {largest[1]:g} GPU(s))"
            )
        ref = _train_remote().options(**self._options(task)).remote(dataclasses.asdict(job), _hard_limit(job))
        self._pending.append(ref)
        return ref

    def result(self, ref: Any) -> dict[str, Any]:
        """The outcome of a submitted job (`run_job`'s plain data, with where it trained); TrainingProcessDied when
        its worker died more often than Ray retries, TrainingProcessKilled when its training hung past the limit."""
        import ray

        try:
            out: dict[str, Any] = _get(ray, ref, None, "training")
        finally:
            with contextlib.suppress(ValueError):
                self._pending.remove(ref)
        if out.get("hung") is not None:
            raise TrainingProcessKilled(
                f"the time limit of {out['hung']:g} s was reached and training did not stop (a native hang?): its "
                f"Ray task gave up on it after {out['seconds']:.1f} s"
            )
        self.versions, self.runtime = out["versions"], out["runtime"]
        return out


def _get(ray: Any, ref: Any, timeout: float | None, doing: str) -> Any:
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.RayTaskError as exc:  # the task raised: the scenario's error, as the child's would be
        cause = getattr(exc, "cause", None)
        name = type(cause).__name__ if cause is not None else str(getattr(exc, "function_name", "task"))
        raise ChildError(name, str(cause) if cause is not None else str(exc), str(exc)) from None
    except ray.exceptions.RuntimeEnvSetupError as exc:
        raise TrainingProcessDied(
            f"Ray could not make the runtime environment for {doing}: {one_line(exc, 600)}"
        ) from None
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
        raise TrainingProcessDied(
            f"the Ray worker {doing} died and Ray's retries ran out ({type(exc).__name__}); the other scenarios go on"
        ) from None
    except ray.exceptions.RayError as exc:  # out of memory, a lost object, …: Ray says which
        raise TrainingProcessDied(f"Ray failed {doing}: {type(exc).__name__}: {one_line(exc, 400)}") from None


def _hard_limit(job: Job) -> float | None:
    if job.timeout_s is None:
        return None
    return job.timeout_s + (HARD_LIMIT_GRACE_S if job.per_batch else max(1.0, EPOCH_GRACE * job.timeout_s))


LIBRARIES = ("numpy", "protobuf", "ml_dtypes")  # besides TensorFlow and Keras, what a version's environment pins


def _where() -> dict[str, Any]:
    """What trains on this worker: TensorFlow, Keras and the libraries its environment installed (a runtime
    environment's numpy is not the controller's), and its thread settings."""
    from importlib import metadata

    from . import keras as keras_side

    versions = keras_side.versions()
    for name in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {"versions": versions, "runtime": dict(keras_side.runtime_settings())}


def check_task(job: dict[str, Any]) -> dict[str, Any]:
    """On a worker: the isolation child's check of one file, with what trains there."""
    return {**check_file(CheckJob(**job)), **_where()}


def train_task(job: dict[str, Any], hard_limit: float | None) -> dict[str, Any]:
    """On a worker: the isolation child's run of one scenario (its own time limit checked per batch), in a thread
    watched for `hard_limit` seconds: past it (a hang that per-batch checks cannot see), the task returns that it
    hung, so that the test fails with that and Ray does not retry it. The stuck thread stays in that worker process
    (Ray reuses it; a task cannot end its own worker without losing its result): a native hang that holds a lock
    TensorFlow needs can stall that worker's later tasks (without Ray, --convergence-isolate kills a hang)."""
    started = time.perf_counter()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["out"] = run_job(Job(**job))
        except BaseException as exc:  # handed to the task's own thread, which raises it to Ray
            box["error"] = exc

    worker = threading.Thread(target=work, name="convergence-training", daemon=True)
    worker.start()
    worker.join(hard_limit)
    if worker.is_alive():
        return {"hung": job["timeout_s"], "seconds": time.perf_counter() - started}
    if "error" in box:
        raise box["error"]
    return {**box["out"], **_where(), "node": _node()}


def _node() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


_REMOTES: dict[str, Any] = {}


def _check_remote() -> Any:
    if "check" not in _REMOTES:
        import ray

        _REMOTES["check"] = ray.remote(check_task)
    return _REMOTES["check"]


def _train_remote() -> Any:
    if "train" not in _REMOTES:
        import ray

        _REMOTES["train"] = ray.remote(train_task)
    return _REMOTES["train"]
