"""The SQLite plumbing every store of dockwarden shares.

All of dockwarden's tables live in one file, ``<state-dir>/dockwarden.db``, in
WAL mode so the CLI can read and write while the daemon runs. The core store
(:mod:`dockwarden.store`) and each feature (incidents, the notification outbox,
storage samples, the container pool) sit on :class:`FeatureDB`: one connection,
one lock, migrations applied on open. SQL always takes parameters.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dockwarden.private import private_opener, secure_state_dir


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
    """
    os.close(private_opener(path, os.O_RDWR | os.O_CREAT))
    db = sqlite3.connect(str(path), timeout=15, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


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
        with self._lock:
            self._migrate()

    def _migrate(self) -> None:
        apply_migrations(self._db, self.COMPONENT, self.MIGRATIONS)

    def close(self) -> None:
        with self._lock:
            self._db.close()

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
