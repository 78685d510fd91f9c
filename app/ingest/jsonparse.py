"""The one strict JSON parser of convlens, for every body, form field, archive member and route.

It parses with orjson (a C parser, several times faster than the standard library) and keeps
every strictness rule convlens has always applied, each checked without building anything
large first:

- size: above ``max_json_bytes`` is a 413;
- elements: a document with more than ``max_json_elements`` values (containers and scalars)
  is refused from a count of its separators *before* parsing, so 30 MB of ``{}`` costs a
  few milliseconds, not gigabytes of Python objects;
- nesting deeper than ``max_json_depth``;
- number literals longer than ``max_json_number_digits`` characters, and integers outside
  the 64-bit range (orjson would silently turn them into floats);
- ``NaN`` / ``Infinity``, trailing commas, leading zeros (orjson refuses them);
- bytes that are not UTF-8 and lone surrogates (``"\\ud800"`` escapes): invalid Unicode
  never reaches the database or a log line;
- duplicate keys in one object (orjson keeps the last silently; convlens refuses them,
  because two readers of the same document would disagree).

Depth and duplicate keys are read at C speed in the usual case: from the document's skeleton
(its quotes, brackets, commas, colons and number characters, kept by one ``translate``) and
one ``orjson.dumps`` of the parsed value, which is exact when the document holds no backslash
and no string holds a bracket. Any other document is checked by a walk of the parsed value,
as before.

Errors are ``InvalidJSON`` (422) with code ``invalid_json`` (malformed) or
``json_limit_exceeded`` (a limit), and ``PayloadTooLarge`` (413).

Example::

    >>> from app.config import Settings
    >>> parse_json_bytes(b'{"a": [1, 2.5]}', Settings())
    {'a': [1, 2.5]}
    >>> parse_json_bytes(b'{"a": 1, "a": 2}', Settings())
    Traceback (most recent call last):
    ...
    app.errors.InvalidJSON: The JSON body is refused: the key 'a' appears twice in one object.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from app.config import Settings
from app.errors import InvalidJSON, PayloadTooLarge

_UTF8_BOM = b"\xef\xbb\xbf"
# A JSON string (closing quote optional so that the scan stays linear on broken input).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: Characters of number literals.
_NUMBER_CHARACTERS = b"0123456789.eE+-"
#: The skeleton of a document (:func:`_skeleton`): one ``translate`` keeps its quotes,
#: brackets (``{`` and ``}`` written as ``[`` and ``]``), commas, colons and number characters
#: (all written ``0``), and deletes the rest.
_SKELETON_TABLE = bytes.maketrans(b"{}" + _NUMBER_CHARACTERS, b"[]" + b"0" * len(_NUMBER_CHARACTERS))
_NOT_SKELETON = bytes(b for b in range(256) if b not in b'"[]{},:' + _NUMBER_CHARACTERS)
#: Integers orjson keeps as ``int``; anything outside becomes a float (refused instead).
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
#: Digits of the shortest integer literal that may fall outside 64 bits.
_LONG_DIGITS = 19
#: Candidate integer literals that may fall outside 64 bits (19 digits or more).
_LONG_INTEGER = re.compile(rb"(?<![0-9.eE+\-])-?[0-9]{19,}(?![0-9.eE])")
_Buffer = bytes | bytearray | memoryview
#: Translation tables marking the bytes of number literals (and of digits) with 0x01, so that
#: a run of N of them is found by ``bytes.find`` at memchr speed instead of by a regex.
_NUMBER_MASK = bytes(1 if b in _NUMBER_CHARACTERS else 0 for b in range(256))
_DIGIT_MASK = bytes(1 if chr(b) in "0123456789" else 0 for b in range(256))


def json_depth(data: bytes) -> int:
    """Deepest bracket nesting of ``data``, ignoring brackets inside strings.

    Linear in ``len(data)``; never recurses.

    >>> json_depth(b'{"a": [[1], "]]]"]}')
    3
    """
    import numpy as np

    brackets = _STRING.sub(b"", bytes(data)).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int64)
    return int(np.cumsum(steps).max())


def _limit(what: str, reason: str) -> InvalidJSON:
    return InvalidJSON(f"The JSON {what} is refused: {reason}.", code="json_limit_exceeded")


def _element_upper_bound(data: bytes | bytearray) -> int:
    """Values in ``data`` counted from its separators (strings included: an upper bound)."""
    return data.count(b",") + data.count(b"[") + data.count(b"{") + 1


def _skeleton(data: bytes | bytearray) -> bytes | bytearray:
    """The quotes, brackets (all written ``[`` ``]``), commas, colons and number characters
    (all written ``0``) of ``data``, in order (strings included): what the checks before and
    after parsing read first, a fraction of the size. A run of number characters in ``data``
    is a run at least as long in the skeleton (deleting other bytes can only join runs).

    >>> _skeleton(b'{"a": [1.5, "x:y"], "b": {}}')
    b'["":[000,":"],"":[]]'
    """
    return data.translate(_SKELETON_TABLE, _NOT_SKELETON)


def _outside_strings(data: bytes | bytearray) -> bytes:
    return _STRING.sub(b"", bytes(data))


def _check_before_parsing(data: bytes | bytearray, skeleton: bytes | bytearray, settings: Settings,
                          what: str) -> None:
    """Limits that must hold before orjson allocates anything: elements and number literals.

    Each check first counts over the raw bytes (C speed; the elements over ``skeleton``,
    :func:`_skeleton` of ``data``); only when that count, which includes the insides of
    strings, is over the limit are strings removed and the exact figure taken. Both number
    checks look for a run of number characters, so the skeleton, where such a run is at
    least as long, rules both out in the usual case, where no run is 19 characters long.
    """
    limit = settings.max_json_elements
    if skeleton.count(b",") + skeleton.count(b"[") + 1 > limit:  # _element_upper_bound(data)
        structure = _outside_strings(data)
        elements = _element_upper_bound(structure)
        if elements > limit:
            raise _limit(what, f"it holds about {elements:,} values; the limit is {limit:,}")
    digits = settings.max_json_number_digits
    if skeleton.find(b"0" * min(digits + 1, _LONG_DIGITS)) == -1:
        return  # no run of number characters long enough for either check below
    if data.translate(_NUMBER_MASK).find(b"\x01" * (digits + 1)) != -1:
        long_number = re.compile(rb"[0-9.eE+\-]{%d,}" % (digits + 1))
        found = long_number.search(_outside_strings(data))
        if found is not None:
            token = found.group().decode("ascii")
            raise _limit(what, f"a number with {len(token):,} characters (limit {digits}): "
                               f"{token[:20]}...")
    if data.translate(_DIGIT_MASK).find(b"\x01" * _LONG_DIGITS) != -1:
        for match in _LONG_INTEGER.finditer(_outside_strings(data)):
            value = int(match.group())
            if not _INT_MIN <= value <= _INT_MAX:
                raise _limit(what, f"the integer {match.group()[:24].decode('ascii')}... does not "
                                   "fit in 64 bits")


def _structure(value: Any) -> tuple[int, int, int]:
    """(depth, elements, object keys) of a parsed document, level by level (no recursion)."""
    depth = elements = keys = 0
    level = [value]
    while level:
        elements += len(level)
        below: list[Any] = []
        for item in level:
            kind = type(item)
            if kind is dict:
                keys += len(item)
                below.extend(item.values())
            elif kind is list:
                below.extend(item)
        if below or any(type(item) in (dict, list) for item in level):
            depth += 1
        level = below
    return depth, elements, keys


def _skeleton_depth(data: bytes | bytearray, skeleton: bytes | bytearray, limit: int) -> int | None:
    """The nesting depth of a parsed ``data`` read from its skeleton, when that is exact and at
    most ``limit``; otherwise ``None`` (the caller walks the parsed value instead).

    Without a backslash in ``data``, quotes only open and close strings. When every string
    then holds no bracket (its quotes are adjacent in the skeleton: each ``""`` pair, read
    left to right, is one string, and a string holding a bracket breaks the pairing), the
    brackets that remain are the containers, and each removal of the adjacent ``[]`` pairs
    (the containers without a container inside) takes one level off.

    >>> _skeleton_depth(b'{"a": [[1], {}]}', _skeleton(b'{"a": [[1], {}]}'), 128)
    3
    >>> _skeleton_depth(b'{"a": "]"}', _skeleton(b'{"a": "]"}'), 128) is None
    True
    """
    if b"\\" in data:
        return None  # an escaped quote does not end its string
    shape = skeleton.translate(None, b",:0")
    quotes = shape.count(b'"')
    if shape.count(b'""') * 2 != quotes:
        return None  # a string holds a bracket
    brackets = shape.translate(None, b'"') if quotes else shape
    depth = 0
    while brackets and depth < limit:
        brackets = brackets.replace(b"[]", b"")
        depth += 1
    return None if brackets else depth


def _duplicate_key(text: bytes) -> str:
    """The first key that appears twice in one object (the slow path, for the message)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return dict(items)

    json.loads(text, object_pairs_hook=pairs)
    return found[0] if found else "?"


