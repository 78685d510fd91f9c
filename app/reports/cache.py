"""Rendered pages and plots, kept per analysis and revision so a large report is drawn once.

A key names what was rendered (``"report.html"``, ``"plot:receptive_field.svg"``), for which
analysis, and the *revision* of everything the rendering read: the analysis row's
``updated_at``, the measured-gradients job that may be merged in, and the training runs shown.
A measurement arriving or a run advancing changes the revision, so the next GET renders anew;
older entries age out of the least-recently-used cache, which is bounded by bytes
(``CONVLENS_RENDER_CACHE_BYTES``).

Renders of different keys run concurrently (matplotlib figures are independent, see
:mod:`app.reports.plots`); requests for the *same* key wait for the one render in flight
instead of drawing it again (one lock per key, never a process-wide one).

Example::

    >>> cache = RenderCache(max_bytes=1024)
    >>> calls = []
    >>> def render():
    ...     calls.append(1)
    ...     return b"<html>"
    >>> cache.get_or_render(("a1", "r1", "report.html"), render)
    b'<html>'
    >>> cache.get_or_render(("a1", "r1", "report.html"), render), len(calls)
    (b'<html>', 1)
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from cachetools import LRUCache


class RenderCache:
    """An LRU cache of rendered bytes, bounded by their total size, with one render per key."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: LRUCache[Hashable, bytes] = LRUCache(maxsize=max(max_bytes, 1), getsizeof=len)
        self._lock = threading.Lock()  # guards the dicts only, never held while rendering
        self._in_flight: dict[Hashable, threading.Lock] = {}
        self.hits = 0
        self.renders = 0

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self.hits += 1
            return value

    def get_or_render(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        """The cached bytes for ``key``, rendering them (once, whoever asks) when missing."""
        cached = self.get(key)
        if cached is not None:
            return cached
        with self._lock:
            key_lock = self._in_flight.setdefault(key, threading.Lock())
        with key_lock:
            cached = self.get(key)
            if cached is not None:
                return cached
            try:
                value = render()
                with self._lock:
                    self.renders += 1
                    if len(value) <= self.max_bytes:
                        self._entries[key] = value
            finally:
                with self._lock:
                    self._in_flight.pop(key, None)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return int(self._entries.currsize)


def revision(*parts: Iterable[Any] | Any) -> str:
    """A short, stable digest of what a rendering read (timestamps, ids, statuses, counts).

    >>> revision("2024-01-01", None, [("run", 3)]) == revision("2024-01-01", None, [("run", 3)])
    True
    """
    digest = hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()
    return digest[:24]


_CACHE: RenderCache | None = None
_CACHE_LOCK = threading.Lock()


def render_cache() -> RenderCache:
    """The process's cache, sized from the settings at first use."""
    global _CACHE
    if _CACHE is None:
        with _CACHE_LOCK:
            if _CACHE is None:
                from app.config import get_settings

                _CACHE = RenderCache(get_settings().render_cache_bytes)
    return _CACHE
