"""Request and job ids carried in context variables, so every log line can name them.

Context variables follow ``await`` and are copied into threads started with
``anyio.to_thread`` / ``run_in_threadpool``, so a sync route or a service function
logs with the id of the request that called it.

Example::

    with bind_job_id(job.id):
        log.info("training step", extra={"step": 3})   # the JSON line carries job_id
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("convlens_request_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("convlens_job_id", default=None)

#: What a client may send as X-Request-ID; anything else is replaced by a generated id.
_ACCEPTED_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def current_request_id() -> str | None:
    """The id of the HTTP request being served in this context, if any."""
    return request_id_var.get()


def current_job_id() -> str | None:
    """The id of the job being run in this context, if any."""
    return job_id_var.get()


def accept_request_id(value: str | bytes | None) -> str:
    """The client's X-Request-ID when it is a short safe token, else a fresh one.

    >>> accept_request_id("abc-123")
    'abc-123'
    >>> len(accept_request_id("bad id with spaces"))
    32
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value and _ACCEPTED_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


@contextmanager
def bind_request_id(request_id: str) -> Iterator[str]:
    """Set the request id for the duration of the block."""
    token = request_id_var.set(request_id)
    try:
        yield request_id
    finally:
        request_id_var.reset(token)


@contextmanager
def bind_job_id(job_id: str) -> Iterator[str]:
    """Set the job id for the duration of the block (worker code wraps each job run in it).

    Example::

        with bind_job_id(job_id):
            run(job_id)
    """
    token = job_id_var.set(str(job_id))
    try:
        yield str(job_id)
    finally:
        job_id_var.reset(token)
