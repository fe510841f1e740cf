"""Growth rate, ETA, the P2 trend drift, churn and downsampling (reconcile/trends.py), no engine."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from dockwarden.config import Policy
from dockwarden.config_storage import StoragePolicy
from dockwarden.model import DriftKind, Priority
from dockwarden.reconcile.assess import priority_of
from dockwarden.reconcile.trends import (
    Sample, churn, disk_trend, eta_s, growth, least_squares, samples_to_delete, trend_drift,
)
from dockwarden.reconcile.usage import ImageUsage

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc)
GiB = 1024 ** 3
MiB = 1024 ** 2
TOTAL = 100 * GiB  # used + free = 100 GiB, so 1 GiB = 1 %
POLICY = Policy()


def series(n: int, step_s: float, start_used: float, rate_per_s: float, noise: float = 0.0,
           seed: int = 42) -> list[Sample]:
    """n samples ending at NOW, step_s apart, used = start + rate * t (+ uniform noise)."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        t = (k - (n - 1)) * step_s  # the last sample at NOW
        used = int(start_used + rate_per_s * k * step_s + (rng.uniform(-noise, noise) if noise else 0))
        out.append(Sample(NOW + timedelta(seconds=t), "/var/lib/docker", TOTAL, used, TOTAL - used,
                          reclaimable_bytes=int(GiB + 0.5 * rate_per_s * k * step_s)))
    return out


def test_least_squares_recovers_an_exact_line():
    slope, intercept, r2 = least_squares([0, 1, 2, 3], [1, 3, 5, 7])
    assert (slope, intercept, r2) == pytest.approx((2.0, 1.0, 1.0))


