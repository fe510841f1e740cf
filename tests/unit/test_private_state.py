"""Issue 8, private state: the state dir is 0700 and every file in it 0600,
whatever the umask the process started with.

Each test sets a umask of 022 itself, so a file that comes out 0600 was made so
by dockwarden's code, not by the test's environment.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dockwarden.lock import acquire_lock
from dockwarden.model import ContainerState, Event, EventType, WorldState
from dockwarden.observe.world import write_world
from dockwarden.private import secure_state_dir
from dockwarden.sinks.events import EventLog
from dockwarden.sinks.journal import Journal
from dockwarden.store import Store

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _event() -> Event:
    return Event(type=EventType.DRIFT_DETECTED, ts=NOW, node="n", service="web", reason="web: exited")


def test_secure_state_dir_mends_an_existing_tree_and_leaves_links_alone(tmp_path, umask_022):
    sd = tmp_path / "state"
    (sd / "journal").mkdir(parents=True)
    (sd / "pool-secrets" / "c1").mkdir(parents=True)
    files = ["dockwarden.db", "dockwarden.db-wal", "dockwarden.db-shm", "events.jsonl", "events.jsonl.1",
             "world.json", "daemon.lock", "journal/2024-05-01.md", "pool-secrets/c1/token"]
    for f in files:
        (sd / f).write_text("x")
        os.chmod(sd / f, 0o644)
    for d in (sd, sd / "journal", sd / "pool-secrets", sd / "pool-secrets" / "c1"):
        os.chmod(d, 0o755)
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    os.chmod(outside, 0o644)
    (sd / "link").symlink_to(outside)

    changed = secure_state_dir(sd)

    assert changed == len(files) + 4
    assert all(mode(sd / f) == 0o600 for f in files), {f: oct(mode(sd / f)) for f in files}
    assert all(mode(d) == 0o700 for d in (sd, sd / "journal", sd / "pool-secrets", sd / "pool-secrets" / "c1"))
    assert mode(outside) == 0o644  # the link was not followed
    assert secure_state_dir(sd) == 0  # idempotent


def test_secure_state_dir_creates_a_missing_dir_0700(tmp_path, umask_022):
    sd = tmp_path / "a" / "state"
    secure_state_dir(sd)
    assert mode(sd) == 0o700


def test_store_database_wal_and_shm_are_private(tmp_path, umask_022):
    sd = tmp_path / "state"
    store = Store(sd / "dockwarden.db")
    store.insert_event(_event())
    store.put_spec("web", "web", {"image": "i", "environment": ["A=1"]}, NOW)
    made = {p.name: mode(p) for p in sd.iterdir()}
    store.close()
    assert mode(sd) == 0o700
    assert {"dockwarden.db", "dockwarden.db-wal", "dockwarden.db-shm"} <= set(made), made
    assert all(m == 0o600 for m in made.values()), {k: oct(v) for k, v in made.items()}


def test_store_mends_a_state_dir_left_open_by_an_older_version(tmp_path, umask_022):
    sd = tmp_path / "state"
    sd.mkdir(mode=0o755)
    os.chmod(sd, 0o755)
    (sd / "events.jsonl").write_text("{}\n")
    os.chmod(sd / "events.jsonl", 0o644)
    Store(sd / "dockwarden.db").close()
    assert mode(sd) == 0o700 and mode(sd / "events.jsonl") == 0o600


def test_event_log_file_and_dir_are_private(tmp_path, umask_022):
    path = tmp_path / "state" / "events.jsonl"
    assert EventLog(path, None).send(_event())
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_journal_files_are_private(tmp_path, umask_022):
    j = Journal(tmp_path / "journal", "n")
    assert j._append(NOW, ["## Run — 12:00 UTC", "Health: ok"])
    assert mode(j.path_for(NOW.date())) == 0o600 and mode(tmp_path / "journal") == 0o700


def test_lock_file_is_private(tmp_path, umask_022):
    fh = acquire_lock(tmp_path / "state")
    try:
        assert mode(tmp_path / "state" / "daemon.lock") == 0o600 and mode(tmp_path / "state") == 0o700
    finally:
        fh.close()


def test_world_json_is_private_and_carries_no_environment_values(tmp_path, umask_022):
    spec = {"image": "busybox", "command": ["sleep", "1"], "environment": ["DW_PLANTED=tok3n-value", "PATH=/bin"]}
    c = ContainerState(id="a" * 64, name="web", image="busybox", state="running", spec=spec)
    world = WorldState(node="n", observed_at=NOW, host=None, containers=(c,))
    path = tmp_path / "world.json"
    write_world(world, path)
    text = path.read_text()
    doc = json.loads(text)
    assert mode(path) == 0o600
    assert "tok3n-value" not in text and "environment\"" not in text
    assert doc["containers"][0]["spec"]["environment_keys"] == ["DW_PLANTED", "PATH"]
    assert doc["containers"][0]["spec"]["command"] == ["sleep", "1"]
    assert c.spec["environment"] == ["DW_PLANTED=tok3n-value", "PATH=/bin"]  # the record itself is untouched


def test_every_cli_command_runs_under_umask_077(umask_022):
    from dockwarden.cli import app

    r = CliRunner().invoke(app, ["version"])
    assert r.exit_code == 0, r.output
    assert os.umask(0o022) == 0o077
