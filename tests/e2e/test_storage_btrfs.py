"""Issue 3 on real btrfs: a second dockerd with ``--storage-driver btrfs`` on a
loop-mounted btrfs file system; dockwarden pointed at it reports the btrfs
breakdown, and without btrfs-progs on PATH says so and still succeeds."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pytest

from conftest import IMAGE, RUN_ID
from storage_helpers import MiB, LoopEngine, docker_system_df, run, within
from test_storage import _write_in, dockwarden


@pytest.fixture
def btrfs_engine(docker_client):
    missing = [t for t in ("nsenter", "ip", "mkfs.btrfs", "btrfs", "losetup", "mount") if not shutil.which(t)]
    if os.geteuid() != 0 or missing:
        pytest.fail(f"this test needs root and {missing or 'these tools'} (apt-get install btrfs-progs; make test)")
    eng = LoopEngine(f"dwt-{RUN_ID}-b{uuid.uuid4().hex[:3]}", "btrfs", "2G", quota=True)
    try:
        yield eng.start()
    finally:
        eng.close()


def test_btrfs_breakdown_and_graceful_without_btrfs_progs(btrfs_engine, tmp_path):
    c = btrfs_engine.client()
    _write_in(c, "writer", "dd if=/dev/urandom of=/big bs=1M count=20 && sync")
    run("btrfs", "filesystem", "sync", str(btrfs_engine.mnt))  # commit: data and qgroups are counted
    state = tmp_path / "state"

    r = dockwarden("storage", "--json", host=btrfs_engine.host, state=state)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert data["driver"] == "btrfs" and data["root_dir"] == str(btrfs_engine.data_root)
    assert data["filesystem"]["fstype"] == "btrfs"
    b = data["btrfs"]
    assert b["available"] is True and b["reason"] is None
    assert {"data", "metadata", "system"} <= set(b["profiles"])
    assert b["profiles"]["data"]["used_bytes"] >= 20 * MiB  # the container's 20 MB is data
    assert b["device_size_bytes"] == 2 * 1024 ** 3 and b["device_unallocated_bytes"] > 0
    # Image layers and containers are subvolumes; with quotas on, each has exclusive bytes.
    assert b["subvolume_count"] >= 3
    assert b["exclusive_available"] is True
    assert all(isinstance(s["exclusive_bytes"], int) and isinstance(s["referenced_bytes"], int)
               for s in b["subvolumes"])
    assert max(s["exclusive_bytes"] for s in b["subvolumes"]) >= 20 * MiB  # the writer's rw layer
    assert "copy-on-write" in b["caveat"]
    # The Docker figures still agree with docker system df on btrfs.
    theirs = docker_system_df(btrfs_engine.host)
    assert within(data["containers"]["bytes"], theirs["Containers"]["bytes"])
    assert within(data["images"]["bytes"], theirs["Images"]["bytes"])

    r = dockwarden("storage", host=btrfs_engine.host, state=state)
    assert r.returncode == 0 and "btrfs: data " in r.stdout and "subvolumes" in r.stdout, r.stdout

    # No btrfs-progs on PATH: unavailable, with the reason; everything else still there.
    r = dockwarden("storage", "--json", host=btrfs_engine.host, state=state,
                   extra_env={"PATH": str(tmp_path / "empty-bin")})
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert data["btrfs"]["available"] is False
    assert data["btrfs"]["reason"] == "btrfs-progs not installed (no `btrfs` on PATH)"
    assert data["driver"] == "btrfs" and data["images"]["count"] >= 1 and data["filesystem"]["fstype"] == "btrfs"
    assert IMAGE in [i["name"] for i in data["top"]["images"]]
