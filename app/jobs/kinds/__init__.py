"""The job-kind registry: one module per kind in this package, each calling ``register``.

Adding a kind is adding one module here: the handler, the executors, the Celery queues, the
TensorFlow child's preloads, time limits, resource checks and clean-up all read the registry.

Example::

    >>> from app.jobs.kinds import get_kind, kind_names
    >>> kind_names()
    ('analysis', 'effective_field', 'gradients', 'training')
    >>> get_kind("training").queue, get_kind("training").in_tensorflow
    ('training', True)
    >>> sorted(queues())
    ['analysis', 'training']
"""

from __future__ import annotations

import importlib
import pkgutil

from app.errors import DomainError
from app.jobs.kinds.base import (
    _KINDS,
    ArchitectureSpec,
    JobContext,
    JobKind,
    JobSpec,
    Reporter,
    register,
)


def _discover() -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")


def get_kind(name: str) -> JobKind:
    """The registered kind ``name``; a job row with an unknown kind is a domain error."""
    try:
        return _KINDS[name]
    except KeyError:
        raise DomainError(
            f"Unknown job kind. Received: {name!r} (known: {', '.join(sorted(_KINDS))})",
            code="unknown_job_kind",
        ) from None


def kind_names() -> tuple[str, ...]:
    return tuple(sorted(_KINDS))


def all_kinds() -> tuple[JobKind, ...]:
    return tuple(_KINDS[name] for name in kind_names())


def queues() -> tuple[str, ...]:
    """Every Celery queue some kind is sent to, in a stable order."""
    return tuple(sorted({kind.queue for kind in _KINDS.values()}))


def tensorflow_preloads() -> tuple[str, ...]:
    """Modules a warm TensorFlow child imports before its job arrives."""
    return tuple(
        dict.fromkeys(module for kind in all_kinds() if kind.in_tensorflow for module in kind.preload)
    )


_discover()

__all__ = [
    "ArchitectureSpec",
    "JobContext",
    "JobKind",
    "JobSpec",
    "Reporter",
    "all_kinds",
    "get_kind",
    "kind_names",
    "queues",
    "register",
    "tensorflow_preloads",
]
