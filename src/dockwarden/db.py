"""The SQLite plumbing every store of dockwarden shares.

All of dockwarden's tables live in one file, ``<state-dir>/dockwarden.db``, in
WAL mode so the CLI can read and write while the daemon runs. The core store
(:mod:`dockwarden.store`) and each feature (incidents, the notification outbox,
storage samples, the container pool) sit on :class:`FeatureDB`: one connection,
one lock, migrations applied on open. SQL always takes parameters.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dockwarden.private import private_opener, secure_state_dir


log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The database cannot be opened or migrated (path named in the message)."""


def apply_migrations(db: sqlite3.Connection, component: str, migrations: dict[int, tuple[str, ...]]) -> int:
    """Bring one feature's tables up to date in a shared database file.

    Features beside the core (storage samples, the container pool,
    notifications) keep their own tables in ``dockwarden.db`` with their own
    version, recorded in the ``schema_migrations`` table as (component,
    version). Each migration's statements run in one transaction.

    Args:
        db: an open connection in autocommit mode (``isolation_level=None``).
        component: the feature's name, e.g. ``"pool"``.
        migrations: version -> SQL statements, versions 1..N without gaps.
    Returns:
        The component's schema version after migrating.
    Raises:
        StoreError: the database holds a newer version than ``migrations`` knows.
    """
    db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    latest = max(migrations) if migrations else 0
    while True:
        # Read the version inside the write transaction: two processes opening a
        # fresh database at once must not both run the same migration.
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT version FROM schema_migrations WHERE component = ?", (component,)).fetchone()
            current = row[0] if row else 0
            if current > latest:
                raise StoreError(
                    f"{component}: schema version {current} is newer than this dockwarden understands ({latest})")
            if current == latest:
                db.execute("COMMIT")
                return latest
            v = current + 1
            for stmt in migrations[v]:
                db.execute(stmt)
            db.execute(
                "INSERT INTO schema_migrations (component, version) VALUES (?, ?) "
                "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                (component, v),
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def connect_db(path: str | Path) -> sqlite3.Connection:
    """A connection to ``dockwarden.db`` set up like the Store's (WAL, autocommit,
    foreign keys on, 15 s busy timeout), for feature modules with their own tables.

    A missing file is created 0600 first, whatever the umask: SQLite gives its
    ``-wal`` and ``-shm`` files the database file's mode (``findCreateFileMode``
    in ``os_unix.c``), so they are private too.

    An existing file is never opened outside SQLite: closing any descriptor of
    the file drops every POSIX lock this process holds on it, including those
    of another connection in the middle of a transaction, and another process
    can then write under it (sqlite.org, "How To Corrupt An SQLite Database
    File", 2.2). Seen here: two rows with one primary key after a daemon opened
    one more store while another connection of it was writing.
    """
    if not os.path.exists(path):
        try:
            os.close(private_opener(path, os.O_RDWR | os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            pass  # another thread or process created it meanwhile: SQLite opens it as is
    db = sqlite3.connect(str(path), timeout=15, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


#: Most writes kept in memory while the state dir cannot be written (per store).
HELD_WRITES_MAX = 20_000

#: A small page cache (256 KiB; SQLite's default is 2000 KiB per connection), for the
#: connections that read little and often (the API's). A literal: PRAGMA takes no
#: bound parameters, and no statement here is built from values.
SMALL_CACHE_PRAGMA = "PRAGMA cache_size = -256"
#: Fragments of SQLite's messages for "the file cannot be written now": disk full
#: (SQLITE_FULL), read-only filesystem (SQLITE_READONLY), an I/O error
#: (SQLITE_IOERR), another writer holding the lock too long (SQLITE_BUSY).
_STORAGE_ERRORS = ("disk is full", "database or disk is full", "readonly", "read-only", "disk i/o error",
                   "database is locked", "unable to open database file")


def is_storage_error(e: BaseException) -> bool:
    """True for SQLite errors that mean "cannot write the file now" (retrying
    later can succeed), as opposed to a bug (bad SQL, a constraint)."""
    return isinstance(e, sqlite3.OperationalError) and any(m in str(e).lower() for m in _STORAGE_ERRORS)


class FeatureDB:
    """Base of the feature stores that keep their own tables in ``dockwarden.db``
    (incidents, the notification outbox, storage samples, the container pool):
    one connection (:func:`connect_db`), one lock, the component's migrations
    applied on open, and the usual helpers.

    Subclasses set ``COMPONENT`` and ``MIGRATIONS``.

    Args:
        path: the shared database file. Its directory (the state dir) is
            created and made private first (:func:`dockwarden.private.secure_state_dir`:
            0700, every file in it 0600), so the database, its ``-wal``/``-shm``
            (which take the database's mode) and every other state file are
            private whichever command or daemon opened them first.
    Raises:
        sqlite3.Error, StoreError: the file cannot be opened or migrated.
        OSError: the state dir cannot be created.
    """

    COMPONENT = ""
    MIGRATIONS: dict[int, tuple[str, ...]] = {}

    def __init__(self, path: str | Path):
        self.path = Path(path)
        secure_state_dir(self.path.parent)
        try:
            self._db = connect_db(self.path)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open database: {e}") from e
        self._lock = threading.RLock()
        self._held: deque[tuple[str, tuple | dict]] = deque()
        self.held_dropped = 0
        self.write_error: str | None = None
        self.held_since: float | None = None  # time.time() of the first held write
        with self._lock:
            self._migrate()

    def _migrate(self) -> None:
        apply_migrations(self._db, self.COMPONENT, self.MIGRATIONS)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def use_small_cache(self) -> None:
        """Give this connection a small page cache (:data:`SMALL_CACHE_PRAGMA`); for
        readers that read little and often, like the API."""
        with self._lock:
            self._db.execute(SMALL_CACHE_PRAGMA)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error: the write
        lock is taken at BEGIN, so a read-then-write inside cannot race."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _q(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _x(self, sql: str, params: tuple | dict = ()) -> int:
        """Execute one statement; returns the last row id (0 when none)."""
        with self._lock:
            return self._db.execute(sql, params).lastrowid or 0

    # ------------------------------------------------------------------ held writes

    def _w(self, sql: str, params: tuple | dict = ()) -> int | None:
        """Write one statement, or hold it in memory when the file cannot be
        written (disk full, read-only, I/O error; :func:`is_storage_error`).

        Held writes keep their order: while any are held, new ones queue behind
        them (after one attempt to write the queue out). At most
        :data:`HELD_WRITES_MAX` are held; beyond that the oldest are dropped and
        counted in ``held_dropped``. Nothing already in the file is touched, so
        a full disk never corrupts what was recorded (SQLite rolls the failed
        statement back).

        Returns:
            int | None: the row id (0 when none), or None when the write was held.
        Raises:
            sqlite3.Error: any other error (a bug, not the disk).
        """
        with self._lock:
            if self._held and not self._flush_locked():
                self._hold(sql, params, None)
                return None
            try:
                return self._db.execute(sql, params).lastrowid or 0
            except sqlite3.OperationalError as e:
                if not is_storage_error(e):
                    raise
                self._hold(sql, params, e)
                return None

    def _hold(self, sql: str, params: tuple | dict, e: BaseException | None) -> None:
        if e is not None:
            self.write_error = str(e)
        if self.held_since is None:
            self.held_since = time.time()
            log.error("%s: cannot write (%s); holding writes in memory until it can", self.path, self.write_error)
        if len(self._held) >= HELD_WRITES_MAX:
            self._held.popleft()
            self.held_dropped += 1
        self._held.append((sql, params))

    def _flush_locked(self) -> bool:
        while self._held:
            sql, params = self._held[0]
            try:
                self._db.execute(sql, params)
            except sqlite3.OperationalError as e:
                if not is_storage_error(e):
                    log.error("%s: dropping a held write that fails: %s", self.path, e)
                    self._held.popleft()
                    continue
                self.write_error = str(e)
                return False
            except sqlite3.Error as e:  # e.g. a constraint: the write can never succeed
                log.error("%s: dropping a held write that fails: %s", self.path, e)
                self._held.popleft()
                continue
            self._held.popleft()
        if self.held_since is not None:
            log.warning("%s: writable again; held writes recorded", self.path)
        self.write_error, self.held_since = None, None
        return True

    def flush_held(self) -> bool:
        """Write out held writes, in order. Returns True when none are left."""
        with self._lock:
            return self._flush_locked() if self._held else True

    def writes_held(self) -> bool:
        """True while writes wait in memory for the file to be writable."""
        return bool(self._held)

    @property
    def held_count(self) -> int:
        """Writes waiting in memory for the file to be writable again."""
        return len(self._held)
