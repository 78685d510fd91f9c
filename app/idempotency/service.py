"""``Idempotency-Key`` on the POSTs that create work (analyses, uploads, gradients, training runs).

The first answer is stored in the same transaction as the work it created, so there is never
a job without its key nor a key without its job. A retry with the same key and the same
request answers the stored status, body and ``Location`` (with ``Idempotent-Replayed: true``)
and creates nothing. Two copies of one request sent at once: the second's insert of the key
waits on the first's uncommitted row (PostgreSQL's unique index, SQLite's single writer),
fails when the first commits, its whole transaction (job included) rolls back, and it
answers the first's stored answer.

The same key with another request (method, route or body) is a 422
``idempotency_key_reused``. Keys belong to a tenant and expire after
``idempotency_key_ttl_s`` (24 hours by default); an expired key counts as new.

Example::

    key = IdempotencyClaim.from_request(request, tenant_id, settings, fingerprint_of(body))
    body = await scope.run(guarded(service.measure_gradients, key, describe), ...)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import BadRequest, IdempotencyKeyReused
from app.idempotency import repository
from app.models import IdempotencyKey
from app.models.base import utcnow

HEADER = "Idempotency-Key"
#: 1 to 255 visible ASCII characters (a UUID is the usual choice).
_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def fingerprint(method: str, route: str, parts: Iterable[bytes | str]) -> str:
    """A digest of what makes two requests the same request.

    >>> fingerprint("POST", "/v1/x", [b"{}"]) == fingerprint("POST", "/v1/x", [b"{}"])
    True
    >>> fingerprint("POST", "/v1/x", [b"{}"]) == fingerprint("POST", "/v1/y", [b"{}"])
    False
    """
    digest = hashlib.sha256(f"{method}\n{route}\n".encode())
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class Answer:
    """A response as first sent: status, body, Location."""

    status_code: int
    body: bytes
    location: str | None
    replayed: bool = False


@dataclass(frozen=True)
class IdempotencyClaim:
    """The key a request carries, its tenant, and the request's fingerprint."""

    tenant_id: str
    key: str
    fingerprint: str
    ttl_s: float

    @staticmethod
    def parse(header: str | None, *, tenant_id: str, settings: Settings,
              fingerprint: str) -> IdempotencyClaim | None:
        """The claim of a request, or None without the header; a malformed key is a 400.

        >>> from app.config import Settings
        >>> IdempotencyClaim.parse(None, tenant_id="t", settings=Settings(), fingerprint="f") is None
        True
        >>> IdempotencyClaim.parse("k-1", tenant_id="t", settings=Settings(), fingerprint="f").key
        'k-1'
        """
        if header is None:
            return None
        if not _VALID_KEY.fullmatch(header):
            raise BadRequest(
                f"{HEADER} must be 1 to 255 visible ASCII characters (a UUID, for example). "
                f"Received: {header[:80]!r}", code="invalid_idempotency_key",
            )
        return IdempotencyClaim(tenant_id, header, fingerprint, settings.idempotency_key_ttl_s)

    def stored(self, session: Session) -> Answer | None:
        """The first answer to this key, if it is stored and not expired (an expired one is deleted)."""
        now = utcnow()
        row = repository.get(session, self.tenant_id, self.key)
        if row is None:
            return None
        if row.expires_at <= now:
            repository.delete_expired(session, now, tenant_id=self.tenant_id, key=self.key)
            return None
        if row.fingerprint != self.fingerprint:
            raise IdempotencyKeyReused(
                f"The {HEADER} {self.key[:80]!r} was sent with another request (another route or "
                f"body) within {self.ttl_s:.0f} s; send a new key for a new request.",
            )
        return Answer(row.status_code, row.body, row.location, replayed=True)

    def store(self, session: Session, answer: Answer) -> None:
        """Keep ``answer`` in the session's transaction (flushed: a concurrent twin fails here)."""
        now = utcnow()
        session.add(IdempotencyKey(
            tenant_id=self.tenant_id, key=self.key, fingerprint=self.fingerprint,
            status_code=answer.status_code, body=answer.body, location=answer.location,
            created_at=now, expires_at=now + timedelta(seconds=self.ttl_s),
        ))
        session.flush()


def guarded(fn: Callable[..., Any], claim: IdempotencyClaim | None,
            describe: Callable[[Any], Answer]) -> Callable[..., Any]:
    """``fn(session, ...)`` run at most once per key: a stored answer is returned instead of
    running it, and ``describe(result)`` is stored with the work ``fn`` did (``None``
    results, a request that handed its work over, store nothing)."""
    if claim is None:
        return fn

    def once(session: Session, *args: Any, **kwargs: Any) -> Any:
        stored = claim.stored(session)
        if stored is not None:
            return stored
        result = fn(session, *args, **kwargs)
        if result is not None:
            claim.store(session, describe(result))
        return result

    return once


def replay(session: Session, claim: IdempotencyClaim) -> Answer | None:
    """After a twin committed first: its answer (a unit of work of its own)."""
    return claim.stored(session)


def purge_expired(session: Session) -> int:
    """Delete every expired key (the reconciler's chores)."""
    return repository.delete_expired(session, utcnow())
