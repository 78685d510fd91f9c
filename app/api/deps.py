"""FastAPI dependencies: settings, the request's database scope, the caller's tenant.

Every dependency here is ``async`` and cheap, so resolving them never leaves the event loop.
The database work of a route is one call, :meth:`RequestScope.run`: one thread hop that opens
a session, runs the service, commits, dispatches the jobs the service enqueued, and closes the
session. No connection is held while the body is received (the route reads it before calling
``run``) or while a response streams (the session is closed when ``run`` returns).

Example::

    @router.get("/{analysis_id}")
    async def get_analysis(analysis_id: str, scope: ScopeDep, tenant_id: TenantDep) -> Response:
        return EncodedJSON(await scope.run(service.read, tenant_id, analysis_id))
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Annotated, Any, Concatenate, NamedTuple, ParamSpec, Protocol, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.api.units import UnitThreads
from app.config import Settings
from app.db import Dispatch, session_scope
from app.errors import Unauthorized
from app.gcpause import no_cycle_collection
from app.models import DEFAULT_TENANT

P = ParamSpec("P")
T = TypeVar("T")


class Window(Protocol):
    """What :meth:`RequestScope.run_within` needs of a time window (see
    :class:`app.analyses.service.SyncWindow`): ``remaining()`` stays above zero until the
    window has opened, and ``give_up()`` says whether the request may stop waiting."""

    request: Any

    def remaining(self) -> float: ...
    def give_up(self) -> bool: ...
    def handed_over(self, failed: bool = False) -> None: ...


class RequestScope:
    """The database work of one request: each :meth:`run` is one unit of work in one thread."""

    def __init__(self, settings: Settings, dispatch: Dispatch | None,
                 units: UnitThreads | None = None, lane: anyio.Semaphore | None = None) -> None:
        self.settings = settings
        self.dispatch = dispatch
        self.units = units
        self.lane = lane

    def session(self) -> AbstractContextManager[Session]:
        """A unit of work for code already off the event loop (see :meth:`call`): commits,
        then dispatches what was enqueued."""
        return session_scope(self.settings, self.dispatch)

    def _unit(self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        # A unit of work is short and what it allocates dies with it: no cycle collections
        # over its objects (see app.gcpause), the commit and the session's close included.
        with no_cycle_collection(), session_scope(self.settings, self.dispatch) as session:
            return fn(session, *args, **kwargs)

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in one worker thread, for work that reads the database in a
        :meth:`session` of its own and then renders without holding it. Rendering can take
        seconds, so it does not count against the units of work's limit."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    async def run(self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(session, *args, **kwargs)`` in one worker thread; committed, then the jobs it
        enqueued are dispatched (a failed dispatch leaves them queued, never an error)."""
        unit = functools.partial(self._unit, fn, *args, **kwargs)
        if self.units is None:  # the process's default threads (anyio's), no limit of the app's
            return await anyio.to_thread.run_sync(unit)
        return await self.units.run(unit)

    async def run_within(self, window: Window, fn: Callable[..., T | None], *args: Any,
                         fallback: Callable[..., T], use_lane: bool = True, **kwargs: Any) -> T:
        """Like :meth:`run`, but stop waiting once ``window`` has expired after it opened.

        ``fn(session, *args, window=window, **kwargs)`` opens the window when its slow part
        starts. If the window expires first and ``window.give_up()`` wins, the answer is
        ``fallback(session, window, **kwargs)`` in a second unit of work (the slow case only), and the
        first thread, when it ends, leaves its result where the fallback said.

        The request waits on the thread with a timer only: a window that has not opened yet
        has all of its time left, so a wait of ``window.remaining()`` can end before the
        deadline but never after it (nothing wakes the event loop when the window opens).

        With a ``lane`` (the process's analyses at once, see ``Settings.analysis_lanes``) and
        ``use_lane``, the request first waits for a place in it here, on the event loop,
        holding no thread, and gives it back when it answers: with the thread's answer, or
        with the queued one once the window has expired. A late thread goes on outside the
        lane, so a slow analysis holds its place for one window at most.
        """
        lane = self.lane if use_lane else None
        if lane is not None:
            await lane.acquire()
        try:
            unit = functools.partial(self._unit, fn, *args, window=window, **kwargs)
            task = (self.units.submit(unit)[1] if self.units is not None
                    else asyncio.ensure_future(anyio.to_thread.run_sync(unit)))
            while not task.done():
                try:
                    await asyncio.wait({task}, timeout=window.remaining())
                except asyncio.CancelledError:
                    task.add_done_callback(_consume)  # the thread ends on its own
                    raise
                if task.done() or window.remaining() > 0:
                    continue
                if not window.give_up():  # the thread is storing its answer: it comes at once
                    break
                task.add_done_callback(_consume)
                try:
                    answer = await self.run(fallback, window, **kwargs)
                except BaseException:
                    window.handed_over(failed=True)
                    raise
                window.handed_over()
                return answer
            result = await task
        finally:
            if lane is not None:
                lane.release()
        assert result is not None
        return result


