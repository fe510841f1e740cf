"""Issue 8, private state and bad input, against a real engine and a real daemon.

- A tracked container's environment (``docker run -e SECRET=...``) reaches the
  database (its recorded spec, for recreate) and nothing else: not world.json,
  events.jsonl, the journal, CLI output or the daemon's log; and every file
  and dir of the state dir is 0600/0700 (the daemon starts under the test's
  umask, 022 here, so the modes are the code's doing).
- A policy rewritten with a password in a bad field is rejected with an error
  naming the file and the field, and the password is in no event, log or file.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import time
from pathlib import Path

import pytest

from conftest import FAST_POLICY, write_inventory, write_policy

DB_FILES = {"dockwarden.db", "dockwarden.db-wal", "dockwarden.db-shm"}


def _tree(root: Path) -> list[Path]:
    return [root, *sorted(root.rglob("*"))]


def _modes_not_private(root: Path) -> dict[str, str]:
    bad = {}
    for p in _tree(root):
        st = os.lstat(p)
        want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) != want:
            bad[str(p.relative_to(root.parent))] = oct(stat.S_IMODE(st.st_mode))
    return bad


def _files_holding(root: Path, needle: str) -> set[str]:
    b = needle.encode()
    return {str(p.relative_to(root)) for p in _tree(root) if p.is_file() and b in p.read_bytes()}


@pytest.fixture(autouse=True)
def umask_022():
    """The daemon and CLI inherit a permissive umask (what a shell usually
    gives): private modes must be dockwarden's doing."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_container_environment_stays_in_the_database_and_state_is_private(tmp_path, containers, daemon_factory):
    token = "dwtok" + secrets.token_hex(16)
    containers.run("web", ["sleep", "3600"], environment={"DW_PLANTED_SECRET": token, "PLAIN": "1"})
    name = containers.name("web")
    inv = write_inventory(tmp_path / "inv", [{"name": "web", "container": name}])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY), extra=["--verbose"]).start(resync=1)
    time.sleep(1.5)  # a full pass records the spec
    pid = containers.state("web")["Pid"]
    assert pid > 0
    os.kill(pid, signal.SIGKILL)  # from the host: a crash, so a recovery
    d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == "web", timeout=30)
    time.sleep(1.5)  # another full pass: world.json, journal

    outputs = {}
    for args in (["status", "--json"], ["drift", "--json"], ["once", "--json"], ["events", "--json"]):
        r = d.cli(*args)
        assert r.returncode in (0, 1, 2), (args, r.returncode, r.stderr)
        outputs[" ".join(args)] = r.stdout + r.stderr
    # The daemon's world.json saw the container, by its environment's names only (a `once`
    # without a daemon lists a running container it has a recorded spec of, not inspects it).
    world = json.loads((d.state_dir / "world.json").read_text())
    spec = next(c["spec"] for c in world["containers"] if c["name"] == name)
    assert "DW_PLANTED_SECRET" in spec["environment_keys"] and "environment" not in spec
    assert d.stop() == 0
    r = d.cli("once", "--json")  # no daemon: this one acts and writes world.json itself
    assert r.returncode in (0, 1, 2), r.stderr
    outputs["once --json (no daemon)"] = r.stdout + r.stderr
    assert [sv["service"] for sv in json.loads(r.stdout)["services"]] == ["web"]

    sd = d.state_dir
    # The plant reached dockwarden: the database holds the spec (else this test proves nothing)...
    holding = _files_holding(sd, token)
    assert holding & DB_FILES, f"token not recorded in the database: {holding}"
    # Nowhere else.
    assert holding <= DB_FILES, f"the container's environment leaked into {sorted(holding - DB_FILES)}"
    for what, text in outputs.items():
        assert token not in text, f"`dockwarden {what}` printed the container's environment"
    assert token not in d.log_text(), "the daemon's log holds the container's environment"
    made = {str(p.relative_to(sd)) for p in _tree(sd)}
    assert {"dockwarden.db", "events.jsonl", "world.json", "daemon.lock", "journal"} <= made, made
    # Private: every dir 0700, every file 0600 (db, -wal, -shm, events.jsonl, world.json, journal, lock).
    assert _modes_not_private(sd) == {}


BAD_URL_SECRET = "hunter2secret"


def test_bad_policy_with_a_password_is_rejected_without_echoing_it(tmp_path, daemon_factory):
    inv = write_inventory(tmp_path / "inv", [])
    pol = write_policy(tmp_path / "p.toml", FAST_POLICY)
    d = daemon_factory(inv, pol).start(resync=1)
    n = len(d.events())
    bad = (FAST_POLICY
           + "[notify]\n"
           + f'timeout_s = "mailto://user:{BAD_URL_SECRET}@127.0.0.1:1?bad="\n'
           + "[[notify.channel]]\n"
           + 'name = "mail"\n'
           + f'url = ["mailto://user:{BAD_URL_SECRET}@127.0.0.1:1?bad="]\n')
    pol.write_text(bad)
    ev = d.wait_event(lambda e: e["type"] == "config_rejected", timeout=30, after=n)
    text = json.dumps(ev)
    assert str(pol) in text and "notify.timeout_s" in text and "notify.channel[0].url" in text, text
    assert BAD_URL_SECRET not in text
    assert d.proc is not None and d.proc.poll() is None  # kept the last good configuration, still running
    # The CLI's check of the same file says the same, without the password.
    r = d.cli("inventory", "validate")
    assert r.returncode == 1 and str(pol) in r.stderr and "notify.timeout_s" in r.stderr, r.stderr
    assert BAD_URL_SECRET not in r.stdout + r.stderr
    assert d.stop() == 0
    assert BAD_URL_SECRET not in d.log_text()
    assert _files_holding(d.state_dir, BAD_URL_SECRET) == set()  # events.jsonl, the events table, ...
    assert _modes_not_private(d.state_dir) == {}
