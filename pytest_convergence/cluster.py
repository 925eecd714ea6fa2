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
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ChildError, Problem, TrainingProcessDied, TrainingProcessKilled, Unplaceable
from .isolation import EPOCH_GRACE, HARD_LIMIT_GRACE_S, CheckJob, Job, check_file, run_job
from .keras import THREADS_ENV

FORWARDED = ("TF_USE_LEGACY_KERAS", "PYTHONHASHSEED", "TF_CPP_MIN_LOG_LEVEL")  # the controller's, to every task


@contextlib.contextmanager
def driver(address: str, needed_by: str) -> Iterator[str]:
    """This process as a Ray driver for commands that start pytest controllers (matrix, gate, bisect): with `local`,
    Ray is started here and shut down at the end; the address the controllers join (the GCS's). InputError when Ray
    is not installed."""
    from .errors import InputError

    try:
        import ray
    except ImportError:
        raise InputError(f"{needed_by} needs Ray: pip install 'pytest-convergence[ray]'") from None
    temp = _init(ray, address, needed_by)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        _shutdown(ray, temp)


def _init(ray: Any, address: str, needed_by: str) -> str | None:
    """Connect this process to Ray; with `local`, a new Ray on this machine (never one already running here, which
    `ray.init()` would join) in a temporary folder of its own (under RAY_TMPDIR where set): the folder it returns, for
    `_shutdown` to remove. InputError, with what Ray said, when Ray cannot be started or joined."""
    from .errors import InputError

    temp = None
    try:
        if address != "local":
            ray.init(address=address, log_to_driver=False, configure_logging=False)
            return None
        # short: Ray's socket paths must stay under the 107 characters a socket's name may have
        temp = tempfile.mkdtemp(prefix="convergence-ray-", dir=os.environ.get("RAY_TMPDIR") or None)
        ray.init(address="local", _temp_dir=temp, include_dashboard=False, log_to_driver=False, configure_logging=False)
        return temp
    except Exception as exc:  # no cluster there, an address Ray cannot reach, a Ray that did not start
        with contextlib.suppress(Exception):
            _shutdown(ray, temp)
        doing = "start Ray here" if address == "local" else f"join the Ray cluster at {address}"
        raise InputError(f"{needed_by}: cannot {doing}: {ray_error_text(exc, 400)}") from None


def ray_error_text(exc: BaseException, limit: int = 600) -> str:
    """What Ray said, on one line, its end kept where it is long: Ray puts the cause (uv's own error, the refused
    connection) after its traceback."""
    said = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return said if len(said) <= limit else "…" + said[-limit:]


def _shutdown(ray: Any, temp: str | None) -> None:
    """Disconnect; a Ray started here goes with its folder, which holds its runtime environments (each a copy of the
    Python environment the nodes run in, gigabytes: Ray keeps them after shutdown)."""
    ray.shutdown()
    if temp is not None:
        shutil.rmtree(temp, ignore_errors=True)


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
    _temp: str | None = None  # the folder of a Ray started here (local), removed at its end
    _pending: list[Any] = field(default_factory=list)  # submitted tasks whose outcome nobody has read yet
    versions: dict[str, str] = field(default_factory=dict)  # what trains on the cluster (from the first check)
    runtime: dict[str, Any] = field(default_factory=dict)

    def connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        self._temp = _init(ray, self.address, "--convergence-ray")

    def close(self) -> None:
        """Tasks nobody will read (the run stopped early: -x, Ctrl-C) are cancelled; Ray started here is shut down."""
        import ray

        if not ray.is_initialized():
            return
        cancel(self._pending)
        self._pending.clear()
        if self._temp is not None:
            _shutdown(ray, self._temp)

    def _options(self, task: Task) -> dict[str, Any]:
        return {
            "num_cpus": task.cpus,
            "num_gpus": task.gpus,
            "max_retries": task.max_retries,
            "retry_exceptions": False,
            "runtime_env": _with_env_vars(self.runtime_env, max(1, int(task.cpus))),
        }

    def check(self, job: CheckJob, task: Task = Task()) -> list[Problem]:
        """The problems a worker finds in a scenario file (collection), as the isolation child's check."""
        import ray

        self.connect()
        ref = remote(check_task).options(**self._options(task)).remote(dataclasses.asdict(job))
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
        ref = remote(train_task).options(**self._options(task)).remote(dataclasses.asdict(job), _hard_limit(job))
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


