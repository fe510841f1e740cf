"""What the recipe is planned from, without an engine: ``GET /system/df`` parsing and
its ``docker system df`` totals, btrfs-progs output, and housekeeping facts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from builders import NOW
from dockwarden.config_storage import HousekeepingPolicy
from dockwarden.model import DriftKind, Priority
from dockwarden.observe.storage import btrfs_report, parse_btrfs_df, parse_btrfs_usage, parse_df, parse_subvolumes
from dockwarden.reconcile.assess import priority_of
from dockwarden.reconcile.housekeeping import (
    LockProbe, WorktreeProbe, housekeeping_drifts, stale_locks, stale_worktrees,
)
from dockwarden.reconcile.usage import StorageReport, human_bytes, human_duration
from dockwarden.storage import housekeeping as hk

# Shaped like Engine 20.10's GET /system/df (fields omitted when zero, as it does).
DF = {
    "LayersSize": 1000,
    "Images": [
        {"Id": "sha256:aa", "RepoTags": ["app:1"], "Size": 600, "SharedSize": 100, "Containers": 1, "Created": 1795256581},
        {"Id": "sha256:bb", "RepoTags": ["<none>:<none>"], "RepoDigests": ["<none>@<none>"], "Size": 300,
         "SharedSize": 100, "Containers": 0},
        {"Id": "sha256:cc", "RepoTags": None, "Size": 200, "SharedSize": -1, "Containers": 0},
    ],
    "Containers": [
        {"Id": "c1", "Names": ["/web"], "ImageID": "sha256:aa", "State": "running", "SizeRw": 50},
        {"Id": "c2", "Names": ["/old"], "ImageID": "sha256:aa", "State": "exited", "SizeRw": 70},
        {"Id": "c3", "Names": ["/paused"], "ImageID": "sha256:aa", "State": "paused"},
    ],
    "Volumes": [
        {"Name": "v1", "Driver": "local", "UsageData": {"Size": 400, "RefCount": 0}},
        {"Name": "v2", "Driver": "local", "UsageData": {"Size": 100, "RefCount": 2}},
        {"Name": "v3", "Driver": "local", "UsageData": {"Size": -1, "RefCount": 0}},
    ],
    "BuildCache": [
        {"ID": "b1", "Type": "regular", "Size": 30, "InUse": False, "Shared": False},
        {"ID": "b2", "Type": "regular", "Size": 20, "InUse": True, "Shared": False},
        {"ID": "b3", "Type": "regular", "Size": 10, "InUse": True, "Shared": True},
    ],
    "BuilderSize": 60,
}

BTRFS_DF = """Data, single: total=8388608, used=5242880
System, DUP: total=8388608, used=16384
Metadata, DUP: total=53673984, used=163840
GlobalReserve, single: total=5767168, used=0
"""
BTRFS_USAGE = """Overall:
    Device size:\t\t        1073741824
    Device allocated:\t\t         132513792
    Device unallocated:\t\t         941228032
    Used:\t\t\t           5603328
    Free (estimated):\t\t         944373760\t(min: 473759744)
