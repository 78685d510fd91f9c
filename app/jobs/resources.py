"""What a TensorFlow job may use, derived from the worker's machine, and the job-size check.

Three limits protect a worker host from a job that would not fit:

- ``check_job_resources`` refuses, with 422 ``resource_limit_exceeded``, a gradients or
  training job whose estimated peak memory (activations per sample times the batch, forward
  and backward, plus weights, gradients and optimizer slots) exceeds the budget of one
  TensorFlow job. The services call it when a job is requested (the budget the live workers
  declared), the worker again before it builds the model (its own budget).
- The TensorFlow process runs under ``RLIMIT_DATA`` set to that budget (measured: TensorFlow
  reserves far more address space than it uses, so ``RLIMIT_AS`` aborts it at start, while
  with ``RLIMIT_DATA`` an allocation past the limit is a clean ``ResourceExhaustedError``)
  and ``RLIMIT_CPU`` (CPU seconds of the job).
- At most ``tf_max_processes`` TensorFlow jobs run at once per host (:class:`TensorFlowSlots`).

Example::

    >>> from app.config import Settings
    >>> settings = Settings(tf_memory_bytes=24 * 2**30)
    >>> report = {"summary": {"activation_bytes": 62 * 10**9, "param_bytes": 4_000_000}}
    >>> check_job_resources("gradients", report, settings)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    app.errors.ResourceLimitExceeded: A gradients job for this model needs about ... GiB of memory, ...
    >>> check_job_resources("analysis", report, settings) is None
    True
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from app.config import Settings
from app.errors import ResourceLimitExceeded

#: What an idle TensorFlow process with Keras loaded takes (measured on CPU: about 0.5 GiB).
TENSORFLOW_BASELINE_BYTES = 768 * 2**20
#: Below this a TensorFlow process cannot even start (measured: 0.6 GiB aborts, 1 GiB works).
MIN_TENSORFLOW_DATA_BYTES = 1 * 2**30
#: Share of the machine's memory TensorFlow jobs may take together.
MEMORY_FRACTION = 0.8


def machine_memory_bytes() -> int:
    """Physical memory, or the cgroup's limit when it is lower (containers)."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < physical:
            return int(text)
    return int(physical)


def tensorflow_memory_budget(settings: Settings) -> int:
    """Bytes one TensorFlow job may use on this machine (``tf_memory_bytes`` or derived)."""
    if settings.tf_memory_bytes:
        return int(settings.tf_memory_bytes)
    return int(machine_memory_bytes() * MEMORY_FRACTION / settings.tf_max_processes)


def tensorflow_cpu_seconds(settings: Settings, time_limit_s: float) -> int:
    """CPU seconds one TensorFlow job may use: its wall-clock limit on every core."""
    if settings.tf_cpu_seconds:
        return int(settings.tf_cpu_seconds)
    return int(time_limit_s * (os.cpu_count() or 1)) + 60


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def _number(summary: Mapping[str, Any], key: str) -> int:
    value = summary.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def estimate_measurement_bytes(summary: Mapping[str, Any], parameters: Mapping[str, Any]) -> int:
    """A gradient measurement: every layer's output kept for the backward pass and its
    gradient (2 x batch x activations), weights, gradients and the ablation copy (3 x params)."""
    batch = int(parameters.get("batch_size") or 8)
    activations = _number(summary, "activation_bytes")
    weights = _number(summary, "param_bytes")
    return 2 * batch * activations + 3 * weights + TENSORFLOW_BASELINE_BYTES


def estimate_effective_field_bytes(summary: Mapping[str, Any], parameters: Mapping[str, Any]) -> int:
    """An effective-field measurement: every layer's output of a batch kept for the backward
    passes and one gradient of them at a time (2 x batch x activations), and the weights."""
    batch = int(parameters.get("batch_size") or 8)
    activations = _number(summary, "activation_bytes")
    weights = _number(summary, "param_bytes")
    return 2 * batch * activations + weights + TENSORFLOW_BASELINE_BYTES


OPTIMIZER_SLOTS = {"adam": 2, "rmsprop": 1, "sgd": 1}


