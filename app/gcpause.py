"""Pause Python's cycle collector around work that allocates many objects and no cycles.

A JSON body parsed and gated, an analysis and its report are tens of thousands of new dicts
and lists, none in a reference cycle, all freed by reference counting when the request ends.
With the collector running they start collections that traverse them and promote them
towards the old generation, whose full collections then traverse every long-lived object of
the serving process: about a third of a ResNet50 request's CPU in ``convlens serve``
(measured; ``bench/bench_http.py`` prints the service's CPU per request). The engine pauses
the collector the same way while it walks (``app.analysis.analyze``).

Threads share the one collector: a pause that overlaps another may end early (the collector
simply runs again), never late, and nested pauses cost nothing.

Example::

    >>> import gc
    >>> with no_cycle_collection():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """The block runs with the cycle collector off; it is on again afterwards if it was before."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def freeze_long_lived() -> None:
    """Exclude what exists now (modules, the application, its settings and caches) from every
    later cycle collection: a serving process calls this once, when it is ready to serve.

    Its full collections then traverse only what was created since, not the hundreds of
    thousands of objects the imports left (a full collection of a ``convlens serve`` HTTP
    process took about 0.3 s before; see ``gc.freeze``). Only for processes that live as long
    as their objects: what is frozen is never collected as a cycle.
    """
    gc.collect()
    gc.freeze()