CONTROLLER_ENV = {"PYTHONSAFEPATH": "1"}  # a controller's: the installed plugin, as on the workers, not a checkout's


def controller(address: str, requirements: Sequence[str]) -> list[str]:
    """How `matrix`, `gate --ray` and `bisect --ray` start a pytest controller: in this Python (which imports no
    TensorFlow), its scenarios trained on the cluster at `address` in a runtime environment with `requirements`.
    Run it with CONTROLLER_ENV; the caller adds its own options and targets."""
    pip = [arg for requirement in requirements for arg in ("--convergence-ray-pip", requirement)]
    return [sys.executable, "-m", "pytest", "--convergence-ray", address, *pip]


def uv_env(requirements: Sequence[str]) -> dict[str, Any]:
    """The Ray runtime environment that installs `requirements` with uv on the nodes (over the base environment's
    packages, which it inherits); {} for none. uv's own cache is kept (Ray's default is --no-cache): a second
    version's environment reuses the wheels."""
    if not requirements:
        return {}
    return {"uv": {"packages": list(requirements), "uv_pip_install_options": []}}


def _with_env_vars(runtime_env: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """The runtime environment with the controller's variables that decide the Keras that trains (FORWARDED) and the
    threads TensorFlow may use (THREADS_ENV)."""
    env = dict(runtime_env)
    forwarded = {k: os.environ[k] for k in FORWARDED if k in os.environ}
    env["env_vars"] = {**forwarded, **dict(env.get("env_vars") or {}), THREADS_ENV: str(threads)}
    return env


class TimingWorker:
    """The gate's timing worker of one side as a Ray actor (a `timeprobe.Timer` in that side's runtime environment),
    answering as `gate_timing.Worker` does. Made by `timing_workers`, which puts both sides on one node."""

    def __init__(self, side: Any, actor: Any) -> None:
        self.side = side  # the gate's Side (its role names it in messages)
        self._actor = actor
        self.node = ""

    def wait_ready(self, timeout_s: float = 3600.0) -> None:
        """Its runtime environment made (installed on that node the first time) and TensorFlow imported."""
        import ray

        from .errors import GateInputError

        try:
            ready = ray.get(self._actor.ready.remote(), timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise GateInputError(
                f"{self.side.role}: the Ray timing worker was not ready in {timeout_s:.0f} s"
            ) from None
        except ray.exceptions.RayError as exc:
            raise GateInputError(
                f"{self.side.role}: the Ray timing worker did not start: {ray_error_text(exc)}"
            ) from None
        self.node = str(ready["node"])

    def time(self, job: dict[str, Any], timeout_s: float = 600.0) -> list[float] | str:
        import ray

        try:
            answer: dict[str, Any] = ray.get(self._actor.time.remote(job), timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:  # a scenario whose fit hangs there: the actor goes, the rest is untimed
            with contextlib.suppress(Exception):
                ray.kill(self._actor)
            return f"the Ray timing worker answered nothing in {timeout_s:.0f} s"
        except ray.exceptions.RayError as exc:
            return f"the Ray timing worker is gone: {ray_error_text(exc, 300)}"
        if "seconds" in answer:
            return [float(x) for x in answer["seconds"]]
        return str(answer.get("error", answer))

    def close(self) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(self._actor)


class _TimingActor:
    def __init__(self) -> None:
        from .timeprobe import Timer

        self.timer = Timer()

    def ready(self) -> dict[str, Any]:
        return {"versions": self.timer.versions(), "node": _node()}

    def time(self, job: dict[str, Any]) -> dict[str, Any]:
        return self.timer.answer(job)


@contextlib.contextmanager
def timing_workers(sides: Sequence[tuple[Any, Sequence[str]]], wait_s: float) -> Iterator[list[TimingWorker]]:
    """A timing worker per (side, requirements), all on one node of the cluster: a placement group packed strictly
    onto one node, of one bundle per side that together hold every CPU of the largest node, so that none of this
    cluster's other work lands there while it times. The sides alternate (never train at once), so each may use
    all of the node's CPUs. Gone (actors killed, the group removed) at the end. GateInputError when no node was
    free within `wait_s` seconds, or Ray could not make the group."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from .errors import GateInputError

    cpus = max((n.get("Resources", {}).get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=0.0)
    if cpus <= 0:
        raise GateInputError("the Ray cluster has no node with a CPU to time on")
    share = cpus / len(sides)
    group = placement_group([{"CPU": share} for _ in sides], strategy="STRICT_PACK")
    workers: list[TimingWorker] = []
    try:
        try:
            ray.get(group.ready(), timeout=wait_s)
        except ray.exceptions.GetTimeoutError:
            raise GateInputError(
                f"no node of the Ray cluster had its {cpus:g} CPUs free for timing both sides on it within "
                f"{wait_s:.0f} s"
            ) from None
        except ray.exceptions.RayError as exc:
            raise GateInputError(f"Ray could not hold a node for the timing: {ray_error_text(exc)}") from None
        actor = ray.remote(_TimingActor)
        for index, (side, requirements) in enumerate(sides):
            handle = actor.options(
                num_cpus=share,
                max_restarts=0,
                runtime_env=_with_env_vars(uv_env(requirements), max(1, int(cpus))),
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index),
            ).remote()
            workers.append(TimingWorker(side, handle))
        yield workers
    finally:
        for worker in workers:
            worker.close()
        with contextlib.suppress(Exception):  # an error above is the one to tell
            remove_placement_group(group)


def _get(ray: Any, ref: Any, timeout: float | None, doing: str) -> Any:
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.RayTaskError as exc:  # the task raised: the scenario's error, as the child's would be
        cause = getattr(exc, "cause", None)
        name = type(cause).__name__ if cause is not None else str(getattr(exc, "function_name", "task"))
        raise ChildError(name, str(cause) if cause is not None else str(exc), str(exc)) from None
    except ray.exceptions.RuntimeEnvSetupError as exc:
        raise TrainingProcessDied(
            f"Ray could not make the runtime environment for {doing}: {ray_error_text(exc)}"
        ) from None
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
        raise TrainingProcessDied(
            f"the Ray worker {doing} died and Ray's retries ran out ({type(exc).__name__}); the other scenarios go on"
        ) from None
    except ray.exceptions.RayError as exc:  # out of memory, a lost object, …: Ray says which
        raise TrainingProcessDied(f"Ray failed {doing}: {ray_error_text(exc, 400)}") from None


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


_HUNG: list[str] = []  # this worker process holds a training thread that hung (a task gave up on it)


def _leave_if_hung() -> None:
    """A task that lands on a worker holding a hung training thread ends that worker process before it does anything:
    Ray takes that as a worker's death and retries the task on another worker (one of its retries), and the hung
    thread goes with its process. So a hang costs its own scenario, never a later one's."""
    if _HUNG:
        os._exit(70)


def check_task(job: dict[str, Any]) -> dict[str, Any]:
    """On a worker: the isolation child's check of one file, with what trains there."""
    _leave_if_hung()
    return {**check_file(CheckJob(**job)), **_where()}


def train_task(job: dict[str, Any], hard_limit: float | None) -> dict[str, Any]:
    """On a worker: the isolation child's run of one scenario (its own time limit checked per batch), in a thread
    watched for `hard_limit` seconds: past it (a hang that per-batch checks cannot see), the task returns that it
    hung, so that the test fails with that and Ray does not retry it. A task cannot end its own worker without
    losing its result, so the stuck thread stays in that process until the next task Ray sends there, which ends the
    process first (`_leave_if_hung`) and is retried elsewhere."""
    _leave_if_hung()
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
        _HUNG.append(job["name"])
        return {"hung": job["timeout_s"], "seconds": time.perf_counter() - started}
    if "error" in box:
        raise box["error"]
    return {**box["out"], **_where(), "node": _node()}


def _node() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


def cancel(refs: Iterable[Any]) -> None:
    """Cancel these tasks (their workers killed): work nobody will read."""
    import ray

    for ref in list(refs):
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)


_REMOTES: dict[str, Any] = {}


def remote(function: Callable[..., Any]) -> Any:
    """`function` as a Ray remote function, made once per process."""
    key = f"{function.__module__}.{function.__qualname__}"
    if key not in _REMOTES:
        import ray

        _REMOTES[key] = ray.remote(function)
    return _REMOTES[key]