def test_least_squares_degenerate_inputs():
    assert least_squares([1.0], [5.0]) is None
    assert least_squares([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) is None  # all x equal
    slope, _, r2 = least_squares([0, 1, 2], [4, 4, 4])
    assert slope == 0 and r2 is None  # flat: r2 undefined


def test_steady_growth_gives_the_rate_and_the_etas():
    # 72 samples every 5 min over 6 h, from 60 GiB, growing 1 GiB/h.
    rate = GiB / 3600
    s = series(72, 300, 60 * GiB, rate)
    t = disk_trend(s, now=NOW, policy=POLICY)
    assert t is not None
    assert t.short.rate_bytes_per_s == pytest.approx(rate, rel=1e-6)
    assert t.short.points == 72 and t.short.r2 == pytest.approx(1.0)
    used_now = s[-1].used_bytes
    assert t.eta_p1_s == pytest.approx((80 * GiB - used_now) / rate, rel=1e-3)  # ~14 h to 80 %
    assert t.eta_full_s == pytest.approx((100 * GiB - used_now) / rate, rel=1e-3)
    assert "P1 (80 %) in 14 h 5 min" in t.line() and "+1.0 GiB/h (6 h)" in t.line()
    assert t.reclaimable.rate_bytes_per_s == pytest.approx(rate / 2, rel=1e-6)


def test_noisy_growth_is_still_found_within_ten_percent():
    rate = GiB / 3600
    s = series(72, 300, 50 * GiB, rate, noise=0.3 * GiB)  # +-300 MiB jitter on a 6 GiB rise
    g = growth(s, now=NOW, window_s=6 * 3600, min_points=4, min_span_s=1800)
    assert g.rate_bytes_per_s == pytest.approx(rate, rel=0.1)
    assert 0.5 < g.r2 < 1.0


def test_shrinking_disk_has_no_eta_and_no_finding():
    s = series(48, 300, 75 * GiB, -GiB / 3600)
    t = disk_trend(s, now=NOW, policy=POLICY)
    assert t.short.rate_bytes_per_s < 0
    assert t.eta_p1_s is None and t.eta_full_s is None
    assert "not growing toward P1" in t.line()
    assert trend_drift(t, POLICY) is None


def test_too_few_points_give_no_rate_and_say_why():
    s = series(3, 300, 60 * GiB, GiB / 60)  # growing fast, but only 3 points
    t = disk_trend(s, now=NOW, policy=POLICY)
    assert t.short.rate_bytes_per_s is None and t.short.reason == "3 points < 4"
    assert t.eta_p1_s is None and "no ETA yet" in t.line()
    assert trend_drift(t, POLICY) is None
    assert disk_trend([], now=NOW, policy=POLICY) is None


def test_a_short_burst_is_not_a_trend():
    s = series(10, 60, 70 * GiB, GiB / 600)  # 10 points over 9 minutes
    g = growth(s, now=NOW, window_s=6 * 3600, min_points=4, min_span_s=1800)
    assert g.rate_bytes_per_s is None and g.reason.startswith("span 9 min")


def test_the_long_window_stands_in_when_the_short_one_is_thin():
    # Hourly samples over 24 h: only 5 fall in the last 6 h, fewer than min_points=8.
    pol = Policy(storage=StoragePolicy(trend_min_points=8))
    s = series(24, 3600, 50 * GiB, GiB / 3600)
    t = disk_trend(s, now=NOW, policy=pol)
    assert t.short.rate_bytes_per_s is None and t.long.rate_bytes_per_s == pytest.approx(GiB / 3600)
    assert t.eta_p1_s is not None


def test_eta_rules():
    assert eta_s(50, 80, 10) == 3.0
    assert eta_s(90, 80, 10) == 0.0  # already past
    assert eta_s(50, 80, 0) is None and eta_s(50, 80, -1) is None and eta_s(50, 80, None) is None


def test_eta_under_a_day_raises_the_p2_trend_drift():
    s = series(72, 300, 66 * GiB, GiB / 3600)  # 72 % now, +1 %/h: P1 in ~8 h
    t = disk_trend(s, now=NOW, policy=POLICY)
    d = trend_drift(t, POLICY)
    assert d is not None and d.kind is DriftKind.RESOURCE_PRESSURE
    assert d.subject == "host:disk-trend:/var/lib/docker"
    assert d.details["level"] == "trend" and d.details["priority"] == "P2"
    assert "P1 (80%) in 8 h" in d.reason
    # The same growth from a lower start: P1 is more than a day away, no finding.
    far = disk_trend(series(72, 300, 20 * GiB, GiB / 3600), now=NOW, policy=POLICY)
    assert far.eta_p1_s > 86400 and trend_drift(far, POLICY) is None


def test_no_trend_drift_once_above_p1():
    t = disk_trend(series(72, 300, 80 * GiB, GiB / 3600), now=NOW, policy=POLICY)
    assert t.percent > 80 and t.eta_p1_s == 0.0
    assert trend_drift(t, POLICY) is None  # the P1 disk drift speaks then
    assert "above P1" in t.line()


def test_trend_drift_is_assessed_p2():
    d = trend_drift(disk_trend(series(72, 300, 66 * GiB, GiB / 3600), now=NOW, policy=POLICY), POLICY)
    assert priority_of(d) is Priority.P2


def test_churn_counts_rebuilds_today_and_names_dangling_repositories():
    day = datetime(2026, 11, 21, tzinfo=timezone.utc)
    seen = [(f"sha256:web{k}", "app/web", day + timedelta(hours=k)) for k in range(5)]
    seen += [("sha256:old", "app/web", day - timedelta(days=2)), ("sha256:db1", "app/db", day)]
    images = [
        ImageUsage("sha256:web4", tags=("app/web:latest",), size_bytes=100, shared_bytes=0),
        ImageUsage("sha256:web1", size_bytes=3 * GiB, shared_bytes=0),  # dangling now: its tag moved on
        ImageUsage("sha256:web2", size_bytes=2 * GiB, shared_bytes=GiB),
        ImageUsage("sha256:zzz", size_bytes=MiB, shared_bytes=0),  # never seen tagged
        ImageUsage("sha256:used", size_bytes=MiB, shared_bytes=0, containers=1),  # dangling but used
    ]
    c = churn(seen, images, day_start=day)
    assert [x.repository for x in c] == ["app/web", "<unknown>"]
    web = c[0]
    assert (web.created, web.dangling_count, web.dangling_bytes) == (5, 2, 4 * GiB)
    assert web.line() == "app/web: rebuilt 5 times today, 4.0 GiB dangling (2 images)"
    assert c[1].line() == "<unknown>: 1.0 MiB dangling (1 image)"


def test_retention_and_downsampling():
    rows = []
    rid = 0
    for hours_ago in (24 * 31, 24 * 30 + 1):  # past the 30-day retention
        rid += 1
        rows.append((rid, "/", NOW - timedelta(hours=hours_ago)))
    bucket = datetime(2026, 11, 10, 5, 0, tzinfo=timezone.utc)  # 11 days ago: downsampled
    for minute in (0, 10, 20, 50):
        rid += 1
        rows.append((rid, "/", bucket + timedelta(minutes=minute)))
    rows.append((100, "/other", bucket + timedelta(minutes=5)))  # another path keeps its own
    rows.append((101, "/", NOW - timedelta(hours=3)))  # recent: full resolution
    rows.append((102, "/", NOW - timedelta(hours=3, minutes=5)))
    drop = samples_to_delete(rows, now=NOW, retention_s=30 * 86400, full_resolution_s=2 * 86400,
                             interval_s=3600)
    assert drop == [1, 2, 3, 4, 5]  # both expired, and all but the newest (:50) of the bucket
