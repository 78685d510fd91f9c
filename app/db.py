"""Database engine, sessions and migrations (SQLAlchemy 2 + Alembic).

SQLite (the embedded default) runs in WAL mode with a busy timeout so that the API
and the local worker processes can share the file. Every call is bounded by
``settings.database_timeout_s`` (PostgreSQL ``statement_timeout``/``lock_timeout``, the SQLite
busy timeout and write lock, the wait for a pooled connection) and new connections by
``database_connect_timeout_s``, so a request never hangs on the database.

JSON columns are written and read with orjson (the standard library where orjson cannot:
integers beyond 64 bits). A report serialised once for the response is stored as the same
text (:class:`EncodedDocument`), so a large report is never dumped twice.

Jobs are sent only after the row that describes them is committed: services call
``enqueue(session, job_id)``, the scope that owns the session commits and then hands the ids
to its ``dispatch`` (a failed dispatch is logged and leaves the job queued for the
reconciler; it never undoes the commit).

Example::

    with session_scope(settings, dispatch=executor.dispatch) as session:
        session.add(job)
        session.flush()
        enqueue(session, job.id)  # committed when the block ends, then dispatched
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import Engine, create_engine, event, insert, select, text
from sqlalchemy.orm import Session, class_mapper, make_transient_to_detached, sessionmaker

from app.config import Settings

log = logging.getLogger("convlens.db")

M = TypeVar("M")

#: Sends a committed job to the executor (``executor.dispatch``).
Dispatch = Callable[[str], object]

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_sessionmakers: dict[str, sessionmaker[Session]] = {}

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class EncodedDocument(dict[str, Any]):
    """A JSON object together with its serialised text, encoded once.

    It reads like the dict it is; the database stores ``encoded`` as is and a response can
    embed it (``orjson.Fragment(document.encoded)``). Treat it as frozen: a change after
    encoding would not be stored.

    >>> document = EncodedDocument.encode({"b": 1, "a": [1.5, None]})
    >>> document["a"], document.encoded
    ([1.5, None], b'{"b":1,"a":[1.5,null]}')
    """

    __slots__ = ("encoded",)
    encoded: bytes

    @classmethod
    def encode(cls, value: dict[str, Any]) -> EncodedDocument:
        document = cls(value)
        document.encoded = dumps_bytes(value)
        return document


def dumps_bytes(value: Any) -> bytes:
    """JSON bytes: orjson, or the standard library for what orjson refuses (huge integers).

    Non-finite floats become ``null`` either way.

    >>> dumps_bytes({"a": float("nan"), "big": 2**70})
    b'{"a":null,"big":1180591620717411303424}'
    """
    if isinstance(value, EncodedDocument):
        return value.encoded
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        text = json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def json_serializer(value: Any) -> str:
    """The engines' JSON column serializer."""
    return dumps_bytes(value).decode("utf-8")


