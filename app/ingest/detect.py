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


#: How to bring each foreign format to convlens (said in the 415).
FOREIGN_HINTS: dict[str, tuple[str, str]] = {
    "pytorch": (
        "a PyTorch model (torch.save)",
        "convlens reads Keras models only. Rebuild the network with Keras and save it with "
        "model.save('model.keras'), or export it to ONNX (torch.onnx.export) and convert that "
        "to Keras (e.g. with onnx2tf or onnx2keras), then upload the .keras file.",
    ),
    "onnx": (
        "an ONNX model",
        "convlens reads Keras models only. Convert it to Keras (e.g. with onnx2tf or "
        "onnx2keras), save it with model.save('model.keras') and upload that file.",
    ),
    "savedmodel": (
        "a TensorFlow SavedModel",
        "convlens reads the Keras architecture, which a SavedModel does not keep in a form it "
        "can read. If it was saved from a Keras model, load that model in Keras (tf_keras: "
        "tf_keras.models.load_model(path)) and upload model.save('model.keras') or "
        "model.to_json(); otherwise upload the Keras model it was built from.",
    ),
    "tflite": (
        "a TensorFlow Lite flatbuffer",
        "A .tflite file holds a converted inference graph, not a Keras architecture. Upload "
        "the Keras model it was converted from (model.save('model.keras') or model.to_json()).",
    ),
}
_TORCH_LEGACY_MAGIC = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_ONNX_PRODUCERS = (b"pytorch", b"onnx", b"tf2onnx", b"keras2onnx", b"skl2onnx", b"onnxmltools")


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while offset < len(data) and shift < 64:
        byte = data[offset]
        value |= (byte & 0x7F) << shift
        offset += 1
        if not byte & 0x80:
            return value, offset
        shift += 7
    return -1, offset


def _protobuf_kind(head: bytes) -> str | None:
    """ONNX ModelProto or SavedModel, from their first fields (both start ``08 <n> 12``)."""
    if len(head) < 4 or head[0] != 0x08:
        return None
    version, offset = _varint(head, 1)
    if version < 0 or offset >= len(head):
        return None
    if head[offset] == 0x12:  # field 2: ONNX producer_name (text) / SavedModel meta_graphs
        length, start = _varint(head, offset + 1)
        payload = head[start:start + max(length, 0)]
        if payload and all(32 <= byte < 127 for byte in payload[:64]) and 1 <= version <= 30:
            return "onnx"
        if version == 1 and payload[:1] == b"\x0a":
            return "savedmodel"
    if 1 <= version <= 30 and any(producer in head for producer in _ONNX_PRODUCERS) and (
            b"\x3a" in head[:64] or b"\x42" in head):
        return "onnx"
    return None


def _zip_names(stream: BinaryIO) -> list[str]:
    import zipfile

    try:
        stream.seek(0)
        with zipfile.ZipFile(stream) as archive:
            return archive.namelist()[:10_000]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return []
    finally:
        stream.seek(0)


def _tar_names(head: bytes) -> list[str]:
    """Member names of a (gzipped) tar, from the first blocks only."""
    import zlib

    data = head
    if head.startswith(b"\x1f\x8b"):
        try:
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 1 << 16)
        except zlib.error:
            return []
    names = []
    offset = 0
    while offset + 512 <= len(data) and data[offset + 257:offset + 262] == b"ustar":
        names.append(data[offset:offset + 100].split(b"\0", 1)[0].decode("utf-8", "replace"))
        try:
            size = int(data[offset + 124:offset + 136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            break
        offset += 512 + (size + 511) // 512 * 512
    return names


def identify_foreign(stream: BinaryIO, head: bytes) -> str | None:
    """The other model formats people upload by mistake: 'pytorch', 'onnx', 'savedmodel',
    'tflite', or None."""
    if head.startswith(ZIP_MAGIC):
        names = _zip_names(stream)
        if "config.json" in names:
            return None
        if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            return "pytorch"
        if any(name.rsplit("/", 1)[-1] in ("saved_model.pb", "saved_model.pbtxt") for name in names):
            return "savedmodel"
        return None
    if head.startswith(b"\x80") and _TORCH_LEGACY_MAGIC in head[:32]:
        return "pytorch"
    if head[4:8] == b"TFL3":
        return "tflite"
    if (head.startswith(b"\x1f\x8b") or head[257:262] == b"ustar") and any(
            name.rsplit("/", 1)[-1] == "saved_model.pb" for name in _tar_names(head)):
        return "savedmodel"
    return _protobuf_kind(head)


def _foreign(kind: str, filename: str | None) -> UnsupportedFormat:
    what, hint = FOREIGN_HINTS[kind]
    return UnsupportedFormat(
        f"The upload is {what}, not a Keras model. {hint} Received: "
        + (f"filename={filename!r}" if filename else "an upload without a filename"),
        extra={"detected_format": kind},
    )


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
        return "binary data (perhaps a protobuf)"
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
    if detected in (None, "keras"):
        foreign = identify_foreign(stream, head)
        if foreign is not None:
            raise _foreign(foreign, filename)
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
