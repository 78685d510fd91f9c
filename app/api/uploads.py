"""Streaming multipart parsing: the uploaded file goes straight to disk, hashed on the way.

A 500 MB ``.keras`` upload never sits in memory: chunks are appended to a temporary file in
``<data_dir>/uploads`` and fed to sha256 in a worker thread, 1 MiB at a time.
"""

from __future__ import annotations

import hashlib
import os
import queue
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from app.config import Settings
from app.errors import BadRequest, PayloadTooLarge

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 16
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

    def discard(self) -> None:
        if self.file is not None:
            self.file.path.unlink(missing_ok=True)


class _Sink:
    """Writes and hashes the file part in a thread of its own, so that receiving the next
    chunks overlaps with hashing and writing the previous ones (hashlib and file writes
    release the GIL). The queue is bounded: at most ``QUEUE_CHUNKS`` MiB wait in memory."""

    QUEUE_CHUNKS = 8

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=directory)
        self.path = Path(name)
        self.handle = os.fdopen(fd, "wb")
        self.hasher = hashlib.sha256()
        self.buffer = bytearray()
        self.size = 0
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=self.QUEUE_CHUNKS)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._drain, name="upload-writer", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            chunk = self.queue.get()
            if chunk is None:
                return
            if self.error is None:
                try:
                    self.hasher.update(chunk)
                    self.handle.write(chunk)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the request
                    self.error = exc

    async def _put(self, chunk: bytes | None) -> None:
        try:
            self.queue.put_nowait(chunk)
        except queue.Full:  # the disk is slower than the network: wait without blocking the loop
            await anyio.to_thread.run_sync(self.queue.put, chunk)

    async def add(self, data: bytes) -> None:
        self.buffer += data
        self.size += len(data)
        if len(self.buffer) >= FLUSH_BYTES:
            chunk, self.buffer = bytes(self.buffer), bytearray()
            await self._put(chunk)

    async def close(self) -> None:
        if self.buffer:
            chunk, self.buffer = bytes(self.buffer), bytearray()
            await self._put(chunk)
        await self._put(None)
        await anyio.to_thread.run_sync(self.thread.join)
        self.handle.close()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self.error = self.error or RuntimeError("aborted")
        try:  # the writer skips its work once error is set, so the queue drains quickly
            self.queue.put(None, timeout=30)
        except queue.Full:
            pass
        self.thread.join(timeout=30)
        try:
            self.handle.close()
        finally:
            self.path.unlink(missing_ok=True)


async def read_multipart(
    request: Request, settings: Settings, file_field: str = "file"
) -> MultipartForm:
    """Parse a multipart body; text fields are kept (small), the file part is streamed to disk."""
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
        state["is_file"] = name == file_field
        state["buffer"] = bytearray()
        pending.append(("begin", (state["is_file"], state["filename"])))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["is_file"]:
            pending.append(("data", bytes(data[start:end])))
        else:
            state["buffer"] += data[start:end]
            if len(state["buffer"]) > MAX_FIELD_BYTES:
                raise PayloadTooLarge(
                    f"Form field '{state['name']}' exceeds {MAX_FIELD_BYTES} bytes."
                )

    def on_part_end() -> None:
        if state["is_file"]:
            pending.append(("end", None))
        else:
            if len(form.fields) >= MAX_FIELDS:
                raise BadRequest("Too many form fields.", code="invalid_multipart")
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
    filename: str | None = None
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except PayloadTooLarge:
                raise
            except BadRequest:
                raise
            except Exception as exc:
                raise BadRequest(
                    f"The multipart body could not be parsed: {exc}", code="invalid_multipart"
                ) from exc
            for kind, payload in pending:
                if kind == "begin" and payload[0]:
                    if sink is not None:
                        raise BadRequest(
                            f"Send one '{file_field}' part only.", code="invalid_multipart"
                        )
                    sink = _Sink(settings.data_dir / "uploads")
                    filename = payload[1]
                elif kind == "data" and sink is not None:
                    await sink.add(payload)
            pending.clear()
        parser.finalize()
        if sink is not None:
            await sink.close()
            form.file = UploadedFile(
                path=sink.path, filename=filename, size=sink.size, sha256=sink.hasher.hexdigest()
            )
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    return form
