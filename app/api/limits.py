"""Request-body size limit, enforced while the body streams in (413 before it is all read)."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings


class BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Pure ASGI middleware: counts body bytes as they arrive.

    ``limit_for(scope)`` gives the limit for a request (uploads get a larger one than JSON).
    A declared ``Content-Length`` above the limit is refused before reading anything.
    """

    def __init__(self, app: ASGIApp, limit_for: Any) -> None:
        self.app = app
        self.limit_for = limit_for

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

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await _send_413(send, limit)
        except Exception as exc:  # a framework may wrap our exception
            if isinstance(exc.__cause__, BodyTooLarge) or isinstance(exc.__context__, BodyTooLarge):
                if not response_started:
                    await _send_413(send, limit)
                return
            raise


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "type": "https://convlens.dev/problems/payload_too_large",
            "title": "The request body is too large",
            "status": 413,
            "detail": f"The request body exceeds the limit of {limit} bytes.",
            "code": "payload_too_large",
            "limit_bytes": limit,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
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