"""
SUBVOLS = "ID 256 gen 7 top level 5 path sv1\nID 257 gen 9 top level 5 path docker/btrfs/subvolumes/abc\n"
QGROUPS = """Qgroupid    Referenced    Exclusive   Path
--------    ----------    ---------   ----
0/5              16384        16384   <toplevel>
0/256          5259264        16384   sv1
0/257          5259264       524288   docker/btrfs/subvolumes/abc
"""


def report() -> StorageReport:
    return StorageReport(NOW, "overlay2", "/var/lib/docker", **parse_df(DF))


def test_df_totals_follow_docker_system_df():
    r = report()
    # images: LayersSize; reclaimable = LayersSize - (Size - SharedSize) of used images
    assert r.image_totals().to_json() == {"count": 3, "active": 1, "bytes": 1000, "reclaimable_bytes": 500}
    # containers: sum SizeRw; reclaimable = not running/paused/restarting
    assert r.container_totals().to_json() == {"count": 3, "active": 2, "bytes": 120, "reclaimable_bytes": 70}
    # volumes: unknown sizes (-1) skipped; reclaimable = RefCount 0
    assert r.volume_totals().to_json() == {"count": 3, "active": 1, "bytes": 500, "reclaimable_bytes": 400}
    # build cache: BuilderSize minus in-use, unshared records
    assert r.cache_totals().to_json() == {"count": 3, "active": 2, "bytes": 60, "reclaimable_bytes": 40}
    assert r.dangling() == (2, 200 + 200)  # <none>:<none> and no tags; unknown SharedSize -> whole size
    assert r.reclaimable_bytes() == 500 + 70 + 40  # volumes are never counted as reclaimable by us


def test_df_json_has_the_documented_shape():
    data = report().to_json(top_n=2)
    for key in ("images", "containers", "volumes", "build_cache"):
        assert set(data[key]) >= {"count", "bytes", "reclaimable_bytes"}
    assert data["driver"] == "overlay2" and data["root_dir"] == "/var/lib/docker"
    assert "filesystem" in data and data["filesystem"] is None
    assert [i["name"] for i in data["top"]["images"]] == ["app:1", "<none>@bb"]
    assert data["top"]["volumes"][0] == {"name": "v1", "bytes": 400, "ref_count": 0}
    assert data["btrfs"]["available"] is False


def test_btrfs_outputs_parse():
    assert parse_btrfs_df(BTRFS_DF) == {
        "data": {"total_bytes": 8388608, "used_bytes": 5242880},
        "system": {"total_bytes": 8388608, "used_bytes": 16384},
        "metadata": {"total_bytes": 53673984, "used_bytes": 163840},
        "globalreserve": {"total_bytes": 5767168, "used_bytes": 0},
    }
    assert parse_btrfs_usage(BTRFS_USAGE) == {
        "device_size_bytes": 1073741824, "device_allocated_bytes": 132513792,
        "device_unallocated_bytes": 941228032, "free_estimated_bytes": 944373760}
    subs = parse_subvolumes(SUBVOLS, QGROUPS)
    assert [(s.id, s.path, s.referenced_bytes, s.exclusive_bytes) for s in subs] == [
        (256, "sv1", 5259264, 16384), (257, "docker/btrfs/subvolumes/abc", 5259264, 524288)]
    assert parse_subvolumes(SUBVOLS, None)[0].exclusive_bytes is None


def test_btrfs_report_says_why_it_is_unavailable(tmp_path: Path):
    r = btrfs_report(str(tmp_path), driver="overlay2", fstype="ext4")
    assert not r.available and r.reason == "storage driver is overlay2 on ext4, not btrfs"
    r = btrfs_report(str(tmp_path), driver="btrfs", fstype="btrfs", which=lambda name: None)
    assert not r.available and r.reason == "btrfs-progs not installed (no `btrfs` on PATH)"
    r = btrfs_report("/nonexistent/docker", driver="btrfs", fstype=None)
    assert not r.available and "is not on this host" in r.reason


def test_housekeeping_rules():
    locks = [LockProbe("/run/x/a.lock", 60, 123, False), LockProbe("/run/x/b.lock", 60, 1, True),
             LockProbe("/run/x/c.lock", 9000, None, None), LockProbe("/run/x/d.lock", 9000, 1, True)]
    stale = stale_locks(locks, ttl_s=7200)
    assert [(s.path, s.why) for s in stale] == [
        ("/run/x/a.lock", "PID 123 is dead"), ("/run/x/c.lock", "older than 2 h (2 h 30 min)"),
        ("/run/x/d.lock", "older than 2 h (2 h 30 min)")]
    trees = [WorktreeProbe("/srv/w/old", 9000), WorktreeProbe("/srv/w/busy", 9000, (42,)),
             WorktreeProbe("/srv/w/new", 60)]
    assert [s.path for s in stale_worktrees(trees, ttl_s=7200)] == ["/srv/w/old"]
    drifts = housekeeping_drifts(stale + stale_worktrees(trees, 7200))
    assert [d.subject for d in drifts] == ["host:housekeeping:locks", "host:housekeeping:worktrees"]
    assert all(d.kind is DriftKind.HOUSEKEEPING and priority_of(d) is Priority.P4 for d in drifts)
    assert drifts[0].reason.startswith("3 stale lock files: /run/x/a.lock (PID 123 is dead)")
    assert drifts[0].details["count"] == 3


def test_housekeeping_globs_must_be_absolute_and_deep():
    with pytest.raises(ValueError):
        HousekeepingPolicy(worktree_globs=["worktrees/*"])
    with pytest.raises(ValueError):
        HousekeepingPolicy(worktree_globs=["/*"])
    assert HousekeepingPolicy(lock_globs=["/var/lock/*.lock"]).lock_globs == ["/var/lock/*.lock"]


def test_housekeeping_probes_and_removal_on_real_files(tmp_path: Path):
    locks = tmp_path / "locks"
    locks.mkdir()
    dead = locks / "dead.lock"
    dead.write_text("pid=999999999\n")  # beyond any PID
    mine = locks / "mine.lock"
    mine.write_text(str(os.getpid()))
    trees = tmp_path / "trees"
    (trees / "old").mkdir(parents=True)
    (trees / "old" / "file").write_text("x")
    old_ts = time.time() - 10_000
    for p in (trees / "old" / "file", trees / "old"):
        os.utime(p, (old_ts, old_ts))
    (trees / "new").mkdir()
    now = time.time()
    lp = hk.probe_locks([str(locks / "*.lock")], now)
    assert {(Path(p.path).name, p.pid_alive) for p in lp} == {("dead.lock", False), ("mine.lock", True)}
    wp = hk.probe_worktrees([str(trees / "*")], now, ttl_s=7200)
    stale = stale_locks(lp, 7200) + stale_worktrees(wp, 7200)
    assert sorted(Path(s.path).name for s in stale) == ["dead.lock", "old"]
    # Removal of locks only when enabled; worktrees left alone here.
    done = hk.remove_stale(stale, locks=True, worktrees=False, now_ts=now, lock_ttl_s=7200, worktree_ttl_s=7200)
    assert [(Path(r.item.path).name, r.ok) for r in done] == [("dead.lock", True)]
    assert not dead.exists() and mine.exists() and (trees / "old").exists()
    # A protected directory is never removed, even when stale.
    done = hk.remove_stale(stale_worktrees(wp, 7200), locks=False, worktrees=True, now_ts=now, lock_ttl_s=7200,
                           worktree_ttl_s=7200, protected=[str(trees / "old")])
    assert not done[0].ok and "protected" in done[0].error and (trees / "old").exists()
    done = hk.remove_stale(stale_worktrees(wp, 7200), locks=False, worktrees=True, now_ts=now, lock_ttl_s=7200,
                           worktree_ttl_s=7200)
    assert done[0].ok and not (trees / "old").exists() and (trees / "new").exists()


def test_humanised_figures():
    assert [human_bytes(n) for n in (0, 512, 1536, 1024 ** 3 - 1, 5 * 1024 ** 4)] == [
        "0 B", "512 B", "1.5 KiB", "1.0 GiB", "5.0 TiB"]
    assert [human_duration(s) for s in (None, 45, 720, 19200, 3 * 86400 + 4 * 3600)] == [
        "-", "45 s", "12 min", "5 h 20 min", "3 d 4 h"]
