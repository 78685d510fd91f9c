"""The one ``input_shape`` validator, for every body, form field, route and the command line.

An input shape override is given without the batch dimension, in any of the forms a person or
a program naturally writes:

- a JSON list: ``[224, 224, 3]`` (``null`` for a dimension left open);
- JSON text of that list, as a form field carries it: ``"[224, 224, 3]"``;
- the command line's form: ``"224,224,3"``, ``"224x224x3"``, ``"(224, 224, 3)"``,
  ``"None,None,3"``;
- per input, for models with several inputs: ``{"image": [224, 224, 3], "mask": [224, 224, 1]}``
  (or that object as JSON text, or the command line's ``image=224,224,3;mask=224,224,1``).
  The names are the model's InputLayer names; the engine matches them (inputs left out keep
  their declared shapes).

Every dimension is an integer from 1 to ``max_input_dim`` or open; a shape has 1 to
``max_input_rank`` dimensions and at most ``max_input_elements`` elements per sample (the
product of the known dimensions). Anything else is an :class:`InvalidInputShape` (422,
code ``invalid_input_shape``) saying what was received.

Example::

    >>> from app.config import Settings
    >>> parse_input_shape("224x224x3", Settings())
    [224, 224, 3]
    >>> parse_input_shape('{"image": [64, 64, 3]}', Settings())
    {'image': [64, 64, 3]}
    >>> parse_input_shape("image=64x64x3; mask=64,64,1", Settings())
    {'image': [64, 64, 3], 'mask': [64, 64, 1]}
    >>> parse_input_shape([0, 10, 3], Settings())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    app.errors.InvalidInputShape: input_shape dimensions must be integers from 1 to ... or null. ...
"""

from __future__ import annotations

import math
import re
from typing import Any

from app.config import Settings
from app.errors import DomainError, InvalidInputShape

Shape = list[int | None]
InputShapes = Shape | dict[str, Shape]

#: Most inputs a per-input override may name.
MAX_NAMED_INPUTS = 64
_TYPED_SEPARATORS = re.compile(r"\s*[,x×*]\s*|\s+", re.IGNORECASE)
_OPEN_TOKENS = frozenset({"none", "null", "?", "-1"})


def _received(value: Any, field: str) -> str:
    text = str(value) if isinstance(value, list | dict) else repr(value)
    return f"{field}={text[:120]}{'...' if len(text) > 120 else ''}"


def _typed_form(text: str, field: str, settings: Settings) -> Shape:
    """``224,224,3`` / ``224x224x3`` / ``(224, 224, 3)`` / ``None,None,3``."""
    inner = text.strip().strip("()[]").strip()
    tokens = [token for token in _TYPED_SEPARATORS.split(inner) if token]
    if not tokens:
        raise InvalidInputShape(f"{field} is empty. Send e.g. [224, 224, 3] or 224,224,3. "
                                f"Received: {_received(text, field)}")
    dims: list[Any] = []
    for token in tokens:
        lowered = token.lower()
        if lowered in _OPEN_TOKENS:
            dims.append(None)
        elif lowered.isascii() and lowered.isdigit():  # "¹" is a digit to str.isdigit, not to int()
            dims.append(int(lowered) if len(lowered) <= 12 else math.inf)
        else:
            raise InvalidInputShape(
                f"{field} must list the input's dimensions without the batch dimension, as "
                f"[224, 224, 3], 224,224,3 or 224x224x3. Received: {_received(text, field)}"
            )
    return _check_dims(dims, text, field, settings)


def _typed_per_input(text: str, field: str, settings: Settings) -> dict[str, Any]:
    """``image=224,224,3;mask=224,224,1``: one typed shape per input name."""
    shapes: dict[str, Any] = {}
    for part in (piece.strip() for piece in text.split(";")):
        if not part:
            continue
        name, separator, dims = part.partition("=")
        if not separator or not name.strip():
            raise InvalidInputShape(
                f"{field} per input is written name=dims;name=dims, e.g. image=224,224,3;"
                f"mask=224,224,1. Received: {_received(text, field)}"
            )
        shapes[name.strip()] = _typed_form(dims, f"{field}[{name.strip()!r}]", settings)
    return shapes


def _check_dims(dims: Any, original: Any, field: str, settings: Settings) -> Shape:
    if not isinstance(dims, list):
        raise InvalidInputShape(
            f"{field} must be a list of dimensions (without the batch dimension), e.g. "
            f"[224, 224, 3]. Received: {_received(original, field)}"
        )
    if not 1 <= len(dims) <= settings.max_input_rank:
        raise InvalidInputShape(
            f"{field} must have 1 to {settings.max_input_rank} dimensions (without the batch "
            f"dimension). Received: {_received(original, field)}"
        )
    for dim in dims:
        if dim is None:
            continue
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= settings.max_input_dim:
            raise InvalidInputShape(
                f"{field} dimensions must be integers from 1 to {settings.max_input_dim:,} or "
                f"null. Received: {_received(original, field)}"
            )
    elements = math.prod(dim for dim in dims if dim is not None)
    if elements > settings.max_input_elements:
        raise InvalidInputShape(
            f"{field} describes {elements:,} elements per sample; the limit is "
            f"{settings.max_input_elements:,}. Received: {_received(original, field)}",
            extra={"limit": "max_input_elements", "value": elements},
        )
    return list(dims)


def _check_value(value: Any, original: Any, field: str, settings: Settings) -> InputShapes:
    if isinstance(value, dict):
        if not value or len(value) > MAX_NAMED_INPUTS:
            raise InvalidInputShape(
                f"{field} given per input needs 1 to {MAX_NAMED_INPUTS} input names. "
                f"Received: {_received(original, field)}"
            )
        shapes: dict[str, Shape] = {}
        for name, dims in value.items():
            if not isinstance(name, str) or not name or len(name) > 300 or "/" in name:
                raise InvalidInputShape(
                    f"{field} keys must be the model's input layer names. Received: "
                    f"{_received(original, field)}"
                )
            shapes[name] = _check_dims(dims, original, f"{field}[{name!r}]", settings)
        return shapes
    return _check_dims(value, original, field, settings)


def parse_input_shape(value: Any, settings: Settings, *, field: str = "input_shape"
                      ) -> InputShapes | None:
    """The validated override (a list, or a dict of lists per input name), or None.

    ``value`` is what the client sent: a list, a dict, JSON text or the typed form; ``None``
    and blank text mean no override.
    """
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if len(text) > 4096:
            raise InvalidInputShape(f"{field} is {len(text):,} characters long; an input shape "
                                    f"needs a few. Received: {_received(text, field)}")
        if text.startswith(("{", "[")):
            from app.ingest.jsonparse import parse_json_bytes

            try:
                parsed = parse_json_bytes(text.encode("utf-8"), settings, what=f"{field} field")
            except DomainError as exc:
                raise InvalidInputShape(
                    f"{field} is not valid JSON ({exc.detail}) Send e.g. [224, 224, 3], "
                    f"224,224,3 or {{\"image\": [224, 224, 3]}}. Received: {_received(text, field)}"
                ) from None
            return _check_value(parsed, text, field, settings)
        if "=" in text:
            return _check_value(_typed_per_input(text, field, settings), text, field, settings)
        return _typed_form(text, field, settings)
    if isinstance(value, tuple):
        value = list(value)
    return _check_value(value, value, field, settings)
