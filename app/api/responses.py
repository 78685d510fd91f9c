"""Response bodies encoded once, with orjson, exactly as FastAPI would encode the response models.

Routes return :class:`EncodedJSON` with a body their service already encoded (in the same
thread that did the work), so FastAPI neither validates a large report against its response
model nor serialises it again; the response model stays in the OpenAPI document. Datetimes
are UTC with ``Z``, as pydantic writes them; a report serialised once for the database
(:class:`app.db.EncodedDocument`) is embedded as those bytes.

Example::

    return EncodedJSON(dumps({"id": row.id, "created_at": row.created_at}), status_code=201)
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson
from fastapi.responses import Response

from app.db import EncodedDocument


class EncodedJSON(Response):
    """``application/json`` whose body is already bytes."""

    media_type = "application/json"


def dumps(value: Any) -> bytes:
    """JSON bytes of a response document (UTC datetimes as ``...Z``, fragments embedded).

    >>> from datetime import UTC, datetime
    >>> report = EncodedDocument.encode({"b": 1, "a": 2})
    >>> dumps({"at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "report": report})
    b'{"at":"2024-01-02T03:04:05Z","report":{"b":1,"a":2}}'
    >>> dumps({"n": 2**70, "report": report})
    b'{"n":1180591620717411303424,"report":{"b":1,"a":2}}'
    """
    try:
        return orjson.dumps(value, option=_OPTIONS, default=_embed)
    except orjson.JSONEncodeError:  # integers beyond 64 bits (a stored config may hold them)
        return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_PASSTHROUGH_SUBCLASS


def _embed(value: Any) -> Any:
    if isinstance(value, EncodedDocument):
        return orjson.Fragment(value.encoded)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        return orjson.loads(orjson.dumps(value, option=orjson.OPT_UTC_Z))
    if isinstance(value, float) and value != value:
        return None
    return value
