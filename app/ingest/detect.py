"""Format detection from content (magic bytes); the file extension must agree.

Example::

    >>> detect_format(b'  {"class_name": "Sequential"}', "model.json")
    'json'
    >>> detect_format(b"PK\\x03\\x04...", "model.h5")
    Traceback (most recent call last):
    ...
    app.errors.UnsupportedFormat: ...
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Literal

from app.errors import UnsupportedFormat

Format = Literal["json", "keras", "h5"]

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_JSON_WHITESPACE = b" \t\r\n"
_UTF8_BOM = b"\xef\xbb\xbf"

EXTENSIONS: dict[str, Format] = {".json": "json", ".keras": "keras", ".h5": "h5", ".hdf5": "h5"}
_DESCRIPTIONS: dict[Format, str] = {
    "json": "Keras model JSON",
    "keras": "a .keras archive (zip)",
    "h5": "a legacy HDF5 (.h5) model",
}


def _sniff_other(head: bytes) -> str:
    """A short description of content that is none of the accepted formats."""
    stripped = head.lstrip(_JSON_WHITESPACE)
    if not head:
        return "an empty file"
    if stripped.startswith(b"["):
        return "a JSON array (a model config is a JSON object)"
    if head.startswith(b"PK\x05\x06"):
        return "an empty zip archive"
    if head.startswith(b"\x80") and len(head) > 1 and head[1] in range(2, 6):
        return "a Python pickle"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ")):
        return "a compressed stream (gzip/bzip2/xz)"
    if head.startswith(b"\x08") or head.startswith(b"\x12"):
        return "binary data (perhaps a TensorFlow SavedModel protobuf)"
    return f"unrecognised content starting with {head[:16]!r}"


def _looks_like_text(head: bytes) -> bool:
    """True for (a prefix of) UTF-8 text without control bytes other than whitespace."""
    if not head:
        return True
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the 4 KiB boundary
            return False
        text = head[: exc.start].decode("utf-8")
    return all(char >= " " or char in "\t\r\n" for char in text)


def hdf5_signature_offsets(size: int) -> list[int]:
    """Where an HDF5 superblock may start: 0, 512, 1024, 2048, ... below ``size``."""
    offsets = [0]
    offset = 512
    while offset + len(HDF5_MAGIC) <= size:
        offsets.append(offset)
        offset *= 2
    return offsets


def sniff(stream: BinaryIO, size: int) -> tuple[Format | None, bytes]:
    """Detect the format of a seekable stream of ``size`` bytes (None: not accepted)."""
    stream.seek(0)
    head = stream.read(4096)
    body = head[len(_UTF8_BOM):] if head.startswith(_UTF8_BOM) else head
    if body.lstrip(_JSON_WHITESPACE).startswith(b"{"):
        return "json", head
    if head.startswith(ZIP_MAGIC):
        return "keras", head
    for offset in hdf5_signature_offsets(size):
        stream.seek(offset)
        if stream.read(len(HDF5_MAGIC)) == HDF5_MAGIC:
            return "h5", head
    return None, head


def detect_format(head_or_stream: bytes | BinaryIO, filename: str | None, size: int | None = None
                  ) -> Format:
    """The format of the content; ``UnsupportedFormat`` (415) if unknown or mismatched.

    The extension of ``filename`` (when it has one) must be ``.json``, ``.keras``, ``.h5``
    or ``.hdf5`` and agree with the content.
    """
    import io

    if isinstance(head_or_stream, (bytes, bytearray, memoryview)):
        data = bytes(head_or_stream)
        stream: BinaryIO = io.BytesIO(data)
        size = len(data)
    else:
        stream = head_or_stream
        if size is None:
            stream.seek(0, io.SEEK_END)
            size = stream.tell()
    detected, head = sniff(stream, size)
    extension = Path(filename).suffix.lower() if filename else ""
    if extension and extension not in EXTENSIONS:
        found = f"; the content looks like {_DESCRIPTIONS[detected]}" if detected else ""
        raise UnsupportedFormat(
            f"Files named '*{extension}' are not accepted: send Keras model JSON (.json), a "
            f".keras archive or a legacy .h5 model{found}. Received: filename={filename!r}"
        )
    if detected is None and not filename and _looks_like_text(head):
        # No filename (an architecture sent inside a JSON request body): text is meant as
        # JSON, and the JSON parser explains what is wrong with it (422, not 415).
        detected = "json"
    if detected is None:
        raise UnsupportedFormat(
            "The content is not Keras model JSON, a .keras archive (zip) or a legacy HDF5 "
            f"model. Received: {_sniff_other(head)}"
            + (f" in {filename!r}" if filename else "")
        )
    if extension and EXTENSIONS[extension] != detected:
        raise UnsupportedFormat(
            f"The file extension '{extension}' says {_DESCRIPTIONS[EXTENSIONS[extension]]}, "
            f"but the content is {_DESCRIPTIONS[detected]}. Received: filename={filename!r}"
        )
    return detected
