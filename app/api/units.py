"""The threads an HTTP process runs its units of work in (see :class:`UnitThreads`)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class UnitThreads:
    """The threads an HTTP process runs its units of work in: ``size`` at most at once; the
    rest wait their turn in order, in a queue, holding no thread.

    A standard library thread pool, which hands a unit to its thread and its result back to
    the event loop in a third to a quarter of the CPU that ``anyio.to_thread`` with a
    capacity limiter takes (its cancel scope and limiter bookkeeping): 28 against 93 us per
    hop, 32 against 130 us with the sync window's wait (``python -m bench.bench_hops``, one
    run; 2.7x in a busier one). Context variables (the request id the logs carry) are copied
    into the unit's thread, as anyio copies them.
    """

    def __init__(self, size: int, *, name: str = "convlens-unit") -> None:
        self.size = size
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix=name)

    def submit(self, fn: Callable[[], T]) -> tuple[Future[T], asyncio.Future[T]]:
        """Start ``fn()`` in a unit thread: its work item and the event loop's future of it."""
        work = self._pool.submit(contextvars.copy_context().run, fn)
        return work, asyncio.wrap_future(work)

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a unit thread, awaited. A caller cancelled while its unit waits for a
        thread drops it; once the unit runs, the caller waits for its end (its commit) before
        the cancellation goes on, as anyio's threads do."""
        work, future = self.submit(fn)
        try:
            return await future
        except asyncio.CancelledError:
            if not work.cancel():  # running or done: it runs to its end
                await _uncancelled(asyncio.wrap_future(work))
            raise

    def shutdown(self) -> None:
        """No new units; those running end in their threads (the interpreter waits for them)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


async def _uncancelled(future: asyncio.Future[Any]) -> None:
    """Wait for ``future`` to be done, whatever cancellations come meanwhile."""
    while not future.done():
        try:
            await asyncio.wait({future})
        except asyncio.CancelledError:
            continue


def shutdown_threads(state: Any) -> None:
    """At an application's shutdown: its unit and stream threads take no new work (an app that
    starts again makes new ones)."""
    for attribute in ("unit_threads", "stream_threads"):
        threads = getattr(state, attribute, None)
        if threads is not None:
            delattr(state, attribute)
            threads.shutdown()
