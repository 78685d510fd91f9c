"""Strict JSON parsing with limits on size, nesting depth and numbers.

The nesting depth is measured by a linear scan before ``json.loads`` runs, so a body of
100,000 nested brackets is refused in milliseconds instead of exhausting the recursion of
the decoder. Numbers longer than ``max_json_number_digits`` characters, ``NaN`` and
``Infinity``, duplicate keys and bytes that are not UTF-8 are refused as well.

Example::

    >>> from app.config import Settings
    >>> parse_json_bytes(b'{"a": [1, 2.5]}', Settings())
    {'a': [1, 2.5]}
"""

from __future__ import annotations

import json
import re
from typing import Any

from app.config import Settings
from app.errors import InvalidJSON, PayloadTooLarge

# A JSON string (closing quote optional so that the scan stays linear on broken input).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class _JSONLimit(ValueError):
    """Raised from inside the decoder hooks; turned into InvalidJSON by the caller."""


def json_depth(data: bytes) -> int:
    """Deepest bracket nesting of ``data``, ignoring brackets inside strings.

    Linear in ``len(data)``; never recurses.

    >>> json_depth(b'{"a": [[1], "]]]"]}')
    3
    """
    import numpy as np

    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int64)
    return int(np.cumsum(steps).max())


def parse_json_bytes(data: bytes, settings: Settings, *, what: str = "body") -> Any:
    """Parse ``data`` as strict JSON within the limits of ``settings``.

    Raises ``PayloadTooLarge`` (413) above ``max_json_bytes`` and ``InvalidJSON`` (422,
    code ``invalid_json`` or ``json_limit_exceeded``) for everything else.
    """
    if len(data) > settings.max_json_bytes:
        raise PayloadTooLarge(
            f"The JSON {what} is {len(data):,} bytes; the limit is {settings.max_json_bytes:,}."
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJSON(
            f"The JSON {what} is not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}."
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    depth = json_depth(data)
    if depth > settings.max_json_depth:
        raise InvalidJSON(
            f"The JSON {what} nests {depth} levels deep; the limit is {settings.max_json_depth}.",
            code="json_limit_exceeded",
        )
    max_digits = settings.max_json_number_digits

    def parse_int(token: str) -> int:
        if len(token) > max_digits:
            raise _JSONLimit(
                f"a number with {len(token):,} characters (limit {max_digits}): {token[:20]}..."
            )
        return int(token)

    def parse_float(token: str) -> float:
        if len(token) > max_digits:
            raise _JSONLimit(
                f"a number with {len(token):,} characters (limit {max_digits}): {token[:20]}..."
            )
        return float(token)

    def parse_constant(token: str) -> Any:
        raise _JSONLimit(f"{token} is not a JSON number")

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            seen: set[str] = set()
            duplicate = ""
            for key, _ in pairs:
                if key in seen:
                    duplicate = key
                    break
                seen.add(key)
            raise _JSONLimit(f"the key {duplicate[:80]!r} appears twice in one object")
        return result

    try:
        return json.loads(
            text,
            parse_int=parse_int,
            parse_float=parse_float,
            parse_constant=parse_constant,
            object_pairs_hook=unique_keys,
        )
    except _JSONLimit as exc:
        raise InvalidJSON(f"The JSON {what} is refused: {exc}.",
                          code="json_limit_exceeded") from None
    except json.JSONDecodeError as exc:
        raise InvalidJSON(
            f"The JSON {what} is malformed: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except (RecursionError, ValueError) as exc:
        raise InvalidJSON(f"The JSON {what} could not be parsed: {exc}.") from None
