"""Child process that inspects an HDF5 file (run in a fresh interpreter).

It inspects a legacy ``.h5`` model (and reads its ``model_config``), or the weights member
of a ``.keras`` archive (``--member model.weights.h5``: read in place from the zip, never
extracted). It sets its own resource limits before importing h5py, walks the file with links
resolved by hand (hard links only), refuses external storage, external/soft/user-defined
links, virtual datasets and oversized datasets, never reads dataset data, and prints one JSON
object on stdout. A crash in libhdf5 ends only this process.

Run as::

    python -m app.ingest.h5_child FILE [--member NAME] --memory-bytes N --cpu-seconds N \\
        --max-dataset-bytes N --max-total-bytes N --max-config-bytes N --max-objects N
"""

from __future__ import annotations

import argparse
import io
import json
import os
import struct
import sys
import zipfile
from typing import Any


class Refused(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _set_limits(memory_bytes: int, cpu_seconds: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # this process writes no files


def _read_string_attribute(obj: Any, name: str, max_bytes: int) -> str | None:
    """A scalar string attribute, size-checked before it is read."""
    import h5py

    if name not in obj.attrs:
        return None
    attribute = h5py.h5a.open(obj.id, name.encode())
    space = attribute.get_space()
    if space.get_simple_extent_type() not in (h5py.h5s.SCALAR, h5py.h5s.SIMPLE):
        raise Refused("h5_unreadable", f"The attribute {name!r} has no readable dataspace.")
    if space.get_simple_extent_npoints() != 1:
        raise Refused("h5_unreadable", f"The attribute {name!r} is not a single string.")
    if attribute.get_storage_size() > max_bytes:
        raise Refused("hdf5_limit_exceeded",
                      f"The attribute {name!r} is {attribute.get_storage_size():,} bytes; the "
                      f"limit is {max_bytes:,}.")
    if attribute.get_type().get_class() != h5py.h5t.STRING:
        raise Refused("h5_unreadable", f"The attribute {name!r} is not a string.")
    value = obj.attrs[name]
    if hasattr(value, "shape") and getattr(value, "shape", ()) in ((1,),):
        value = value[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        raise Refused("h5_unreadable", f"The attribute {name!r} is not a string.")
    if len(value.encode("utf-8")) > max_bytes:
        raise Refused("hdf5_limit_exceeded", f"The attribute {name!r} is longer than "
                                             f"{max_bytes:,} bytes.")
    return value


def _check_dataset(dataset: Any, path: str, max_dataset_bytes: int) -> int:
    import h5py

    plist = dataset.id.get_create_plist()
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        raise Refused("unsafe_hdf5", f"The dataset {path!r} is a virtual dataset (it maps other "
                                     "files into this one).")
    if plist.get_external_count() > 0:
        raise Refused("unsafe_hdf5", f"The dataset {path!r} stores its data in external files.")
    space = dataset.id.get_space()
    if space.get_simple_extent_type() == h5py.h5s.SIMPLE:
        points = 1
        for dim in space.get_simple_extent_dims():
            points *= int(dim)
    else:
        points = 1 if space.get_simple_extent_type() == h5py.h5s.SCALAR else 0
    size = points * dataset.id.get_type().get_size()
    if size > max_dataset_bytes:
        raise Refused("hdf5_limit_exceeded",
                      f"The dataset {path!r} declares shape {tuple(space.get_simple_extent_dims())}"
                      f" ({size:,} bytes); the limit is {max_dataset_bytes:,} bytes.")
    return size


class ZipMemberWindow(io.RawIOBase):
    """A stored (uncompressed) zip member as a seekable file, read in place from the archive."""

    def __init__(self, raw: Any, start: int, size: int) -> None:
        super().__init__()
        self._raw, self._start, self._size, self._position = raw, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), self._size - self._position))
        self._raw.seek(self._start + self._position)
        data = self._raw.read(count)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def open_member(archive_path: str, member: str) -> tuple[Any, list[Any]]:
    """A seekable file object over one member of a zip archive, and what to close after."""
    raw = open(archive_path, "rb")  # noqa: SIM115 - closed by the caller
    archive = zipfile.ZipFile(raw)
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise Refused("invalid_archive", f"The archive has no member {member!r}.") from None
    if info.compress_type == zipfile.ZIP_STORED:
        raw.seek(info.header_offset)
        header = raw.read(30)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise Refused("invalid_archive", f"The archive member {member!r} has no local header.")
        name_length, extra_length = struct.unpack("<2H", header[26:30])
        start = info.header_offset + 30 + name_length + extra_length
        return ZipMemberWindow(raw, start, info.file_size), [archive, raw]
    member_file = archive.open(info)  # compressed: seekable, slower (bounded by the CPU limit)
    return member_file, [member_file, archive, raw]


