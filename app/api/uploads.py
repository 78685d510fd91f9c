"""Streaming multipart parsing: the uploaded file goes straight to disk, hashed on the way.

A 500 MB ``.keras`` upload never sits in memory: chunks are appended to a temporary file in
``<data_dir>/uploads`` and fed to sha256 in a worker thread, 1 MiB at a time.

Limits: at most ``MAX_PARTS`` parts (every part counts, whatever its name), each field name
once, text fields up to ``MAX_FIELD_BYTES``; a file sent under another field name than the
one the route reads is a 422 naming the right one (not a 413 about a "field" too large); a
body that ends before its closing boundary is a 400. Nothing half-received is kept.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import Request

from app.api.fairness import tenant_slots
from app.config import Settings
from app.errors import BadRequest, DomainError, PayloadTooLarge, UnsupportedFormat, ValidationFailed
from app.storage.files import disk, storage_errors

MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 16
FLUSH_BYTES = 1024 * 1024


@dataclass
class UploadedFile:
    path: Path
    filename: str | None
    size: int
    sha256: str


@dataclass
class MultipartForm:
    fields: dict[str, str] = field(default_factory=dict)
    file: UploadedFile | None = None
    """The part the route reads first (``file_field``)."""
    files: dict[str, UploadedFile] = field(default_factory=dict)
    """Every file part by field name (a training run may send a model ``file`` and a ``dataset_file``)."""

    def discard(self) -> None:
        for uploaded in {id(f): f for f in [*self.files.values(), *([self.file] if self.file else [])]}.values():
            uploaded.path.unlink(missing_ok=True)


class _Sink:
    """Hashes and writes the file part in two threads of their own, so that receiving the
    next chunks, hashing and writing all overlap (hashlib and file writes release the GIL).
    The pieces are views of the received chunks (no copies); each queue is bounded, so at
    most about ``QUEUE_BATCHES`` MiB wait in memory."""

    QUEUE_BATCHES = 8

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        with storage_errors("the upload", directory):
            self.path, self.handle = disk.new_file(directory, "upload-", ".part")
        self.hasher = hashlib.sha256()
        self.pieces: list[memoryview] = []
        self.pending_bytes = 0
        self.size = 0
        self.error: BaseException | None = None
        self.queues: list[queue.Queue[list[memoryview] | None]] = []
        self.threads: list[threading.Thread] = []
        def write(piece: memoryview) -> None:
            disk.write(self.handle, piece)

        for name_, consume in (("upload-hasher", self.hasher.update), ("upload-writer", write)):
            feed: queue.Queue[list[memoryview] | None] = queue.Queue(maxsize=self.QUEUE_BATCHES)
            thread = threading.Thread(target=self._drain, args=(feed, consume), name=name_, daemon=True)
            thread.start()
            self.queues.append(feed)
            self.threads.append(thread)

    def _drain(self, feed: queue.Queue[list[memoryview] | None], consume: Any) -> None:
        while True:
            pieces = feed.get()
            if pieces is None:
                return
            if self.error is None:
                try:
                    for piece in pieces:
                        consume(piece)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the request
                    self.error = exc

    async def _put(self, pieces: list[memoryview] | None) -> None:
        for feed in self.queues:
            try:
                feed.put_nowait(pieces)
            except queue.Full:  # hashing or the disk is slower than the network: wait off the loop
                await anyio.to_thread.run_sync(feed.put, pieces)

    async def add(self, data: memoryview) -> None:
        self.pieces.append(data)
        self.pending_bytes += len(data)
        self.size += len(data)
        if self.pending_bytes >= FLUSH_BYTES:
            pieces, self.pieces, self.pending_bytes = self.pieces, [], 0
            await self._put(pieces)

    async def close(self) -> None:
        if self.pieces:
            pieces, self.pieces, self.pending_bytes = self.pieces, [], 0
            await self._put(pieces)
        await self._put(None)
        for thread in self.threads:
            await anyio.to_thread.run_sync(thread.join)
        with storage_errors("the upload", self.directory):
            self.handle.close()
            if self.error is not None:
                raise self.error

    def abort(self) -> None:
        self.error = self.error or RuntimeError("aborted")
        for feed in self.queues:  # the threads skip their work once error is set: queues drain fast
            try:
                feed.put(None, timeout=30)
            except queue.Full:
                pass
        for thread in self.threads:
            thread.join(timeout=30)
        try:
            self.handle.close()
        finally:
            self.path.unlink(missing_ok=True)


async def read_body(
    request: Request, settings: Settings, tenant_id: str, *, other_file_fields: tuple[str, ...] = ()
) -> bytes | MultipartForm:
    """The body of a route that takes JSON or an upload: the bytes of an ``application/json``
    (or ``+json``) body, or the :class:`MultipartForm` of a ``multipart/form-data`` one, read
    while the tenant holds one of its upload slots. Any other Content-Type is a 415."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        return await request.body()
    if content_type == "multipart/form-data":
        async with tenant_slots(request).hold(tenant_id, "uploads"):
            return await read_multipart(request, settings, other_file_fields=other_file_fields)
    raise UnsupportedFormat(
        "Send application/json or multipart/form-data. "
        f"Received: Content-Type '{content_type or '(none)'}'"
    )


