"""Issue 3 on a real engine: `storage --json` agrees with `docker system df`, and the
tiered recipe frees space tier by tier without touching what must stay.

Both run on a private dockerd whose data root is a 1 GiB ext4 file system in a file
(storage_helpers.LoopEngine), so "the disk" is small enough to steer, and the shared
engine's images and containers are never at risk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import docker
import pytest

from conftest import IMAGE, REPO, RUN_ID, wait_for, write_inventory, write_policy
from storage_helpers import MiB, LoopEngine, docker_system_df, import_image, tar_with_file, within

NONE = {"network_mode": "none"}


def _needs_root_tools() -> None:
    missing = [t for t in ("nsenter", "ip", "mkfs.ext4", "losetup", "mount") if not shutil.which(t)]
    if os.geteuid() != 0 or missing:
        pytest.fail(f"this test needs root and {missing or 'these tools'} (make test installs them)")


@pytest.fixture
def loop_engine(docker_client):
    _needs_root_tools()
    eng = LoopEngine(f"dwt-{RUN_ID}-{uuid.uuid4().hex[:4]}", "ext4", "1G")
    try:
        yield eng.start()
    finally:
        eng.close()


def dockwarden(*args: str, host: str, state: Path, extra_env: dict | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_HOST": host, "COLUMNS": "200",
           "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "dockwarden", *args, "--state-dir", str(state)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _write_in(client: docker.DockerClient, name: str, script: str, **kw):
    """Run a busybox container that runs ``script`` and then touches /done; wait for it."""
    c = client.containers.run(IMAGE, ["sh", "-c", f"{script} && touch /done && sleep 3600"], name=name,
                              detach=True, **NONE, **kw)
    wait_for(lambda: c.exec_run(["test", "-f", "/done"]).exit_code == 0, 60, 0.3, what=f"{name} to write")
    return c


def test_storage_json_agrees_with_docker_system_df(loop_engine, tmp_path):
    c = loop_engine.client()
    # Dangling images: the same tag imported twice leaves the first untagged.
    import_image(c, "dwt/dangle:v1", 8 * MiB)
    import_image(c, "dwt/dangle:v1", 9 * MiB)
    # A running container with a large writable layer and a volume it uses.
    _write_in(c, "big", "dd if=/dev/urandom of=/big bs=1M count=50 && dd if=/dev/urandom of=/live/f bs=1M count=3",
              volumes={"dwt-live": {"bind": "/live", "mode": "rw"}})
    # A stopped container with a writable layer (reclaimable), a volume nobody uses.
    small = _write_in(c, "small", "dd if=/dev/urandom of=/small bs=1M count=5")
    small.kill()
    c.containers.run(IMAGE, ["sh", "-c", "dd if=/dev/urandom of=/data/f bs=1M count=20"], remove=True,
                     volumes={"dwt-data": {"bind": "/data", "mode": "rw"}}, **NONE)

    r = dockwarden("storage", "--json", host=loop_engine.host, state=tmp_path / "state")
    assert r.returncode == 0, r.stdout + r.stderr
    ours = json.loads(r.stdout)
    theirs = docker_system_df(loop_engine.host)
    for key, typ in (("images", "Images"), ("containers", "Containers"), ("volumes", "Local Volumes"),
                     ("build_cache", "Build Cache")):
        o, t = ours[key], theirs[typ]
        assert (o["count"], o["active"]) == (t["count"], t["active"]), (key, o, t)
        assert within(o["bytes"], t["bytes"]), (key, "bytes", o, t)
        assert within(o["reclaimable_bytes"], t["reclaimable_bytes"]), (key, "reclaimable", o, t)
    # What was made is where it should be.
    assert ours["images"]["count"] == 3 and ours["images"]["dangling_count"] == 1
    assert 8 * MiB <= ours["images"]["dangling_bytes"] < 9 * MiB
    assert ours["containers"]["bytes"] >= 55 * MiB and ours["containers"]["reclaimable_bytes"] >= 5 * MiB
    assert ours["volumes"]["bytes"] >= 23 * MiB and ours["volumes"]["reclaimable_bytes"] >= 20 * MiB
    assert ours["top"]["containers"][0]["name"] == "big"
    assert ours["driver"] == "overlay2" and ours["root_dir"] == str(loop_engine.data_root)
    fs = ours["filesystem"]
    # dockerd bind-mounts its root dir onto itself, so the mount point may be either.
    assert fs["fstype"] == "ext4" and fs["device"].startswith("/dev/loop")
    assert fs["mount_point"] in (str(loop_engine.mnt), str(loop_engine.data_root))
    assert within(fs["used_bytes"], loop_engine.used_bytes(), 0.02)
    assert ours["btrfs"]["available"] is False and "not btrfs" in ours["btrfs"]["reason"]
    # The table for people.
    r = dockwarden("storage", host=loop_engine.host, state=tmp_path / "state")
    assert r.returncode == 0 and "dangling images: 1" in r.stdout and "largest writable layers: big" in r.stdout


def _images(c: docker.DockerClient) -> set[str]:
    return {t for i in c.images.list(all=True) for t in (i.tags or [i.id])}


def _recipe_host(eng: LoopEngine, tmp_path: Path) -> SimpleNamespace:
    """Something for every tier, and things that must stay, on the private engine:
    a dangling 40 MiB image (tier 1), an untracked stopped container with a 50 MB
    writable layer (tier 2), unused images (tier 3); a running tracked service, an
    intent-stopped service whose container is gone but whose spec is recorded, an
    intent-stopped service with a stopped container, and a 30 MB volume nobody uses."""
    from dockwarden.model import Intent, IntentSource, utcnow
    from dockwarden.store import Store

    c = eng.client()
    import_image(c, "dwt/dangle:v1", 40 * MiB)
    dangling_id = c.images.get("dwt/dangle:v1").id
    import_image(c, "dwt/dangle:v1", 40 * MiB)            # tier 1: the first one is dangling now
    import_image(c, "dwt/junkimg:v1", 20 * MiB)           # tier 3 once tier 2 removed its container
    import_image(c, "dwt/unused:v1", 30 * MiB)            # tier 3
    import_image(c, "dwt/keep:v1", 30 * MiB)              # recorded spec of an intent-stopped service
    import_image(c, "dwt/stopped:v1", 5 * MiB)            # a stopped, intent-stopped service's container
    c.containers.run(IMAGE, ["sleep", "3600"], name="app", detach=True, **NONE)
    junk = c.containers.create("dwt/junkimg:v1", ["/bin/sh"], name="junk", **NONE)
    junk.put_archive("/", tar_with_file(50 * MiB, "junkdata"))  # its writable layer
    c.containers.create("dwt/stopped:v1", ["/bin/sh"], name="sleeper", **NONE)
    c.containers.run(IMAGE, ["sh", "-c", "dd if=/dev/urandom of=/data/f bs=1M count=30"], remove=True,
                     volumes={"dwt-data": {"bind": "/data", "mode": "rw"}}, **NONE)
    state = tmp_path / "state"
    store = Store(state / "dockwarden.db")
    store.put_spec("keeper", "keeper", {"image": "dwt/keep:v1", "name": "keeper"}, utcnow())
    store.set_intent("keeper", Intent.STOPPED, IntentSource.CLI, utcnow(), "test")
    store.set_intent("sleeper", Intent.STOPPED, IntentSource.CLI, utcnow(), "test")
    store.close()
    inv = write_inventory(tmp_path / "inv", [{"name": "app"}, {"name": "keeper"}, {"name": "sleeper"}])
    return SimpleNamespace(c=c, state=state, inv=inv, dangling_id=dangling_id, before=_images(c),
                           subject=f"host:storage:{eng.data_root}")


def _must_stay(h: SimpleNamespace) -> None:
    imgs = _images(h.c)
    assert {"dwt/keep:v1", "dwt/stopped:v1", IMAGE} <= imgs
    assert "dwt-data" in {v.name for v in h.c.volumes.list()}
    assert h.c.containers.get("sleeper").status in ("created", "exited")
    assert h.c.containers.get("app").status == "running"


def test_recipe_runs_tier_by_tier_and_stops_below_the_threshold(loop_engine, tmp_path, daemon_factory,
                                                                 monkeypatch):
    h = _recipe_host(loop_engine, tmp_path)
    assert {"dwt/unused:v1", "dwt/keep:v1", h.dangling_id} <= h.before
    # The P1 threshold sits between "after tier 1" and "after tier 2": 65 MiB below use now.
    du = shutil.disk_usage(loop_engine.mnt)
    crit = round(100.0 * (du.used - 65 * MiB) / (du.used + du.free), 2)
    policy = write_policy(tmp_path / "p.toml", f"""