def estimate_training_bytes(summary: Mapping[str, Any], parameters: Mapping[str, Any]) -> int:
    """A training step: 2 x batch x activations, weights and gradients, the optimizer's slots
    (twice: the overfit-one-batch check has its own optimizer), and the synthetic data pool."""
    batch = int(parameters.get("batch_size") or 32)
    activations = _number(summary, "activation_bytes")
    weights = _number(summary, "param_bytes")
    slots = OPTIMIZER_SLOTS.get(str(parameters.get("optimizer") or "adam").lower(), 2)
    pool = 128 * 2**20
    return 2 * batch * activations + (2 + 2 * slots) * weights + pool + TENSORFLOW_BASELINE_BYTES


def worker_budget(session: Any, settings: Settings, queue: str) -> int:
    """The largest per-job memory a live worker on ``queue`` declared, else this machine's."""
    from app.jobs import repository

    declared = repository.live_worker_memory(
        session, queue=queue, fresh_after=repository.utc_cutoff(settings.heartbeat_timeout_s)
    )
    return declared or tensorflow_memory_budget(settings)


def check_job_resources(
    kind: str,
    report: Mapping[str, Any],
    settings: Settings,
    parameters: Mapping[str, Any] | None = None,
    *,
    session: Any = None,
) -> int | None:
    """Refuse a job that would not fit in a TensorFlow job's memory (422); its estimate, or None.

    ``report`` is the static report of the model at the job's input shape. With a database
    ``session`` (the services) the budget is what the live workers declared; without (the
    worker itself) it is this machine's.
    """
    from app.jobs.kinds import get_kind

    job_kind = get_kind(kind)
    estimate: Callable[[Mapping[str, Any], Mapping[str, Any]], int] | None = job_kind.memory_estimate
    if estimate is None:
        return None
    summary = report.get("summary") if isinstance(report, Mapping) else None
    if not isinstance(summary, Mapping):
        return None
    parameters = parameters or {}
    needed = estimate(summary, parameters)
    budget = (
        worker_budget(session, settings, job_kind.queue)
        if session is not None
        else tensorflow_memory_budget(settings)
    )
    if needed > budget:
        raise ResourceLimitExceeded(
            f"A {kind} job for this model needs about {_gib(needed)} of memory, more than the "
            f"{_gib(budget)} one TensorFlow job may use on the workers. Received: "
            f"summary.activation_bytes={_number(summary, 'activation_bytes')} per sample, "
            f"summary.param_bytes={_number(summary, 'param_bytes')}, "
            f"batch_size={parameters.get('batch_size') or 'default'}",
            extra={"limit": "tf_memory_bytes", "value": needed, "budget": budget},
        )
    return needed


def limit_process(pid: int, *, memory_bytes: int | None = None, cpu_seconds: int | None = None) -> None:
    """Set ``RLIMIT_DATA`` / ``RLIMIT_CPU`` of a running process (Linux ``prlimit``).

    The CPU limit counts from the process's start: pass the seconds it has used plus the job's.
    """
    import resource

    if memory_bytes is not None:
        value = max(int(memory_bytes), MIN_TENSORFLOW_DATA_BYTES)
        resource.prlimit(pid, resource.RLIMIT_DATA, (value, value))
    if cpu_seconds is not None:
        # soft: SIGXCPU (the process dies, the worker reports why); hard a little later
        resource.prlimit(pid, resource.RLIMIT_CPU, (int(cpu_seconds), int(cpu_seconds) + 30))


def cpu_seconds_used(pid: int) -> float:
    """User + system CPU seconds of a live process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class TensorFlowSlots:
    """At most ``tf_max_processes`` TensorFlow jobs at once on one host: a lock file per slot
    under ``<data_dir>/run/tf-slots`` (``flock``: released by the kernel if the holder dies).

    Example::

        slot = TensorFlowSlots(settings).acquire(should_stop=lambda: False)
        try: ...
        finally: slot.close()
    """

    def __init__(self, settings: Settings) -> None:
        self.folder = settings.data_dir / "run" / "tf-slots"
        self.count = settings.tf_max_processes

    def try_acquire(self) -> IO[bytes] | None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for index in range(self.count):
            handle = (self.folder / f"slot-{index}.lock").open("ab")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            return handle
        return None

    def acquire(self, *, should_stop: Callable[[], bool], poll_s: float = 0.2) -> IO[bytes] | None:
        """A held slot (close it to release), or None when ``should_stop`` says to give up."""
        while True:
            handle = self.try_acquire()
            if handle is not None or should_stop():
                return handle
            time.sleep(poll_s)