async def read_multipart(
    request: Request, settings: Settings, file_field: str = "file", *, other_file_fields: tuple[str, ...] = ()
) -> MultipartForm:
    """Parse a multipart body; text fields are kept (small), file parts are streamed to disk.

    ``file_field`` is the route's file (``form.file``); ``other_file_fields`` name more file
    parts it reads (``form.files``), each sent at most once.
    """
    file_fields = (file_field, *other_file_fields)
    expected = " or ".join(f"'{name}'" for name in file_fields)
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest(
            "multipart/form-data needs a boundary parameter.", code="invalid_multipart"
        )

    form = MultipartForm()
    state: dict[str, Any] = {
        "headers": {},
        "field": b"",
        "value": b"",
        "name": None,
        "filename": None,
        "buffer": bytearray(),
        "is_file": False,
        "parts": 0,
    }
    pending: list[tuple[str, Any]] = []

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        disposition = state["headers"].get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        state["name"] = name
        state["filename"] = filename.decode("utf-8", "replace") if filename is not None else None
        state["is_file"] = name in file_fields
        state["parts"] += 1
        if state["parts"] > MAX_PARTS:
            raise BadRequest(f"The multipart body has more than {MAX_PARTS} parts.",
                             code="invalid_multipart")
        if filename is not None and not state["is_file"]:
            raise ValidationFailed(
                f"The file {state['filename'][:100]!r} was sent in the form field {name[:100]!r}; "
                f"send it as the field {expected} (curl: -F {file_field}=@"
                f"{state['filename'][:100] or 'model.keras'}).",
                code="wrong_file_field", extra={"expected_field": file_field},
            )
        if not state["is_file"] and name in form.fields:
            raise BadRequest(f"The form field {name[:100]!r} is sent twice; send it once.",
                             code="invalid_multipart")
        state["buffer"] = bytearray()
        pending.append(("begin", (state["is_file"], state["filename"], name)))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["is_file"]:
            if isinstance(data, bytes):  # the received chunk itself: a view, no copy
                pending.append(("data", memoryview(data)[start:end]))
            else:  # the parser's own (reused) buffer: copy it
                pending.append(("data", memoryview(bytes(data[start:end]))))
        else:
            state["buffer"] += data[start:end]
            if len(state["buffer"]) > MAX_FIELD_BYTES:
                raise PayloadTooLarge(
                    f"Form field '{state['name'][:100]}' exceeds {MAX_FIELD_BYTES} bytes. A model "
                    f"file goes in the part '{file_field}', sent as a file (curl: "
                    f"-F {file_field}=@model.keras)."
                )

    def on_part_end() -> None:
        if state["is_file"]:
            pending.append(("end", None))
        else:
            form.fields[state["name"]] = bytes(state["buffer"]).decode("utf-8", "replace")
        state["headers"] = {}

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    sink: _Sink | None = None
    sinks: dict[str, tuple[_Sink, str | None]] = {}
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except DomainError:
                raise
            except Exception as exc:
                raise BadRequest(
                    f"The multipart body could not be parsed: {exc}", code="invalid_multipart"
                ) from exc
            for kind, payload in pending:
                if kind == "begin":
                    sink = None
                    if payload[0]:
                        if payload[2] in sinks:
                            raise BadRequest(
                                f"Send one '{payload[2]}' part only.", code="invalid_multipart"
                            )
                        sink = _Sink(settings.data_dir / "uploads")
                        sinks[payload[2]] = (sink, payload[1])
                elif kind == "data" and sink is not None:
                    await sink.add(payload)
            pending.clear()
        parser.finalize()
        if parser.state != MultipartState.END:
            raise BadRequest(
                "The multipart body ends before its closing boundary (--<boundary>--): it was "
                "cut off or is malformed.", code="invalid_multipart",
            )
        for name, (part, filename) in sinks.items():
            await part.close()
            form.files[name] = UploadedFile(
                path=part.path, filename=filename, size=part.size, sha256=part.hasher.hexdigest()
            )
        form.file = form.files.get(file_field)
    except BaseException:
        for name, (part, _) in sinks.items():
            if name in form.files:
                part.path.unlink(missing_ok=True)
            else:
                part.abort()
        raise
    return form
