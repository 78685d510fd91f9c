"""Checking an uploaded ``.npz`` training dataset from its headers, before anything is allocated.

An ``.npz`` is a zip of ``.npy`` members; each member starts with a small header declaring
its dtype and shape. A header can claim any shape (``(10**12,)`` in a few bytes), and
``numpy.load`` would try to allocate it. Here only the zip's central directory and each
member's header are read (``numpy.lib.format.read_array_header_*``, with numpy's own header
size bound), and the upload is refused unless every array is numeric (no pickled objects),
declares no more bytes than the member holds, stays within the size limits, and ``x`` and
``y`` are present with the same number of samples.

Refusals are :class:`~app.errors.InvalidDataset` (422) with codes ``invalid_dataset``,
``unsafe_dataset`` (pickles) and ``dataset_limit_exceeded``; an oversized file is a 413.

Example::

    summary = inspect_npz(Path("data.npz"), settings)
    summary.arrays["x"]        # ((1000, 32, 32, 3), 'float32')
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.config import Settings
from app.errors import InvalidDataset, PayloadTooLarge

#: numpy's own default bound on an .npy header (``numpy.lib.format``).
_MAX_HEADER_BYTES = 10_000
_REQUIRED = ("x", "y")


@dataclass(frozen=True)
class NpzSummary:
    """What the headers declare: array name -> (shape, dtype), and the total bytes."""

    arrays: dict[str, tuple[tuple[int, ...], str]]
    total_bytes: int


def _invalid(detail: str, code: str = "invalid_dataset") -> InvalidDataset:
    return InvalidDataset(detail, code=code)


def _member_problem(name: str) -> str | None:
    if not name or "\x00" in name or name.startswith(("/", "\\")) or "\\" in name:
        return "an empty, absolute or backslashed name"
    if ".." in name.split("/") or "/" in name:
        return "a directory in its name"
    if not name.endswith(".npy"):
        return "a name that does not end in .npy"
    return None


def _read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header bytes) of one member, reading only its first bytes."""
    with archive.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
        except ValueError as exc:
            raise _invalid(f"The array {info.filename!r} is not an .npy array: {exc}") from None
        try:
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(
                    member, max_header_size=_MAX_HEADER_BYTES)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(
                    member, max_header_size=_MAX_HEADER_BYTES)
            else:
                raise _invalid(f"The array {info.filename!r} uses .npy format {version}; convlens "
                               "reads versions 1.0 and 2.0 (np.savez writes them).")
        except InvalidDataset:
            raise
        except (ValueError, SyntaxError, TypeError) as exc:
            raise _invalid(f"The header of {info.filename!r} cannot be read: {exc}") from None
        header_bytes = member.tell()
    return tuple(int(dim) for dim in shape), dtype, header_bytes


def inspect_npz(path: Path, settings: Settings) -> NpzSummary:
    """Check an uploaded ``.npz`` from its headers; raise unless training may load it."""
    size = Path(path).stat().st_size
    if size > settings.max_npz_bytes:
        raise PayloadTooLarge(
            f"The dataset is {size:,} bytes; the limit is {settings.max_npz_bytes:,}."
        )
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _invalid(f"The dataset is not an .npz file (a zip of .npy arrays): {exc}") from None
    arrays: dict[str, tuple[tuple[int, ...], str]] = {}
    total = 0
    with archive:
        infos = archive.infolist()
        if len(infos) > settings.max_npz_members:
            raise _invalid(f"The .npz holds {len(infos):,} arrays; the limit is "
                           f"{settings.max_npz_members}.", "dataset_limit_exceeded")
        for info in infos:
            problem = _member_problem(info.filename)
            if problem:
                raise _invalid(f"The .npz member {info.filename[:200]!r} has {problem}.")
            if info.flag_bits & 0x1:
                raise _invalid(f"The .npz member {info.filename!r} is encrypted.")
            name = info.filename[: -len(".npy")]
            if name in arrays:
                raise _invalid(f"The .npz holds the array {name!r} twice.")
            shape, dtype, header_bytes = _read_header(archive, info)
            if dtype.hasobject:
                raise _invalid(f"The array {name!r} holds Python objects (dtype {dtype}), which "
                               "only pickle can load; convlens never unpickles uploads. Save "
                               "numeric arrays.", "unsafe_dataset")
            if dtype.kind not in "biuf":
                raise _invalid(f"The array {name!r} must hold numbers. Received: dtype {dtype}")
            declared = math.prod(shape) * dtype.itemsize
            total += declared
            if declared > settings.max_npz_bytes or total > settings.max_npz_bytes:
                raise _invalid(
                    f"The array {name!r} declares shape {shape} of {dtype} ({declared:,} bytes); "
                    f"the dataset may hold at most {settings.max_npz_bytes:,} bytes.",
                    "dataset_limit_exceeded",
                )
            if header_bytes + declared != info.file_size:
                raise _invalid(
                    f"The array {name!r} declares shape {shape} of {dtype} ({declared:,} bytes), "
                    f"but its member holds {max(info.file_size - header_bytes, 0):,} bytes of "
                    "data: the file is truncated or its header is forged."
                )
            arrays[name] = (shape, str(dtype))
    missing = [name for name in _REQUIRED if name not in arrays]
    if missing:
        raise _invalid(f"The .npz must contain arrays 'x' and 'y'. Received: {sorted(arrays)}")
    x_shape, y_shape = arrays["x"][0], arrays["y"][0]
    if not x_shape or not y_shape or x_shape[0] != y_shape[0] or x_shape[0] < 1:
        raise _invalid(f"'x' and 'y' must hold the same number (at least one) of samples along "
                       f"their first axis. Received: x {x_shape}, y {y_shape}")
    return NpzSummary(arrays=arrays, total_bytes=total)