def json_deserializer(text: str | bytes) -> Any:
    """The engines' JSON column deserializer (orjson; the standard library for huge integers)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def insert_row(session: Session, model: type[Any], values: dict[str, Any]) -> None:
    """Insert a new row of ``model`` with ``values`` (every column) with one Core INSERT (a
    statement built once per table, values bound at execution: no unit-of-work flush) on the
    session's connection; its instance comes from :func:`loaded_instance`, built before.

    The hot path stores two rows per request; the ORM's flush costs more than the INSERT, and
    the ORM's execution layer (``session.execute``) about as much again. On SQLite the write
    lock is held from a transaction's first write to its commit, so the instances (which need
    no database) are built before the first INSERT.
    """
    table = model.__table__
    statement = _INSERTS.get(table)
    if statement is None:
        statement = _INSERTS[table] = insert(table)
    session.connection().execute(statement, values)


def loaded_instance(session: Session, model: type[M], values: dict[str, Any]) -> M:
    """The persistent instance of a row written with ``values`` (every column, by
    :func:`insert_row` in the same transaction), built as a query builds a row it loads: its
    attributes set at once, none recorded as a change (the constructor's attribute events cost
    ten times as much on the request path)."""
    columns = model.__table__.columns  # type: ignore[attr-defined]
    if len(values) != len(columns):
        missing = sorted(set(columns.keys()) - values.keys())
        raise ValueError(f"a {model.__name__} row needs every column; missing {missing}")
    # (class_mapper configures the mappers first where nothing has yet in this process)
    instance: M = class_mapper(model).class_manager.new_instance()
    instance.__dict__.update(values)
    make_transient_to_detached(instance)
    session.add(instance)
    return instance


_INSERTS: dict[Any, Any] = {}


def enqueue(session: Session, job_id: str) -> None:
    """Dispatch ``job_id`` once ``session`` commits (see :func:`commit_and_dispatch`)."""
    session.info.setdefault("enqueued", []).append(job_id)


def discard_on_rollback(session: Session, path: Path) -> None:
    """Delete ``path`` (a file the unit of work placed) if the session rolls back instead of
    committing: a refused or failed request leaves no file behind."""
    session.info.setdefault("discard_on_rollback", []).append(path)


def delete_after_commit(session: Session, paths: list[Path]) -> None:
    """Delete ``paths`` (files or folders) once the session commits: the files of rows the
    unit of work deleted go with them, and stay if it rolls back."""
    session.info.setdefault("delete_after_commit", []).extend(paths)


def _delete_owned(session: Session) -> None:
    from app.storage.files import delete_paths

    delete_paths(session.info.pop("delete_after_commit", []))


def _discard_placed(session: Session) -> None:
    from app.storage.files import delete_paths

    delete_paths(session.info.pop("discard_on_rollback", []), after="after a rollback")


def commit_and_dispatch(session: Session, dispatch: Dispatch | None) -> list[str]:
    """Commit, then send the jobs enqueued on ``session``. Returns their ids.

    Without ``dispatch`` (or when sending fails) the jobs stay queued in the database, where
    the reconciler and idle workers find them: a committed job is never lost, and a broker
    failure never turns into an error for whoever created the job.
    """
    session.commit()
    session.info.pop("discard_on_rollback", None)
    _delete_owned(session)
    jobs: list[str] = session.info.pop("enqueued", [])
    if dispatch is not None:
        for job_id in jobs:
            try:
                dispatch(job_id)
            except Exception:  # noqa: BLE001 - the job stays queued for the reconciler
                log.warning("could not dispatch job %s; it stays queued", job_id, exc_info=True)
    return jobs


class SQLiteWriteLock:
    """One writer at a time on a SQLite file, across threads and processes, waited for in the
    kernel instead of in SQLite's busy handler.

    SQLite lets one connection write at a time; a second writer sleeps and retries (1, 2, 5,
    10 ... 100 ms), which under load turns into long tails and idle cores. Every connection
    of this process takes this lock (a thread lock, then ``flock`` on ``<database>.lock``) at
    its first write statement and gives it back right after its COMMIT or ROLLBACK, so the
    database's own lock is free whenever someone asks for it. A writer that cannot get it
    within ``timeout_s`` (another writer is stuck, or waits on this one) goes on without it
    and SQLite's busy timeout decides, as it would without this lock.
    """

    WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "SAVEPOINT", "CREATE", "DROP", "ALTER")

    def __init__(self, path: Path, timeout_s: float = 30.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._slot = threading.Semaphore(1)  # any thread may give it back
        self._owner: int | None = None  # the thread holding it (it may take it again)
        self._holders: dict[int, int] = {}  # id(dbapi connection) -> 1 while it holds the lock
        self._depth = 0
        self._fd = -1
        os.register_at_fork(after_in_child=self._reopen)
        self._reopen()

    def _reopen(self) -> None:
        self._slot, self._owner = threading.Semaphore(1), None
        self._holders, self._depth = {}, 0
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def install(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before_execute)
        dialect = engine.dialect
        commit, rollback = dialect.do_commit, dialect.do_rollback

        def do_commit(dbapi_connection: Any) -> None:
            try:
                commit(dbapi_connection)
            finally:
                self.release(dbapi_connection)

        def do_rollback(dbapi_connection: Any) -> None:
            try:
                rollback(dbapi_connection)
            finally:
                self.release(dbapi_connection)

        dialect.do_commit = do_commit  # type: ignore[method-assign]
        dialect.do_rollback = do_rollback  # type: ignore[method-assign]
        # A connection that leaves without COMMIT or ROLLBACK (invalidated, returned) lets go too.
        event.listen(engine, "checkin", lambda dbapi_connection, _record: self.release(dbapi_connection))
        event.listen(engine, "invalidate",
                     lambda dbapi_connection, _record, _exc: self.release(dbapi_connection))

    def _before_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip()[:9].upper().startswith(self.WRITES):
            self.acquire(conn.connection.dbapi_connection)

    def acquire(self, dbapi_connection: Any) -> None:
        key = id(dbapi_connection)
        if key in self._holders:
            return
        me = threading.get_ident()
        if self._owner != me:  # another connection of this thread may hold it already
            deadline = time.monotonic() + self.timeout_s
            if not self._slot.acquire(timeout=self.timeout_s):
                log.warning("SQLite write lock not free after %.0f s; writing without it", self.timeout_s)
                return
            if not self._flock(deadline):
                self._slot.release()
                log.warning("SQLite write lock of another process not free; writing without it")
                return
            self._owner = me
        self._depth += 1
        self._holders[key] = 1

    #: How long a waiter sleeps between tries: from the first to the longest. A writer holds the
    #: lock about a millisecond (a request's inserts and its commit: measured 1.0-1.1 ms in
    #: process, 2.3-2.6 ms under wrk with other work on the machine), and a waiter that sleeps
    #: past the release leaves its core idle for the rest of its pause: up to 2 ms with the
    #: longest pause this had before (under wrk, 18-35 % of the writes found the lock taken).
    FIRST_PAUSE_S, LONGEST_PAUSE_S = 0.0001, 0.00025

    def _flock(self, deadline: float) -> bool:
        pause = self.FIRST_PAUSE_S
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, self.LONGEST_PAUSE_S)

    def release(self, dbapi_connection: Any) -> None:
        raw = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)  # the pool's wrapper
        if self._holders.pop(id(raw), None) is None:
            return
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._slot.release()


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        # Checkpoints run in the background (WalCheckpointer) where a service runs; a request only
        # checkpoints when the WAL has grown to ~40 MB without one.
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.close()

    return apply


class WalCheckpointer:
    """Moves SQLite's WAL into the database file every ``interval_s``, in a daemon thread, so
    that commits on the request path do not (a PASSIVE checkpoint never blocks a reader or a
    writer). A no-op on PostgreSQL.

    Example::

        checkpointer = WalCheckpointer(settings).start()
        ...
        checkpointer.stop()
    """

    def __init__(self, settings: Settings, interval_s: float = 1.0) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="convlens-wal-checkpoint", daemon=True)

    def start(self) -> WalCheckpointer:
        if self.settings.is_sqlite:
            self._thread.start()
        return self

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (busy, WAL frames, frames moved into the database)."""
        with get_engine(self.settings).connect() as connection:
            row = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        return int(row[0]), int(row[1]), int(row[2])

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.checkpoint()
            except Exception:  # noqa: BLE001 - the next round, or a commit, checkpoints
                log.debug("WAL checkpoint failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def get_engine(settings: Settings) -> Engine:
    """One engine per database URL (and timeouts) and process."""
    url = settings.database_url
    key = _key(settings)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            timeout_s = settings.database_timeout_s
            if url.startswith("sqlite"):
                settings.data_dir.mkdir(parents=True, exist_ok=True)
                engine = create_engine(
                    url,
                    connect_args={"check_same_thread": False, "timeout": timeout_s},
                    pool_size=20,
                    max_overflow=20,
                    pool_timeout=timeout_s,
                    json_serializer=json_serializer,
                    json_deserializer=json_deserializer,
                )
                event.listen(engine, "connect", _sqlite_pragmas(int(timeout_s * 1000)))
                database = engine.url.database
                if database and database != ":memory:":
                    SQLiteWriteLock(
                        Path(database).with_name(Path(database).name + ".lock"), timeout_s=timeout_s
                    ).install(engine)
            else:
                timeout_ms = int(timeout_s * 1000)
                engine = create_engine(
                    url, pool_pre_ping=True, pool_size=10, max_overflow=20, pool_timeout=timeout_s,
                    json_serializer=json_serializer, json_deserializer=json_deserializer,
                    connect_args={
                        "connect_timeout": max(1, math.ceil(settings.database_connect_timeout_s)),
                        "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
                    },
                )
            _engines[key] = engine
        return engine


def get_sessionmaker(settings: Settings) -> sessionmaker[Session]:
    key = _key(settings)
    with _lock:
        maker = _sessionmakers.get(key)
    if maker is None:
        maker = sessionmaker(bind=get_engine(settings), expire_on_commit=False)
        with _lock:
            _sessionmakers[key] = maker
    return maker


def _key(settings: Settings) -> str:
    return f"{settings.database_url}|{settings.database_timeout_s}|{settings.database_connect_timeout_s}"


@contextmanager
def session_scope(settings: Settings, dispatch: Dispatch | None = None) -> Iterator[Session]:
    """A session that commits when the block ends (then dispatches the jobs enqueued on it)
    and rolls back on any error."""
    session = get_sessionmaker(settings)()
    try:
        yield session
        commit_and_dispatch(session, dispatch)
    except BaseException:
        session.rollback()
        _discard_placed(session)
        session.info.pop("delete_after_commit", None)
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Close every pooled connection (tests, and before a process forks)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _sessionmakers.clear()


# -- migrations ----------------------------------------------------------------


def alembic_config(settings: Settings) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database to ``revision`` (``convlens db upgrade``; on start in embedded mode)."""
    from alembic import command

    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    config = alembic_config(settings)
    with get_engine(settings).begin() as connection:
        if connection.dialect.name == "postgresql":  # a migration may take longer than a request
            connection.execute(text("SET LOCAL statement_timeout = 0"))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    ensure_default_tenant(settings)


def downgrade(settings: Settings, revision: str) -> None:
    from alembic import command

    config = alembic_config(settings)
    with get_engine(settings).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def migration_state(settings: Settings) -> tuple[str | None, str | None]:
    """(current revision of the database, head revision of the code)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(settings))
    head = script.get_current_head()
    with get_engine(settings).connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, head


def ensure_default_tenant(settings: Settings) -> None:
    from sqlalchemy.exc import IntegrityError

    from app.models import DEFAULT_TENANT, Tenant

    with session_scope(settings) as session:
        if session.scalar(select(Tenant).where(Tenant.id == DEFAULT_TENANT)) is not None:
            return
    try:
        with session_scope(settings) as session:
            session.add(Tenant(id=DEFAULT_TENANT, name=DEFAULT_TENANT))
    except IntegrityError:
        pass  # created concurrently by another process