def _consume(task: asyncio.Future[Any]) -> None:
    """The abandoned thread's outcome is stored by the thread itself; nobody awaits it here."""
    if not task.cancelled():
        task.exception()


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_scope(request: Request) -> RequestScope:
    """The request's database scope (no session or connection until :meth:`RequestScope.run`)."""
    state = request.app.state
    units = getattr(state, "unit_threads", None)
    if units is None:
        units = state.unit_threads = UnitThreads(state.settings.http_work_threads)
    if not hasattr(state, "analysis_lane"):  # decided once per process: a lane only where it
        lanes = state.settings.analysis_lanes  # is narrower than the unit threads
        # (anyio's semaphore, like the threads, is bound to no event loop: tests run an app in several)
        state.analysis_lane = (anyio.Semaphore(lanes, fast_acquire=True)
                               if lanes < state.settings.http_work_threads else None)
    lane: anyio.Semaphore | None = state.analysis_lane
    return RequestScope(state.settings, getattr(state, "dispatch", None), units, lane)


async def get_tenant(request: Request) -> str:
    """The tenant id of the caller: ``default`` without auth, else from the Bearer API key.

    The key is looked up in a unit of work of its own, before the body is read: nothing is
    held while a slow client sends its body.
    """
    settings: Settings = request.app.state.settings
    cached = getattr(request.state, "tenant_id", None)
    if cached:
        return str(cached)
    if settings.auth_mode == "none":
        tenant_id = DEFAULT_TENANT
    else:
        from app.auth.service import tenant_for_key

        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
        found = await RequestScope(settings, None).run(tenant_for_key, token.strip())
        if found is None:
            raise Unauthorized("The API key is unknown or revoked.")
        tenant_id = found
    request.state.tenant_id = tenant_id
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        limiter.check(tenant_id)
    return tenant_id


class Caller(NamedTuple):
    """The settings, the request's database scope and the caller's tenant, resolved as one
    dependency (see :data:`CallerDep`)."""

    settings: Settings
    scope: RequestScope
    tenant_id: str


async def get_caller(request: Request) -> Caller:
    """What :data:`SettingsDep`, :data:`ScopeDep` and :data:`TenantDep` give, in that order."""
    return Caller(await get_settings(request), await get_scope(request), await get_tenant(request))


SettingsDep = Annotated[Settings, Depends(get_settings)]
ScopeDep = Annotated[RequestScope, Depends(get_scope)]
TenantDep = Annotated[str, Depends(get_tenant)]
#: The three above as one dependency, for the routes that take every request of a busy
#: service (``POST /v1/analyses``): FastAPI resolves each dependency at a cost of its own
#: per request (about a tenth of the HTTP side of an analysis for these three).
CallerDep = Annotated[Caller, Depends(get_caller)]