[thresholds]
disk_warn_percent = {crit - 1}
disk_critical_percent = {crit}
[storage]
interval_s = 5
pressure_interval_s = 5
stopped_container_min_age_s = 0
[guardrails]
stop_timeout_s = 1
""")
    monkeypatch.setenv("DOCKER_HOST", loop_engine.host)

    # recommend: the recommendation says what each tier would free; nothing is removed.
    d = daemon_factory(h.inv, policy, ["--mode", "recommend"]).start(resync=1)
    rec = d.wait_event(lambda e: e["type"] == "reconcile_recommended" and e["service"] == h.subject, timeout=40)
    assert "would free" in rec["reason"] and "tier 1 ~40.0 MiB" in rec["reason"], rec
    assert "tier 2 ~50.0 MiB" in rec["reason"] and "tier 3 ~" in rec["reason"], rec
    detected = d.wait_event(lambda e: e["type"] == "drift_detected" and e["service"] == h.subject, timeout=5)
    assert detected["priority"] == "P1" and detected["details"]["breakdown"]["images"]["count"] >= 7
    d.stop()
    assert _images(h.c) == h.before and {x.name for x in h.c.containers.list(all=True)} >= {"junk", "sleeper"}

    # auto: tier 1, re-measure, tier 2, re-measure: below the threshold, so tier 3 does not run.
    d = daemon_factory(h.inv, policy).start(resync=1)
    t1 = d.wait_event(lambda e: e["type"] == "prune_tier" and e["details"]["tier"] == 1, timeout=60)
    t2 = d.wait_event(lambda e: e["type"] == "prune_tier" and e["details"]["tier"] == 2, timeout=60)
    assert t1["service"] == h.subject and t1["details"]["bytes_freed"] >= 40 * MiB
    assert [r["name"] for r in t1["details"]["removed"]] == [f"<none>@{h.dangling_id.split(':')[1][:12]}"]
    assert t1["details"]["percent_before"] > crit and t1["details"]["percent_after"] > crit  # re-measured
    assert [r["name"] for r in t2["details"]["removed"]] == ["junk"]
    assert t2["details"]["fs_freed_bytes"] >= 45 * MiB and t2["details"]["percent_after"] <= crit
    kept2 = {k["name"]: k["why"] for k in t2["details"]["kept"]}
    assert kept2["sleeper"] == "container of tracked service sleeper (intent stopped)"
    d.wait_event(lambda e: e["type"] == "drift_resolved" and e["service"] == h.subject, timeout=30)
    assert not [e for e in d.events() if e["type"] == "prune_tier" and e["details"]["tier"] == 3]
    after = _images(h.c)
    assert h.dangling_id not in after and {"dwt/unused:v1", "dwt/junkimg:v1"} <= after
    _must_stay(h)
    d.stop()
    text = "".join(p.read_text() for p in (h.state / "journal").glob("*.md"))
    assert "- tier 1 (dangling images and build cache): removed 1, freed 40.0 MiB" in text
    assert "- tier 2 (stopped containers neither tracked nor intent-stopped): removed 1" in text


def test_recipe_that_cannot_get_below_escalates_once_and_never_removes_volumes(loop_engine, tmp_path,
                                                                               daemon_factory, monkeypatch):
    h = _recipe_host(loop_engine, tmp_path)
    strict = write_policy(tmp_path / "strict.toml", "[thresholds]\ndisk_warn_percent = 1\n"
                          "disk_critical_percent = 1\n[storage]\ninterval_s = 5\npressure_interval_s = 5\n"
                          "stopped_container_min_age_s = 0\n")
    args = ("--inventory", str(h.inv), "--policy", str(strict))
    # The dry run shows every tier, what each would remove and what it spares, and removes nothing.
    r = dockwarden("prune", "--dry-run", "--json", *args, host=loop_engine.host, state=h.state)
    assert r.returncode == 0, r.stdout + r.stderr
    plan = json.loads(r.stdout)
    assert plan["tiers_needed"] == 3 and [len(t["candidates"]) for t in plan["tiers"]] == [1, 1, 3]
    tier3 = plan["tiers"][2]
    assert sorted(x["name"] for x in tier3["candidates"]) == ["dwt/dangle:v1", "dwt/junkimg:v1", "dwt/unused:v1"]
    kept3 = {k["name"]: k["why"] for k in tier3["kept"]}
    assert kept3["dwt/keep:v1"] == "service keeper (intent stopped) uses it (recorded spec)"
    assert [v["name"] for v in plan["volumes_never_removed"]] == ["dwt-data"]
    assert _images(h.c) == h.before
    # The daemon runs all three tiers, then escalates once with the volume to review.
    monkeypatch.setenv("DOCKER_HOST", loop_engine.host)
    d = daemon_factory(h.inv, strict).start(resync=1)
    t3 = d.wait_event(lambda e: e["type"] == "prune_tier" and e["details"]["tier"] == 3, timeout=60)
    assert sorted(x["name"] for x in t3["details"]["removed"]) == ["dwt/dangle:v1", "dwt/junkimg:v1",
                                                                    "dwt/unused:v1"]
    esc = d.wait_event(lambda e: e["type"] == "reconcile_blocked" and e["service"] == h.subject, timeout=30)
    assert esc["priority"] == "P1" and "volumes are never removed automatically" in esc["reason"]
    assert [v["name"] for v in esc["details"]["volumes"]] == ["dwt-data"]
    time.sleep(12)  # two more storage passes: nothing left to remove, no repeated escalation
    evs = d.events()
    assert len([e for e in evs if e["type"] == "reconcile_blocked" and e["service"] == h.subject]) == 1
    assert len([e for e in evs if e["type"] == "prune_tier"]) == 3
    d.stop()
    _must_stay(h)
    assert not {"dwt/unused:v1", "dwt/junkimg:v1", "dwt/dangle:v1"} & _images(h.c)
    # `dockwarden prune` now finds nothing more to remove, says so, and exits 1 (still above).
    r = dockwarden("prune", *args, host=loop_engine.host, state=h.state)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "tier 3 (unused images no tracked service references): nothing to remove" in r.stdout
    assert "volumes are never removed automatically" in r.stdout and "dwt-data" in r.stdout
    _must_stay(h)


def test_housekeeping_reports_stale_locks_and_worktrees_and_removes_only_when_enabled(
        loop_engine, tmp_path, daemon_factory, monkeypatch):
    hk_dir = tmp_path / "hk"
    (hk_dir / "locks").mkdir(parents=True)
    dead = hk_dir / "locks" / "dead.lock"
    dead.write_text("999999999\n")  # a PID beyond any
    live = hk_dir / "locks" / "live.lock"
    live.write_text(f"{os.getpid()}\n")
    old_tree = hk_dir / "trees" / "old"
    old_tree.mkdir(parents=True)
    (old_tree / "f").write_text("x")
    busy_tree = hk_dir / "trees" / "busy"
    busy_tree.mkdir()
    past = time.time() - 3 * 3600
    for p in (old_tree / "f", old_tree, busy_tree):
        os.utime(p, (past, past))
    holder = subprocess.Popen(["sleep", "300"], cwd=busy_tree)  # a process uses it
    try:
        base = (f"[storage]\ninterval_s = 5\n[housekeeping]\nlock_globs = [\"{hk_dir}/locks/*.lock\"]\n"
                f"worktree_globs = [\"{hk_dir}/trees/*\"]\n")
        report_only = write_policy(tmp_path / "report.toml", base)
        inv = write_inventory(tmp_path / "inv", [])
        monkeypatch.setenv("DOCKER_HOST", loop_engine.host)
        d = daemon_factory(inv, report_only).start(resync=1)
        locks = d.wait_event(lambda e: e["type"] == "drift_detected" and e["service"] == "host:housekeeping:locks",
                             timeout=30)
        trees = d.wait_event(lambda e: e["type"] == "drift_detected"
                             and e["service"] == "host:housekeeping:worktrees", timeout=10)
        assert locks["priority"] == "P4" and [i["path"] for i in locks["details"]["items"]] == [str(dead)]
        assert [i["path"] for i in trees["details"]["items"]] == [str(old_tree)]
        time.sleep(6)
        d.stop()
        assert dead.exists() and old_tree.exists()  # reported, not removed
        remove = write_policy(tmp_path / "remove.toml", base + "remove_locks = true\nremove_worktrees = true\n")
        d = daemon_factory(inv, remove).start(resync=1)
        gone = d.wait_event(lambda e: e["type"] == "housekeeping" and e["details"]["path"] == str(old_tree),
                            timeout=30)
        assert gone["details"]["ok"] is True
        d.wait_event(lambda e: e["type"] == "housekeeping" and e["details"]["path"] == str(dead), timeout=10)
        d.wait_event(lambda e: e["type"] == "drift_resolved" and e["service"] == "host:housekeeping:locks",
                     timeout=30)
        d.stop()
        assert not dead.exists() and not old_tree.exists()
        assert live.exists() and busy_tree.exists()  # live PID; a process's cwd
    finally:
        holder.kill()
        holder.wait()
