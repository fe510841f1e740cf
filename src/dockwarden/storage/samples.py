"""Storage samples and image sightings in SQLite (component ``storage``).

Tables in the shared ``<state-dir>/dockwarden.db`` (``store.apply_migrations``):

* ``storage_samples``: one row per storage pass: the filesystem of the Docker
  root dir (total, used, free bytes), Docker's categories (images, writable
  layers, volumes, build cache, reclaimable, dangling) and host figures (RAM
  available, swap used, load). Retention ``storage.retention_s`` (30 days);
  past ``storage.full_resolution_s`` one sample per ``downsample_interval_s``.
* ``storage_images_seen``: every image seen with a tag (id, repository,
  created), so that churn can name the repository of an image that is dangling
  now ("rebuilt 12 times today, 8 GB dangling").

Timestamps are RFC 3339 UTC strings; all SQL uses parameters.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dockwarden.config import Policy
from dockwarden.model import HostStats, parse_time, rfc3339
from dockwarden.reconcile.trends import Sample, samples_to_delete
from dockwarden.reconcile.usage import StorageReport
from dockwarden.db import FeatureDB

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE storage_samples (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts TEXT NOT NULL,
            path TEXT NOT NULL,
            total_bytes INTEGER NOT NULL,
            used_bytes INTEGER NOT NULL,
            free_bytes INTEGER NOT NULL,
            images_bytes INTEGER,
            containers_bytes INTEGER,
            volumes_bytes INTEGER,
            build_cache_bytes INTEGER,
            reclaimable_bytes INTEGER,
            dangling_count INTEGER,
            dangling_bytes INTEGER,
            mem_available_bytes INTEGER,
            swap_used_bytes INTEGER,
            load1 REAL
        )""",
        "CREATE INDEX storage_samples_path_ts ON storage_samples (path, ts)",
        """CREATE TABLE storage_images_seen (
            image_id TEXT PRIMARY KEY,
            repository TEXT NOT NULL,
            created TEXT,
            first_seen TEXT NOT NULL
        )""",
        "CREATE INDEX storage_images_seen_created ON storage_images_seen (created)",
    ),
}


class SampleStore(FeatureDB):
    """Storage samples in ``dockwarden.db``. Thread-safe (one lock, one
    connection, from :class:`~dockwarden.store.FeatureDB`).

    Args:
        path: ``<state-dir>/dockwarden.db`` (created with its directory).
    Raises:
        sqlite3.Error, store.StoreError: the file cannot be opened or migrated.
    """

    COMPONENT = "storage"
    MIGRATIONS = MIGRATIONS

    def add(self, report: StorageReport, host: HostStats | None) -> Sample | None:
        """Record one sample of the report's filesystem (and its images' tags).

        Returns:
            Sample | None: the sample stored; None when the report has no filesystem.
        """
        fs = report.filesystem
        if fs is not None:
            ok = report.engine_error is None
            it, ct, vt, bt = (report.image_totals(), report.container_totals(), report.volume_totals(),
                              report.cache_totals())
            dn, db = report.dangling()
            with self._lock:
                self._db.execute(
                    "INSERT INTO storage_samples (ts, path, total_bytes, used_bytes, free_bytes, images_bytes, "
                    "containers_bytes, volumes_bytes, build_cache_bytes, reclaimable_bytes, dangling_count, "
                    "dangling_bytes, mem_available_bytes, swap_used_bytes, load1) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (rfc3339(report.observed_at), fs.path, fs.total_bytes, fs.used_bytes, fs.free_bytes,
                     it.bytes if ok else None, ct.bytes if ok else None, vt.bytes if ok else None,
                     bt.bytes if ok else None, report.reclaimable_bytes() if ok else None,
                     dn if ok else None, db if ok else None,
                     host.mem_available_bytes if host else None, host.swap_used_bytes if host else None,
                     host.load1 if host else None),
                )
        self._record_images(report)
        if fs is None:
            return None
        return Sample(report.observed_at, fs.path, fs.total_bytes, fs.used_bytes, fs.free_bytes,
                      report.reclaimable_bytes() if report.engine_error is None else None)

    def _record_images(self, report: StorageReport) -> None:
        rows = [(i.id, i.repository, rfc3339(i.created), rfc3339(report.observed_at))
                for i in report.images if i.tags and i.repository]
        if not rows:
            return
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO storage_images_seen (image_id, repository, created, first_seen) "
                "VALUES (?, ?, ?, ?)", rows)

    def samples(self, path: str, since: datetime) -> list[Sample]:
        """Samples of one path at or after ``since``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, path, total_bytes, used_bytes, free_bytes, reclaimable_bytes FROM storage_samples "
                "WHERE path = ? AND ts >= ? ORDER BY ts", (path, rfc3339(since))).fetchall()
        out = []
        for r in rows:
            ts = parse_time(r["ts"])
            if ts is not None:
                out.append(Sample(ts, r["path"], r["total_bytes"], r["used_bytes"], r["free_bytes"],
                                  r["reclaimable_bytes"]))
        return out

    def latest(self, limit: int = 1) -> list[dict]:
        """The newest rows as dicts (all columns), newest first."""
        with self._lock:
            return [dict(r) for r in self._db.execute(
                "SELECT * FROM storage_samples ORDER BY ts DESC, id DESC LIMIT ?", (int(limit),)).fetchall()]

    def images_seen(self) -> list[tuple[str, str, datetime | None]]:
        """(image id, repository, created) of every image seen with a tag within the
        retention: churn counts today's builds and names the repository of images
        that are dangling now."""
        with self._lock:
            rows = self._db.execute(
                "SELECT image_id, repository, created FROM storage_images_seen").fetchall()
        return [(r["image_id"], r["repository"], parse_time(r["created"])) for r in rows]

    def apply_retention(self, now: datetime, policy: Policy) -> int:
        """Delete samples past retention and downsample old ones (trends.samples_to_delete);
        forget image sightings older than the retention. Returns rows deleted."""
        st = policy.storage
        cutoff = now - timedelta(seconds=st.full_resolution_s)
        with self._lock:
            rows = self._db.execute("SELECT id, path, ts FROM storage_samples WHERE ts < ?",
                                    (rfc3339(cutoff),)).fetchall()
        parsed = [(r["id"], r["path"], t) for r in rows if (t := parse_time(r["ts"])) is not None]
        drop = samples_to_delete(parsed, now=now, retention_s=st.retention_s,
                                 full_resolution_s=st.full_resolution_s, interval_s=st.downsample_interval_s)
        old = rfc3339(now - timedelta(seconds=st.retention_s))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM storage_samples WHERE id = ?", [(i,) for i in drop])
                self._db.execute("DELETE FROM storage_images_seen WHERE first_seen < ?", (old,))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return len(drop)
