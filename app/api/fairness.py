"""Per-tenant caps on what a request holds while it waits on its client.

An open event stream and an upload whose body is still arriving each hold a connection, a
task and memory for as long as the client likes. A tenant may hold at most
``max_open_streams_per_tenant`` of the first and ``max_uploads_per_tenant`` of the second
at once in one HTTP process; one more is answered 429 ``tenant_limit`` (with
``Retry-After``) before anything is read, so one tenant's streams and slow uploads never
crowd out another tenant's requests. Nothing here touches the database.

Example::

    async with tenant_slots(request).hold(tenant_id, "uploads"):
        form = await read_multipart(request, settings)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.api.units import UnitThreads
from app.config import Settings
from app.errors import TenantLimitReached

Kind = Literal["open_streams", "uploads"]

_WORDS = {"open_streams": "event streams open", "uploads": "uploads in progress"}


class TenantSlots:
    """Counts of what each tenant holds, per kind, in this process (the event loop's thread).

    >>> import asyncio
    >>> slots = TenantSlots({"open_streams": 1, "uploads": 1})
    >>> async def twice():
    ...     async with slots.hold("t", "uploads"):
    ...         try:
    ...             async with slots.hold("t", "uploads"):
    ...                 pass
    ...         except TenantLimitReached as exc:
    ...             return exc.code, slots.held("t", "uploads")
    >>> asyncio.run(twice()), slots.held("t", "uploads")
    (('tenant_limit', 1), 0)
    """

    def __init__(self, maximum: dict[str, int]) -> None:
        self.maximum = maximum
        self._held: dict[str, Counter[str]] = {kind: Counter() for kind in maximum}

    @classmethod
    def from_settings(cls, settings: Settings) -> TenantSlots:
        return cls({"open_streams": settings.max_open_streams_per_tenant,
                    "uploads": settings.max_uploads_per_tenant})

    def held(self, tenant_id: str, kind: Kind) -> int:
        return self._held[kind][tenant_id]

    def acquire(self, tenant_id: str, kind: Kind) -> None:
        held, maximum = self._held[kind][tenant_id], self.maximum[kind]
        if held >= maximum:
            raise TenantLimitReached(
                f"At most {maximum} {_WORDS[kind]} per tenant at once. Received: one more while "
                f"{held} are held; retry when one ends.", limit=kind, maximum=maximum,
            )
        self._held[kind][tenant_id] = held + 1

    def release(self, tenant_id: str, kind: Kind) -> None:
        counts = self._held[kind]
        counts[tenant_id] -= 1
        if counts[tenant_id] <= 0:
            del counts[tenant_id]

    @asynccontextmanager
    async def hold(self, tenant_id: str, kind: Kind) -> AsyncIterator[None]:
        self.acquire(tenant_id, kind)
        try:
            yield
        finally:
            self.release(tenant_id, kind)


def stream_threads(request: Request) -> UnitThreads:
    """The threads event streams poll the database in: half the request work threads (at
    least one), apart from them, so that however many streams are open their polls queue
    among themselves and never ahead of other requests."""
    state = request.app.state
    threads = getattr(state, "stream_threads", None)
    if threads is None:
        threads = state.stream_threads = UnitThreads(max(1, state.settings.http_work_threads // 2),
                                                     name="convlens-stream")
    return threads


def tenant_slots(request: Request) -> TenantSlots:
    """The application's slots (created from its settings at first use)."""
    state = request.app.state
    slots = getattr(state, "tenant_slots", None)
    if slots is None:
        slots = state.tenant_slots = TenantSlots.from_settings(state.settings)
    return slots


class HeldStreamingResponse(StreamingResponse):
    """A streamed response that holds one of its tenant's slots from its creation (429 when
    none is free) until it has ended, however it ends (finished, failed, client gone)."""

    def __init__(self, slots: TenantSlots, tenant_id: str, kind: Kind, *args: Any, **kwargs: Any) -> None:
        slots.acquire(tenant_id, kind)
        self._release = (slots, tenant_id, kind)
        super().__init__(*args, **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slots, tenant_id, kind = self._release
        try:
            await super().__call__(scope, receive, send)
        finally:
            slots.release(tenant_id, kind)