def inspect_file(path: str | Any, *, max_dataset_bytes: int, max_total_bytes: int,
                 max_config_bytes: int, max_objects: int, weights_only: bool = False
                 ) -> dict[str, Any]:
    import h5py

    kinds = {h5py.h5l.TYPE_HARD: "hard", h5py.h5l.TYPE_SOFT: "soft",
             h5py.h5l.TYPE_EXTERNAL: "external"}
    with h5py.File(path, "r", locking=False) as handle:
        root = h5py.h5o.get_info(handle.id)
        seen: set[Any] = {(root.fileno, root.addr)}
        total = 0
        objects = 0
        stack: list[tuple[Any, str]] = [(handle, "/")]
        while stack:
            group, group_path = stack.pop()
            for name in group:
                member_path = f"{group_path.rstrip('/')}/{name}"
                link_type = group.id.links.get_info(name.encode()).type
                if link_type != h5py.h5l.TYPE_HARD:
                    kind = kinds.get(link_type, "user-defined")
                    raise Refused("unsafe_hdf5",
                                  f"The HDF5 file has a {kind} link at {member_path!r}; only "
                                  "hard links are accepted.")
                objects += 1
                if objects > max_objects:
                    raise Refused("hdf5_limit_exceeded",
                                  f"The HDF5 file has more than {max_objects:,} objects.")
                info = h5py.h5o.get_info(group.id, name.encode())
                key = (info.fileno, info.addr)
                obj = group[name]
                if isinstance(obj, h5py.Dataset):
                    total += _check_dataset(obj, member_path, max_dataset_bytes)
                    if total > max_total_bytes:
                        raise Refused("hdf5_limit_exceeded",
                                      f"The HDF5 datasets declare more than {max_total_bytes:,} "
                                      "bytes in total.")
                elif isinstance(obj, h5py.Group):
                    if key in seen:
                        continue  # the same group reached twice (hard-link cycle)
                    seen.add(key)
                    stack.append((obj, member_path))
        if weights_only:
            return {"ok": True, "has_weights": True, "datasets_bytes": total}
        config = _read_string_attribute(handle, "model_config", max_config_bytes)
        if config is None:
            raise Refused("invalid_architecture",
                          "The HDF5 file has no 'model_config' attribute, so it is not a Keras "
                          "model saved with model.save('...h5'). Received top-level entries: "
                          f"{sorted(handle.keys())[:10]}")
        keras_version = _read_string_attribute(handle, "keras_version", 1024)
        backend = _read_string_attribute(handle, "backend", 1024)
        return {"ok": True, "model_config": config, "keras_version": keras_version,
                "backend": backend, "has_weights": "model_weights" in handle}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="app.ingest.h5_child")
    parser.add_argument("path")
    parser.add_argument("--member", default=None,
                        help="inspect this member of the zip archive at PATH (weights only)")
    parser.add_argument("--memory-bytes", type=int, required=True)
    parser.add_argument("--cpu-seconds", type=int, required=True)
    parser.add_argument("--max-dataset-bytes", type=int, required=True)
    parser.add_argument("--max-total-bytes", type=int, required=True)
    parser.add_argument("--max-config-bytes", type=int, required=True)
    parser.add_argument("--max-objects", type=int, required=True)
    args = parser.parse_args(argv)
    _set_limits(args.memory_bytes, args.cpu_seconds)
    to_close: list[Any] = []
    try:
        target: Any = args.path
        if args.member is not None:
            target, to_close = open_member(args.path, args.member)
        result = inspect_file(target, max_dataset_bytes=args.max_dataset_bytes,
                              max_total_bytes=args.max_total_bytes,
                              max_config_bytes=args.max_config_bytes,
                              max_objects=args.max_objects, weights_only=args.member is not None)
    except Refused as exc:
        result = {"ok": False, "code": exc.code, "detail": exc.detail}
    except MemoryError:
        result = {"ok": False, "code": "h5_unreadable",
                  "detail": "Reading the HDF5 file needed more memory than allowed."}
    except Exception as exc:  # noqa: BLE001 - anything libhdf5 raises is the file's fault
        result = {"ok": False, "code": "h5_unreadable",
                  "detail": f"The HDF5 file could not be read: {type(exc).__name__}: "
                            f"{str(exc)[:300]}"}
    finally:
        for handle in to_close:
            handle.close()
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    sys.exit(main())
