"""Reading ``config.json`` from a ``.keras`` archive without extracting the weights.

Only the central directory and the ``config.json`` / ``metadata.json`` members are read,
from a seekable file object, so a 500 MB archive costs a few kilobytes of memory. Before
anything is decompressed the archive must pass: member count, total uncompressed size,
per-member compression ratio, config size, member names (no ``..``, no absolute paths, no
duplicates) and no encryption. The weights member is not read here: the ingestion service
hands it to the HDF5 inspection child (:func:`app.ingest.h5.inspect_archive_weights`).

Example::

    with open("model.keras", "rb") as handle:
        contents = read_keras_archive(handle, settings)
    contents.config["class_name"]   # 'Functional'
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO

from app.config import Settings
from app.errors import InvalidArchitecture
from app.ingest.jsonparse import parse_json_bytes

CONFIG_MEMBER = "config.json"
METADATA_MEMBER = "metadata.json"
_MAX_METADATA_BYTES = 64 * 1024
#: Compression ratios are only judged on members at least this large (tiny files compress
#: extremely well without being bombs).
_RATIO_FLOOR_BYTES = 64 * 1024


@dataclass(frozen=True)
class ArchiveContents:
    config: Any
    metadata: dict[str, Any]
    has_weights: bool
    members: list[str]
    #: Members Keras opens as HDF5 (``model.weights.h5``, shards): inspected before any worker.
    hdf5_members: list[str]


def _invalid(detail: str) -> InvalidArchitecture:
    return InvalidArchitecture(detail, code="invalid_archive")


def _unsafe(detail: str) -> InvalidArchitecture:
    return InvalidArchitecture(detail, code="unsafe_archive")


def _limit(detail: str) -> InvalidArchitecture:
    return InvalidArchitecture(detail, code="archive_limit_exceeded")


def _central_directory_size(stream: BinaryIO) -> tuple[int, int] | None:
    """(entries, bytes) of the central directory, read from the end record only."""
    end_record = getattr(zipfile, "_EndRecData", None)
    if end_record is None:  # pragma: no cover - private helper present in CPython 3.8..3.13
        return None
    record = end_record(stream)
    if record is None:
        raise _invalid("The .keras archive is truncated or not a zip file: no end-of-central-"
                       "directory record was found.")
    return int(record[4]), int(record[5])


def _member_name_problem(name: str) -> str | None:
    if not name or "\x00" in name:
        return "an empty name or a NUL byte"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if "\\" in name:
        return "a backslash"
    if ".." in name.split("/"):
        return "a '..' component"
    return None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """Decompress one member, stopping as soon as more than ``limit`` bytes come out."""
    chunks: list[bytes] = []
    total = 0
    with archive.open(info) as member:
        while True:
            chunk = member.read(min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise _limit(f"The archive member {info.filename!r} decompresses to more than "
                             f"{limit:,} bytes (its header said {info.file_size:,}).")
            chunks.append(chunk)
    return b"".join(chunks)


def read_keras_archive(stream: BinaryIO, settings: Settings) -> ArchiveContents:
    """Check a .keras zip and parse its ``config.json`` (and ``metadata.json``)."""
    try:
        directory = _central_directory_size(stream)
        if directory is not None:
            entries, directory_bytes = directory
            if entries > settings.max_archive_members:
                raise _limit(f"The .keras archive lists {entries:,} members; the limit is "
                             f"{settings.max_archive_members}.")
            if directory_bytes > settings.max_archive_members * 4096:
                raise _limit(f"The .keras archive's central directory is {directory_bytes:,} "
                             "bytes, far more than its members need.")
        stream.seek(0)
        archive = zipfile.ZipFile(stream)
        return _read_checked(archive, settings)
    except InvalidArchitecture:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            KeyError, IndexError, NotImplementedError, RuntimeError) as exc:
        raise _invalid(f"The .keras archive could not be read (truncated or corrupt): "
                       f"{type(exc).__name__}: {exc}") from None


def _read_checked(archive: zipfile.ZipFile, settings: Settings) -> ArchiveContents:
    infos = archive.infolist()
    if len(infos) > settings.max_archive_members:
        raise _limit(f"The .keras archive has {len(infos):,} members; the limit is "
                     f"{settings.max_archive_members}.")
    seen: set[str] = set()
    total = 0
    for info in infos:
        problem = _member_name_problem(info.filename)
        if problem:
            raise _unsafe(f"The .keras archive has a member name with {problem}. "
                          f"Received: {info.filename[:200]!r}")
        if info.filename in seen:
            raise _unsafe(f"The .keras archive lists the member {info.filename!r} twice; "
                          "readers would disagree on which one counts.")
        seen.add(info.filename)
        if info.flag_bits & 0x1:
            raise _invalid(f"The .keras archive member {info.filename!r} is encrypted.")
        total += info.file_size
        if info.file_size >= _RATIO_FLOOR_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > settings.max_compression_ratio:
                raise _limit(
                    f"The .keras archive member {info.filename!r} expands {ratio:,.0f}-fold "
                    f"({info.compress_size:,} -> {info.file_size:,} bytes); the limit is "
                    f"{settings.max_compression_ratio:g}."
                )
    if total > settings.max_archive_uncompressed_bytes:
        raise _limit(f"The .keras archive would expand to {total:,} bytes; the limit is "
                     f"{settings.max_archive_uncompressed_bytes:,}.")
    if CONFIG_MEMBER not in seen:
        names = sorted(seen)[:10]
        raise _invalid(f"The archive has no config.json, so it is not a .keras model. "
                       f"Received members: {names}")
    config_info = archive.getinfo(CONFIG_MEMBER)
    if config_info.file_size > settings.max_archive_config_bytes:
        raise _limit(f"config.json is {config_info.file_size:,} bytes; the limit is "
                     f"{settings.max_archive_config_bytes:,}.")
    raw = _read_member(archive, config_info, settings.max_archive_config_bytes)
    config = parse_json_bytes(raw, settings, what="config.json")

    metadata: dict[str, Any] = {}
    if METADATA_MEMBER in seen:
        meta_info = archive.getinfo(METADATA_MEMBER)
        if meta_info.file_size <= _MAX_METADATA_BYTES:
            parsed = parse_json_bytes(_read_member(archive, meta_info, _MAX_METADATA_BYTES),
                                      settings, what="metadata.json")
            if isinstance(parsed, dict):
                metadata = parsed
    has_weights = any(name.startswith("model.weights") for name in seen)
    hdf5_members = sorted(name for name in seen if name.lower().endswith((".h5", ".hdf5")))
    return ArchiveContents(config=config, metadata=metadata, has_weights=has_weights,
                           members=sorted(seen), hdf5_members=hdf5_members)