def _decode_error(exc: orjson.JSONDecodeError, data: bytes, what: str) -> InvalidJSON:
    message = exc.msg
    if "UTF-8" in message:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as bad:
            return InvalidJSON(f"The JSON {what} is not UTF-8: byte 0x{data[bad.start]:02x} at "
                               f"offset {bad.start}.")
    if "surrogate" in message:
        return InvalidJSON(
            f"The JSON {what} is not valid Unicode: {message} at line {exc.lineno}, column "
            f"{exc.colno}. A \\ud800-\\udfff escape must be half of a surrogate pair."
        )
    position = exc.pos if isinstance(exc.pos, int) else -1
    for token in (b"NaN", b"-Infinity", b"Infinity"):
        if 0 <= position and token in data[max(position - 1, 0):position + len(token)]:
            return _limit(what, f"{token.decode()} is not a JSON number")
    if "depth limit" in message:
        return _limit(what, "it nests more than 1,024 levels deep")
    return InvalidJSON(
        f"The JSON {what} is malformed: {message} at line {exc.lineno}, column {exc.colno}."
    )


def parse_json_bytes(data: _Buffer | str, settings: Settings, *, what: str = "body") -> Any:
    """Parse ``data`` as strict JSON within the limits of ``settings``.

    ``what`` names the document in messages ("body", "model JSON", "input_shape field").
    Raises ``PayloadTooLarge`` (413) above ``max_json_bytes`` and ``InvalidJSON`` (422,
    code ``invalid_json`` or ``json_limit_exceeded``) for everything else.
    """
    if isinstance(data, memoryview):
        data = data.tobytes()
    elif isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidJSON(
                f"The JSON {what} is not valid Unicode: a lone surrogate at character "
                f"{exc.start}."
            ) from None
    if len(data) > settings.max_json_bytes:
        raise PayloadTooLarge(
            f"The JSON {what} is {len(data):,} bytes; the limit is {settings.max_json_bytes:,}."
        )
    if data[:3] == _UTF8_BOM:
        data = data[3:]
    skeleton = _skeleton(data)
    _check_before_parsing(data, skeleton, settings, what)
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if not data.strip():
            raise InvalidJSON(f"The JSON {what} is empty.") from None
        raise _decode_error(exc, bytes(data), what) from None
    if type(value) not in (dict, list):
        return value
    depth = _skeleton_depth(data, skeleton, settings.max_json_depth)
    if depth is not None:
        # Exact, given no backslash: strings are written back as they came, and a duplicate
        # key (orjson keeps the last) takes its colon, and any inside its value, out.
        if orjson.dumps(value).count(b":") != skeleton.count(b":"):
            raise _limit(what, f"the key {_duplicate_key(bytes(data))[:80]!r} appears twice in one "
                               "object")
        return value
    depth, elements, keys = _structure(value)
    if depth > settings.max_json_depth:
        raise _limit(what, f"it nests {depth} levels deep; the limit is {settings.max_json_depth}")
    if elements > settings.max_json_elements:  # pragma: no cover - the pre-count is an upper bound
        raise _limit(what, f"it holds {elements:,} values; the limit is {settings.max_json_elements:,}")
    if data.count(b":") != keys and _outside_strings(data).count(b":") != keys:
        raise _limit(what, f"the key {_duplicate_key(bytes(data))[:80]!r} appears twice in one object")
    return value
