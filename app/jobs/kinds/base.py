"""What a job kind is, and the registry every part of the job system reads.

A kind is declared once, with everything the executors, the worker and the Celery app need
to know about it::

    register(JobKind(
        name="gradients",
        run=measure_gradients,            # (JobContext) -> result dict
        queue="training",                 # Celery queue (local workers take every queue)
        in_tensorflow=True,               # runs in a fresh TensorFlow child process
        time_limit_setting="gradient_time_limit_s",
        preload=("app.worker.gradients",),  # imported by the warm child before the job arrives
        settle=settle_parent_measurement,   # how its outcome reaches its parent
    ))

The handler gets a :class:`JobContext`: the job and its (gated) architecture as plain data,
the settings, and three calls back to the worker (``progress``, ``event``,
``should_stop``). It never touches the database: the worker process that holds the job is
the only writer of its row (heartbeat, progress, events and outcome).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from app.config import Settings

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.orm import Session

    from app.models import Job


@dataclass(frozen=True)
class JobSpec:
    """The parts of a job row a handler reads (JSON-safe: it crosses into the child process)."""

    id: str
    kind: str
    attempt: int
    name: str | None
    parent_id: str | None
    parameters: dict[str, Any]
    time_limit_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> JobSpec:
        return cls(**{key: raw[key] for key in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ArchitectureSpec:
    """The architecture a job runs on, after the worker's own gate."""

    id: str
    name: str | None
    format: str
    config: dict[str, Any]
    blob_path: str | None = None
    has_weights: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ArchitectureSpec:
        return cls(**{key: raw[key] for key in cls.__dataclass_fields__})

    @property
    def weights_file(self) -> Path | None:
        return Path(self.blob_path) if self.blob_path and self.has_weights else None


class Reporter(Protocol):
    """How a running handler talks to the worker that holds its job."""

    def progress(self, fraction: float, detail: dict[str, Any] | None = None) -> None: ...
    def event(self, kind: str, payload: dict[str, Any]) -> None: ...
    def should_stop(self) -> bool: ...


@dataclass
class JobContext:
    """Everything a handler gets. ``work_dir`` is the job's own folder (checkpoints), kept
    across attempts and deleted when the job ends."""

    job: JobSpec
    architecture: ArchitectureSpec
    settings: Settings
    reporter: Reporter
    work_dir: Path

    def progress(self, fraction: float, detail: dict[str, Any] | None = None) -> None:
        self.reporter.progress(fraction, detail)

    def event(self, kind: str, payload: dict[str, Any]) -> None:
        self.reporter.event(kind, payload)

    def should_stop(self) -> bool:
        return self.reporter.should_stop()


Handler = Callable[[JobContext], dict[str, Any]]
#: Called in the transaction that made a job terminal (worker, reconciler): its outcome
#: reaches whatever waits on it (an analysis waiting for its measurement).
Settle = Callable[["Session", "Job"], None]
#: Files a job owns beyond its work folder (an uploaded dataset), deleted when it ends.
OwnedFiles = Callable[[Settings, Mapping[str, Any]], list[Path]]
#: Peak memory of one run in bytes, from the static report's summary and the job parameters.
MemoryEstimate = Callable[[Mapping[str, Any], Mapping[str, Any]], int]


@dataclass(frozen=True)
class JobKind:
    name: str
    run: Handler
    queue: str
    in_tensorflow: bool
    time_limit_setting: str
    preload: tuple[str, ...] = ()
    settle: Settle | None = None
    owned_files: OwnedFiles | None = None
    memory_estimate: MemoryEstimate | None = None
    #: Whether the result carries the job's ``attempt_history`` (training runs show it).
    attempts_in_result: bool = False

    def time_limit_s(self, settings: Settings) -> float:
        return float(getattr(settings, self.time_limit_setting))


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Add a kind to the registry (each kind module calls this once at import)."""
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"Job kind {kind.name!r} is registered twice")
    Settings.model_fields[kind.time_limit_setting]  # noqa: B018 - a typo fails at import
    _KINDS[kind.name] = kind
    return kind


def settle_parent_measurement(session: Session, row: Job) -> None:
    """The ``settle`` of a measurement kind (gradients, effective field): its outcome, measured
    or failed, reaches the analysis it measures (:func:`app.jobs.repository.settle_measurement`)."""
    from app.jobs.repository import settle_measurement

    if row.parent_id:
        settle_measurement(session, row.parent_id)


def load_architecture_model(context: JobContext) -> Any:
    """The Keras model of the job's architecture, built through the worker's gate, with the
    uploaded file's weights when it had them, at the job's ``input_shape`` (TensorFlow child)."""
    from app.worker.loader import load_model

    architecture = context.architecture
    return load_model(architecture.config, architecture.weights_file, architecture.format,
                      input_shape=context.job.parameters.get("input_shape"))


def measure_model(context: JobContext, measure: Callable[[Any, Callable[[float], None]], dict[str, Any]],
                  *, loading: float, measuring: float) -> dict[str, Any]:
    """The steps of a measurement of the job's model: report ``loading`` while it loads
    (:func:`load_architecture_model`), ``measuring`` when it starts, 1.0 when done.
    ``measure(model, progress)`` does the work; ``progress(fraction)`` (0 to 1 of the
    measurement) reports ``measuring + (1 - measuring) * fraction``."""
    context.progress(loading, {"phase": "loading model"})
    model = load_architecture_model(context)
    context.progress(measuring, {"phase": "measuring"})

    def progress(fraction: float) -> None:
        context.progress(measuring + (1.0 - measuring) * fraction, {"phase": "measuring"})

    measured = measure(model, progress)
    context.progress(1.0, {"phase": "done"})
    return measured


def register_measurement(name: str, run: Handler, *, time_limit_setting: str, worker_module: str,
                         memory_estimate: MemoryEstimate) -> JobKind:
    """Register a TensorFlow measurement of an analysis's model: it runs on the training queue
    in a TensorFlow child and settles into its parent analysis."""
    return register(JobKind(
        name=name, run=run, queue="training", in_tensorflow=True, time_limit_setting=time_limit_setting,
        preload=("app.worker.loader", worker_module), settle=settle_parent_measurement,
        memory_estimate=memory_estimate,
    ))

