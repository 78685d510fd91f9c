"""Writing files under the data folder, with failures a client and an operator can act on.

Every write of an upload, a blob or a dataset goes through :data:`disk`. An ``OSError`` that
means the storage itself is unusable (permissions, a read-only file system, a full disk or
quota, an I/O error) becomes :class:`app.errors.StorageUnavailable` (503
``storage_unavailable``) naming the folder, the cause and what to do; the request's
transaction rolls back and the files it had placed are removed
(:func:`app.db.discard_on_rollback`), so nothing half-written stays behind.

Tests replace :data:`disk` with a failing one (they run as root, which ignores file modes).

Example::

    with storage_errors("the uploaded file", settings.blob_dir):
        disk.place(upload_path, target)
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from app.errors import StorageUnavailable

log = logging.getLogger("convlens.storage")

#: errno -> (what happened, what an operator does about it)
CAUSES: dict[int, tuple[str, str]] = {
    errno.EACCES: ("permission denied", "make it writable by the user convlens runs as"),
    errno.EPERM: ("operation not permitted", "make it writable by the user convlens runs as"),
    errno.EROFS: ("the file system is read-only", "mount it read-write"),
    errno.ENOSPC: ("no space left on the device", "free space or grow the volume"),
    errno.EDQUOT: ("the disk quota is exhausted", "raise the quota of the user convlens runs as"),
    errno.EIO: ("an I/O error", "check the disk"),
}


def unavailable(error: OSError, what: str, folder: Path) -> StorageUnavailable:
    """The problem for a storage failure.

    >>> problem = unavailable(OSError(errno.ENOSPC, "full"), "the upload", Path("/data/uploads"))
    >>> problem.code, problem.extra["cause"]
    ('storage_unavailable', 'ENOSPC')
    >>> problem.detail.split(": ", 1)[1]
    'no space left on the device (ENOSPC); free space or grow the volume. Nothing was stored.'
    """
    cause, action = CAUSES.get(error.errno or 0, (error.strerror or type(error).__name__, "check the folder"))
    name = errno.errorcode.get(error.errno or 0, "error")
    return StorageUnavailable(
        f"convlens could not store {what} in {folder}: {cause} ({name}); {action}. Nothing was stored.",
        extra={"cause": name, "retry_after": 30},
    )


@contextmanager
def storage_errors(what: str, folder: Path) -> Iterator[None]:
    """Turn a storage failure inside the block into ``storage_unavailable``."""
    try:
        yield
    except StorageUnavailable:
        raise
    except OSError as exc:
        if exc.errno not in CAUSES:
            raise
        raise unavailable(exc, what, folder) from exc


class Disk:
    """The file operations of the data folder (one place, so that tests can make them fail)."""

    def new_file(self, folder: Path, prefix: str, suffix: str) -> tuple[Path, BinaryIO]:
        """A new empty file in ``folder`` (created if missing), open for writing."""
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
        return Path(name), os.fdopen(descriptor, "wb")

    def write(self, handle: BinaryIO, data: bytes | memoryview) -> None:
        handle.write(data)

    def place(self, source: Path, target: Path) -> None:
        """Move ``source`` to ``target`` (same file system: a rename), creating the folder."""
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.move(str(source), target)


#: The disk every write goes through.
disk = Disk()


def delete_paths(paths: Iterable[Path], *, after: str = "") -> None:
    """Delete files and folders the service owns (a job's work folder, a dataset, a blob),
    each on its own: one that cannot be deleted is logged (the periodic sweep tries again)
    and the others still go. ``after`` says when, for the log."""
    for path in paths:
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            log.warning("could not delete %s%s", path, f" {after}" if after else "", exc_info=True)
