"""Request-body limits, enforced while the body streams in: its size (413 before it is all
read) and its pace (408 for a client that sends too slowly).

A body must arrive within ``body_read_grace_s`` plus one second per ``body_min_bytes_per_s``
received, with no pause longer than ``body_idle_timeout_s``: a client sending one byte every
five seconds is answered 408 ``body_timeout`` after the grace period and disconnected, so it
holds no worker, connection or upload slot for long. Once the body is complete, waiting for
the client (a disconnect during a streamed response) is not limited.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


class BodyPace:
    """The deadline of the next piece of a body.

    >>> pace = BodyPace(grace_s=10, min_bytes_per_s=100, idle_s=30, started=0.0)
    >>> pace.deadline(received=0, last=0.0), pace.deadline(received=5000, last=40.0)
    (10.0, 60.0)
    >>> pace.deadline(received=100_000, last=500.0)  # fast so far, but no pause over idle_s
    530.0
    """

    def __init__(self, grace_s: float, min_bytes_per_s: int, idle_s: float, started: float) -> None:
        self.grace_s, self.min_bytes_per_s, self.idle_s, self.started = grace_s, min_bytes_per_s, idle_s, started

    def deadline(self, received: int, last: float) -> float:
        return min(self.started + self.grace_s + received / self.min_bytes_per_s, last + self.idle_s)


class BodySizeLimitMiddleware:
    """Pure ASGI middleware: counts body bytes as they arrive.

    ``limit_for(scope)`` gives the limit for a request (uploads get a larger one than JSON).
    A declared ``Content-Length`` above the limit is refused before reading anything.
    """

    def __init__(self, app: ASGIApp, limit_for: Any, settings: Settings | None = None) -> None:
        self.app = app
        self.limit_for = limit_for
        settings = settings or Settings()
        self.grace_s = settings.body_read_grace_s
        self.min_bytes_per_s = settings.body_min_bytes_per_s
        self.idle_s = settings.body_idle_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit: int = self.limit_for(scope)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    await _send_413(send, limit)
                    return
            except ValueError:
                pass
        received = 0
        response_started = False
        body_done = False
        last = time.monotonic()
        pace = BodyPace(self.grace_s, self.min_bytes_per_s, self.idle_s, last)

        async def limited_receive() -> Message:
            nonlocal received, body_done, last
            if body_done:  # e.g. waiting for a disconnect while a response streams: no deadline
                return await receive()
            try:
                # asyncio's own timeout costs less than half of anyio.fail_after (this runs per receive)
                async with asyncio.timeout(max(0.0, pace.deadline(received, last) - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout() from None
            if message["type"] == "http.request":
                last = time.monotonic()
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
                body_done = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (BodyTooLarge, BodyTimeout) as exc:
            if not response_started:
                await _refuse(send, exc, limit, received)
        except Exception as exc:  # a framework may wrap our exception
            cause = exc.__cause__ if isinstance(exc.__cause__, BodyTooLarge | BodyTimeout) else exc.__context__
            if isinstance(cause, BodyTooLarge | BodyTimeout):
                if not response_started:
                    await _refuse(send, cause, limit, received)
                return
            raise


async def _refuse(send: Send, exc: Exception, limit: int, received: int) -> None:
    if isinstance(exc, BodyTooLarge):
        await _send_413(send, limit)
    else:
        await _send_problem(send, 408, {
            "type": "https://convlens.dev/problems/body_timeout",
            "title": "The request body arrived too slowly",
            "status": 408,
            "detail": f"The request body stalled or arrived too slowly ({received} bytes received); send "
                      "it at a steady pace, or retry on a better connection.",
            "code": "body_timeout",
            "received_bytes": received,
        })


async def _send_413(send: Send, limit: int) -> None:
    await _send_problem(send, 413, {
        "type": "https://convlens.dev/problems/payload_too_large",
        "title": "The request body is too large",
        "status": 413,
        "detail": f"The request body exceeds the limit of {limit} bytes.",
        "code": "payload_too_large",
        "limit_bytes": limit,
    })


async def _send_problem(send: Send, status: int, problem: dict[str, Any]) -> None:
    body = json.dumps(problem).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def body_limit_for(settings: Settings) -> Any:
    """The limit of a request: uploads (multipart, octet-stream) get ``max_upload_bytes``
    plus room for the form, everything else ``max_json_bytes``."""

    def limit(scope: dict[str, Any]) -> int:
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type in (b"multipart/form-data", b"application/octet-stream"):
            return settings.max_upload_bytes + 64 * 1024
        return settings.max_json_bytes

    return limit
