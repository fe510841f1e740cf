"""Disk trends: growth rate, ETA to the P1 threshold and to full, churn, downsampling.

Pure: no I/O, no clock (``now`` is a parameter). The storage worker stores one
:class:`Sample` per storage pass in SQLite and asks this module what they mean.

* Growth rate: ordinary least squares of used bytes over time within a window
  (issue 3: the last 6 h and 24 h), in bytes per second. A fit needs
  ``storage.trend_min_points`` samples spanning ``storage.trend_min_span_s``;
  otherwise the rate is None and ``reason`` says why.
* ETA: ``(target - used_now) / rate`` for a growing disk; None when it is flat
  or shrinking; 0 when the target is already reached. The short window's rate
  is used (it reacts to a new trend within hours), the long one when the short
  one has too few points.
* A P2 finding when the ETA to P1 is below ``storage.eta_warn_s`` (24 h) while
  the disk is still below P1 (issue 3: "escalate before the threshold").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from dockwarden.config import Policy
from dockwarden.model import Drift, DriftKind
from dockwarden.reconcile.usage import ImageUsage, human_bytes, human_duration

#: Subject prefix of the trend drift: ``host:disk-trend:<path>`` (one per filesystem).
TREND_SUBJECT = "host:disk-trend:"


@dataclass(frozen=True)
class Sample:
    """One storage sample of the filesystem holding the Docker root dir.

    ``used_bytes`` and ``free_bytes`` are psutil's (free = available to
    unprivileged users), so ``used / (used + free)`` is the percent the
    thresholds compare. ``reclaimable_bytes`` is the Docker reclaimable total
    (images, containers, build cache), None when the engine was not reachable.
    """

    ts: datetime
    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    reclaimable_bytes: int | None = None

    @property
    def percent(self) -> float:
        room = self.used_bytes + self.free_bytes
        return 100.0 * self.used_bytes / room if room > 0 else 0.0


@dataclass(frozen=True)
class Growth:
    """A least-squares growth rate over one window.

    ``rate_bytes_per_s`` is None when the window has too few points or too short
    a span (``reason`` says which). ``r2`` is the coefficient of determination
    (1 = a straight line; None when every value is equal).
    """

    window_s: float
    points: int
    span_s: float
    rate_bytes_per_s: float | None
    r2: float | None = None
    reason: str | None = None

    def per_hour(self) -> float | None:
        return None if self.rate_bytes_per_s is None else self.rate_bytes_per_s * 3600.0

    def label(self) -> str:
        """``+1.2 GiB/h (6 h)`` or ``n/a (6 h: 2 points < 4)``."""
        w = human_duration(self.window_s)
        if self.rate_bytes_per_s is None:
            return f"n/a ({w}: {self.reason})"
        ph = self.per_hour() or 0.0
        return f"{'+' if ph >= 0 else ''}{human_bytes(ph)}/h ({w})"


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float | None] | None:
    """Ordinary least squares line through points.

    Args:
        xs: abscissae (e.g. seconds), at least two distinct values.
        ys: ordinates, same length.
    Returns:
        (slope, intercept, r2) or None when fewer than two points or all xs equal.
        ``r2`` is None when all ys are equal (a flat line fits, r2 undefined).
    """
    n = len(xs)
    if n < 2 or n != len(ys):
        return None
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    slope = sxy / sxx
    intercept = my - slope * mx
    syy = sum((y - my) ** 2 for y in ys)
    if syy == 0:
        return slope, intercept, None
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys))
    return slope, intercept, 1.0 - ss_res / syy


def growth(samples: Iterable[Sample], *, now: datetime, window_s: float, min_points: int,
           min_span_s: float, value: Callable[[Sample], float | None] = lambda s: s.used_bytes) -> Growth:
    """Growth rate of ``value`` over the samples in ``(now - window_s, now]``.

    Args:
        samples: any order; those outside the window or with a None value are ignored.
        now: aware UTC end of the window.
        window_s: window length, seconds.
        min_points: fewer samples give no rate.
        min_span_s: samples spanning less time give no rate.
        value: what to fit (default used bytes).
    Returns:
        Growth: rate in units of ``value`` per second.
    """
    start = now - timedelta(seconds=window_s)
    pts = sorted((s.ts, v) for s in samples if start < s.ts <= now and (v := value(s)) is not None)
    span = (pts[-1][0] - pts[0][0]).total_seconds() if pts else 0.0
    if len(pts) < min_points:
        return Growth(window_s, len(pts), span, None,
                      reason=f"{len(pts)} point{'' if len(pts) == 1 else 's'} < {min_points}")
    if span < min_span_s:
        return Growth(window_s, len(pts), span, None,
                      reason=f"span {human_duration(span)} < {human_duration(min_span_s)}")
    t0 = pts[0][0]
    fit = least_squares([(t - t0).total_seconds() for t, _ in pts], [float(v) for _, v in pts])
    if fit is None:  # pragma: no cover - span > 0 guarantees distinct xs
        return Growth(window_s, len(pts), span, None, reason="degenerate fit")
    slope, _, r2 = fit
    return Growth(window_s, len(pts), span, slope, r2)


def eta_s(current: float, target: float, rate_per_s: float | None) -> float | None:
    """Seconds until ``current`` reaches ``target`` at ``rate_per_s``.

    Returns:
        0.0 when already at or past the target; None when the rate is unknown,
        zero or negative (flat or shrinking: never); else (target - current) / rate.
    """
    if current >= target:
        return 0.0
    if rate_per_s is None or rate_per_s <= 0:
        return None
    return (target - current) / rate_per_s


@dataclass(frozen=True)
class DiskTrend:
    """Where one filesystem is heading.

    ``p1_used_bytes`` is the used bytes at which the filesystem crosses
    ``thresholds.disk_critical_percent``; ``eta_p1_s``/``eta_full_s`` are
    seconds from ``observed_at`` (None: not growing). ``reclaimable`` is the
    24 h growth of Docker's reclaimable bytes.
    """

    path: str
    observed_at: datetime
    total_bytes: int
    used_bytes: int
    free_bytes: int
    percent: float
    p1_percent: float
    p1_used_bytes: int
    short: Growth
    long: Growth
    eta_p1_s: float | None
    eta_full_s: float | None
    reclaimable: Growth

    @property
    def rate_bytes_per_s(self) -> float | None:
        """The rate the ETAs use: the short window's, else the long one's."""
        return self.short.rate_bytes_per_s if self.short.rate_bytes_per_s is not None else self.long.rate_bytes_per_s

    def line(self) -> str:
        """``disk /var/lib/docker 72.0 %: +1.2 GiB/h (6 h), +0.8 GiB/h (24 h); P1 (80 %) in 5 h 20 min, full in 19 h``."""
        head = f"disk {self.path} {self.percent:.1f} %: {self.short.label()}, {self.long.label()}"
        if self.percent > self.p1_percent:
            eta = f"above P1 ({self.p1_percent:g} %)"
        elif self.eta_p1_s is None:
            eta = "not growing toward P1" if self.rate_bytes_per_s is not None else "no ETA yet"
        else:
            eta = f"P1 ({self.p1_percent:g} %) in {human_duration(self.eta_p1_s)}"
        full = "" if self.eta_full_s is None else f", full in {human_duration(self.eta_full_s)}"
        return f"{head}; {eta}{full}"

    def to_json(self) -> dict:
        return {
            "path": self.path, "percent": round(self.percent, 2), "used_bytes": self.used_bytes,
            "free_bytes": self.free_bytes, "p1_percent": self.p1_percent, "p1_used_bytes": self.p1_used_bytes,
            "rate_6h_bytes_per_s": self.short.rate_bytes_per_s, "rate_24h_bytes_per_s": self.long.rate_bytes_per_s,
            "points_6h": self.short.points, "points_24h": self.long.points,
            "eta_p1_s": self.eta_p1_s, "eta_full_s": self.eta_full_s,
            "reclaimable_rate_24h_bytes_per_s": self.reclaimable.rate_bytes_per_s,
            "why_no_rate": self.short.reason if self.rate_bytes_per_s is None else None,
        }


def disk_trend(samples: Sequence[Sample], *, now: datetime, policy: Policy) -> DiskTrend | None:
    """The trend of the filesystem the newest sample describes.

    Args:
        samples: samples of one path (any order).
        now: aware UTC time the windows end at.
        policy: ``storage`` windows and fit limits; ``thresholds.disk_critical_percent``.
    Returns:
        DiskTrend | None: None without samples.
    """
    if not samples:
        return None
    last = max(samples, key=lambda s: s.ts)
    st = policy.storage
    crit = policy.thresholds.disk_critical_percent
    kw = dict(now=now, min_points=st.trend_min_points, min_span_s=st.trend_min_span_s)
    short = growth(samples, window_s=st.short_window_s, **kw)  # type: ignore[arg-type]
    long = growth(samples, window_s=st.long_window_s, **kw)  # type: ignore[arg-type]
    recl = growth(samples, window_s=st.long_window_s, value=lambda s: s.reclaimable_bytes, **kw)  # type: ignore[arg-type]
    room = last.used_bytes + last.free_bytes
    p1_used = int(room * crit / 100.0)
    rate = short.rate_bytes_per_s if short.rate_bytes_per_s is not None else long.rate_bytes_per_s
    eta_p1 = eta_s(last.used_bytes, p1_used, rate)
    eta_full = eta_s(last.used_bytes, room, rate)
    return DiskTrend(last.path, last.ts, last.total_bytes, last.used_bytes, last.free_bytes, last.percent,
                     crit, p1_used, short, long, eta_p1, eta_full, recl)


def trend_drift(trend: DiskTrend | None, policy: Policy) -> Drift | None:
    """The P2 "disk will reach P1 within ``storage.eta_warn_s``" drift, or None.

    Only while the disk is still at or below ``disk_critical_percent`` (above it,
    the P1 disk drift speaks). Subject ``host:disk-trend:<path>``, kind
    ``resource_pressure``, details ``resource`` "disk", ``level`` "trend",
    ``priority`` "P2" and the trend figures.
    """
    if trend is None or trend.percent > trend.p1_percent:
        return None
    if trend.eta_p1_s is None or trend.eta_p1_s >= policy.storage.eta_warn_s:
        return None
    ph = trend.rate_bytes_per_s * 3600.0 if trend.rate_bytes_per_s is not None else 0.0
    reason = (f"disk {trend.path} {trend.percent:.1f}% full and growing {human_bytes(ph)}/h: "
              f"P1 ({trend.p1_percent:g}%) in {human_duration(trend.eta_p1_s)}")
    if trend.eta_full_s is not None:
        reason += f", full in {human_duration(trend.eta_full_s)}"
    return Drift(DriftKind.RESOURCE_PRESSURE, f"{TREND_SUBJECT}{trend.path}", reason=reason,
                 details={"resource": "disk", "level": "trend", "priority": "P2", "path": trend.path,
                          **trend.to_json()})


# --------------------------------------------------------------------------- churn


@dataclass(frozen=True)
class Churn:
    """Image churn of one repository: how often it was rebuilt on one UTC day and
    how much dangling data its old builds left ("rebuilt 12 times today, 8 GB dangling")."""

    repository: str
    created: int
    dangling_count: int
    dangling_bytes: int

    def line(self) -> str:
        """``app/web: rebuilt 12 times today, 8.0 GiB dangling (11 images)``."""
        n = self.dangling_count
        dangling = f"{human_bytes(self.dangling_bytes)} dangling ({n} image{'' if n == 1 else 's'})"
        if self.created == 0:
            return f"{self.repository}: {dangling}"
        return f"{self.repository}: rebuilt {self.created} time{'' if self.created == 1 else 's'} today, {dangling}"


def churn(seen: Iterable[tuple[str, str, datetime | None]], images: Sequence[ImageUsage], *,
          day_start: datetime, top: int = 5) -> list[Churn]:
    """Images created per repository since ``day_start``, with today's dangling bytes.

    Args:
        seen: (image id, repository, created) of every image the storage worker has
            seen with a tag, including images since removed or untagged: a dangling
            image's repository is only known from when it still had its tag.
        images: the current images (for dangling count and bytes).
        day_start: aware UTC start of the day (midnight).
        top: at most this many repositories.
    Returns:
        list[Churn]: repositories rebuilt at least twice today or holding dangling
        images, most dangling bytes first, then most rebuilds.
    """
    repo_of: dict[str, str] = {}
    created: dict[str, set[str]] = {}
    for image_id, repo, ts in seen:
        repo_of.setdefault(image_id, repo)
        if ts is not None and ts >= day_start:
            created.setdefault(repo, set()).add(image_id)
    dangling: dict[str, list[int]] = {}
    for i in images:
        if i.dangling and i.containers == 0:
            repo = repo_of.get(i.id) or i.repository or "<unknown>"
            dangling.setdefault(repo, []).append(i.unique_bytes)
    out = []
    for repo in set(created) | set(dangling):
        n = len(created.get(repo, ()))
        d = dangling.get(repo, [])
        if n >= 2 or d:
            out.append(Churn(repo, n, len(d), sum(d)))
    out.sort(key=lambda c: (-c.dangling_bytes, -c.created, c.repository))
    return out[:top]


# --------------------------------------------------------------------------- retention


def samples_to_delete(rows: Iterable[tuple[int, str, datetime]], *, now: datetime, retention_s: float,
                      full_resolution_s: float, interval_s: float) -> list[int]:
    """Which stored samples retention and downsampling drop.

    Rules: samples older than ``retention_s`` go; samples younger than
    ``full_resolution_s`` all stay; in between, per path, the newest sample of each
    ``interval_s`` bucket (aligned to the epoch) stays and the others go.

    Args:
        rows: (row id, path, ts) of stored samples.
        now: aware UTC time.
    Returns:
        list[int]: row ids to delete, ascending.
    """
    drop: list[int] = []
    keep_in_bucket: dict[tuple[str, int], tuple[datetime, int]] = {}
    old = now - timedelta(seconds=retention_s)
    full = now - timedelta(seconds=full_resolution_s)
    for rid, path, ts in rows:
        if ts < old:
            drop.append(rid)
            continue
        if ts >= full:
            continue
        key = (path, int(ts.timestamp() // interval_s))
        cur = keep_in_bucket.get(key)
        if cur is None:
            keep_in_bucket[key] = (ts, rid)
        elif (ts, rid) > cur:
            drop.append(cur[1])
            keep_in_bucket[key] = (ts, rid)
        else:
            drop.append(rid)
    return sorted(drop)
