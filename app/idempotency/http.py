"""The HTTP side of ``Idempotency-Key``: the claim of a request, the one run, the replayed answer.

Example::

    claim = claim_for(request, tenant_id, settings, [body])
    result = await run_once(scope, claim, service.create_from, body, describe=describe, ...)
    if isinstance(result, Answer):
        return answer_response(result)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.responses import Response
from sqlalchemy.exc import IntegrityError

from app.api.deps import RequestScope
from app.api.responses import EncodedJSON
from app.api.uploads import MultipartForm
from app.config import Settings
from app.idempotency.service import HEADER, Answer, IdempotencyClaim, fingerprint, guarded, replay

#: The documented header of the POSTs that create work.
IdempotencyKeyHeader = Annotated[str | None, Header(
    alias=HEADER,
    description="Any 1-255 visible ASCII characters (a UUID): a retry with the same key and request "
    "answers the first answer (Idempotent-Replayed: true) and creates nothing. Kept 24 hours, per tenant.",
)]


def claim_for(request: Request, header: str | None, tenant_id: str, settings: Settings,
              parts: Iterable[bytes | str]) -> IdempotencyClaim | None:
    """The request's claim (None without an ``Idempotency-Key``), fingerprinted by its
    method, path and ``parts`` (the body, or a form's fields and file digest)."""
    if header is None:
        return None
    return IdempotencyClaim.parse(header, tenant_id=tenant_id, settings=settings,
                                  fingerprint=fingerprint(request.method, request.url.path, parts))


def body_parts(received: bytes | MultipartForm) -> list[bytes | str]:
    """What identifies a received body: its bytes, or a form's fields and its file's sha256."""
    if isinstance(received, bytes | bytearray):
        return [bytes(received)]
    parts: list[bytes | str] = []
    for name in sorted(received.fields):
        parts += [name, received.fields[name]]
    if received.file is not None:
        parts += ["file", received.file.sha256]
    return parts


async def run_once(scope: RequestScope, claim: IdempotencyClaim | None, fn: Callable[..., Any],
                   *args: Any, describe: Callable[[Any], Answer], **kwargs: Any) -> Any:
    """``scope.run(fn, ...)`` once per key: ``fn``'s result, or the :class:`Answer` stored
    by the first request with this key (also when a twin sent at once committed first)."""
    try:
        return await scope.run(guarded(fn, claim, describe), *args, **kwargs)
    except IntegrityError as exc:
        return await twin_answer(scope, claim, exc)


async def twin_answer(scope: RequestScope, claim: IdempotencyClaim | None, exc: IntegrityError) -> Answer:
    """The answer of the twin that committed first, after this request's insert of the same
    key failed with ``exc`` (raised again when the key is not the cause)."""
    answer = await scope.run(replay, claim) if claim is not None else None
    if answer is None:
        raise exc
    return answer


def answer_response(answer: Answer) -> Response:
    headers = {"Location": answer.location} if answer.location else {}
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return EncodedJSON(answer.body, status_code=answer.status_code, headers=headers)
