"""Each ``doctor`` check with hand-made inputs: files and sockets in tmp dirs,
real loopback servers for channels, fake cgroup trees, process lists."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest

from dockwarden.config import ConfigError
from dockwarden.config_notify import Channel
from dockwarden.doctor import (
    Check,
    Proc,
    check_cgroups,
    check_channel,
    check_clock,
    check_engine,
    check_inventory,
    check_other_supervisors,
    check_policy,
    check_restart_policies,
    check_sent,
    check_socket,
    check_state_dir,
    exit_code,
    own_container_ids,
)
from dockwarden.model import DesiredState
from tests.support.servers import WebhookServer, free_port
from tests.unit.builders import NOW, container

CID = "a" * 64
INFO = {"server_version": "20.10.24+dfsg1", "api_version": "1.41", "driver": "overlay2", "cgroup_version": "1"}


def test_exit_code_is_the_worst_status():
    assert exit_code([Check("a", "ok", "")]) == 0
    assert exit_code([Check("a", "ok", ""), Check("b", "warn", "")]) == 1
    assert exit_code([Check("a", "warn", ""), Check("b", "fail", "")]) == 2


def test_engine():
    c = check_engine(None, "connection refused", None)
    assert c.status == "fail" and "connection refused" in c.detail and "systemctl start docker" in c.fix
    ok = check_engine(INFO, None, "unix:///run/x.sock")
    assert ok.status == "ok" and "20.10.24" in ok.detail and "API 1.41" in ok.detail and "unix:///run/x.sock" in ok.detail
    old = check_engine({**INFO, "api_version": "1.40"}, None, None)
    assert old.status == "warn" and "1.41" in old.detail


@pytest.fixture
def unix_socket(tmp_path):
    path = tmp_path / "docker.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    os.chmod(path, 0o660)
    yield path
    s.close()


def test_socket_ok_denied_world_writable_missing(unix_socket, tmp_path):
    host = f"unix://{unix_socket}"
    ok = check_socket(host)  # a real connect to a listening socket
    assert ok.status == "ok" and "srw-rw----" in ok.detail and "can connect" in ok.detail
    denied = check_socket(host, uid=1000, connect=lambda p: "Permission denied")
    assert denied.status == "fail" and "Permission denied" in denied.detail
    assert "usermod -aG" in denied.fix
    os.chmod(unix_socket, 0o666)
    loose = check_socket(host)
    assert loose.status == "warn" and f"chmod 660 {unix_socket}" in loose.fix
    gone = check_socket(f"unix://{tmp_path}/nope.sock")
    assert gone.status == "fail" and "No such file" in gone.detail
    plain = tmp_path / "file"
    plain.write_text("")
    assert check_socket(f"unix://{plain}").status == "fail"


def test_socket_of_tcp_engines(monkeypatch):
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    assert check_socket("tcp://127.0.0.1:2375").status == "ok"
    remote = check_socket("tcp://10.0.0.5:2375")
    assert remote.status == "warn" and "TLS" in remote.fix
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    assert check_socket("tcp://10.0.0.5:2376").status == "ok"


def test_state_dir(tmp_path):
    assert check_state_dir(tmp_path / "new" / "state").status == "ok"  # created on first run
    f = tmp_path / "state-file"
    f.write_text("x")
    c = check_state_dir(f)
    assert c.status == "fail" and "not a directory" in c.detail and "--state-dir" in c.fix
    ro = check_state_dir(Path("/sys/kernel"))  # a directory nobody can create files in
    assert ro.status == "fail" and "cannot be written" in ro.detail and "read-write" in ro.fix
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    os.chmod(d, 0o700)
    (d / "dockwarden.db").write_text("")
    os.chmod(d / "dockwarden.db", 0o600)
    assert check_state_dir(d).status == "ok"
    os.chmod(d / "dockwarden.db", 0o644)
    loose = check_state_dir(d)
    assert loose.status == "warn" and "dockwarden.db (0644)" in loose.detail and "chmod -R go-rwx" in loose.fix
    os.chmod(d / "dockwarden.db", 0o600)
    os.chmod(d, 0o755)
    assert "is 0755" in check_state_dir(d).detail
    assert not list(d.glob(".doctor-*"))  # the write test leaves nothing behind


def test_inventory_and_policy(tmp_path):
    none = check_inventory(lambda: None, None)
    assert none.status == "ok" and "only labelled containers" in none.detail and "inventory init" in none.detail

    def bad():
        raise ConfigError("inv/hosts/n/services.yaml: services[0].desired: Input should be 'running' or 'stopped'")

    c = check_inventory(bad, tmp_path)
    assert c.status == "fail" and "services[0].desired" in c.detail and "inventory validate" in c.fix
    ok = check_inventory(lambda: DesiredState(node="n", services={}), tmp_path)
    assert ok.status == "ok" and "node n" in ok.detail
    assert check_policy(lambda: None, None).status == "ok"
    assert check_policy(bad, tmp_path / "p.toml").status == "fail"


def test_channel_probe_reaches_a_real_server_and_never_shows_secrets():
    with WebhookServer() as srv:
        c = check_channel(Channel(name="hook", url=f"json://user:s3cret@127.0.0.1:{srv.port}/x"), env={})
        assert c.status == "ok" and f"127.0.0.1:{srv.port}" in c.detail and "nothing sent" in c.detail
        assert not srv.received
    port = free_port()  # nothing listens there
    c = check_channel(Channel(name="hook", url=f"json://user:s3cret@127.0.0.1:{port}/x"), env={})
    assert c.status == "fail" and "cannot connect" in c.detail and "firewall" in c.fix
    assert "s3cret" not in c.detail + c.fix


def test_channel_env_parse_and_default_ports():
    ch = Channel(name="mail", url="mailtos://alerts:${SMTP_PASSWORD}@smtp.example.com?to=ops@example.com")
    missing = check_channel(ch, env={})
    assert missing.status == "fail" and "SMTP_PASSWORD" in missing.detail + missing.fix
    seen = []
    ok = check_channel(ch, env={"SMTP_PASSWORD": "hunter2"}, probe=lambda h, p, t: seen.append((h, p)) or None)
    assert ok.status == "ok" and seen == [("smtp.example.com", 587)] and "hunter2" not in ok.detail
    nonsense = check_channel(Channel(name="x", url="nonsense://user:pw123@host/path"), env={})
    assert nonsense.status == "fail" and "apprise" in nonsense.detail and "pw123" not in nonsense.detail
    other = check_channel(Channel(name="ntfy", url="ntfy://my-topic"), env={}, probe=lambda *a: "never called")
    assert other.status == "ok" and "not probed" in other.detail
    seen.clear()
    check_channel(Channel(name="j", url="jsons://hooks.example.com/x"), env={},
                  probe=lambda h, p, t: seen.append((h, p)) or None)
    assert seen == [("hooks.example.com", 443)]


def test_sent():
    got = check_sent([{"channel": "a", "url": "json://h/", "delivered": True, "error": None},
                      {"channel": "b", "url": "json://g/", "delivered": False, "error": "channel b: delivery failed"}])
    assert [c.status for c in got] == ["ok", "fail"] and "notify test --channel b" in got[1].fix


def _cgroup_v1(root: Path, cid: str) -> None:
    mem, cpu = root / "memory" / "docker" / cid, root / "cpuacct" / "docker" / cid
    mem.mkdir(parents=True)
    cpu.mkdir(parents=True)
    (mem / "memory.usage_in_bytes").write_text("1048576\n")
    (mem / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (mem / "memory.stat").write_text("total_inactive_file 0\n")
    (cpu / "cpuacct.usage").write_text("123456789\n")


def test_cgroups(tmp_path):
    _cgroup_v1(tmp_path, CID)
    ok = check_cgroups(root=str(tmp_path), engine_local=True, running_ids=[CID])
    assert ok.status == "ok" and "read 1 of 1" in ok.detail
    missing = check_cgroups(root=str(tmp_path), engine_local=True, running_ids=["b" * 64])
    assert missing.status == "warn" and "stats API" in missing.detail and "--cgroupns=host" in missing.fix
    none = check_cgroups(root=str(tmp_path / "empty"), engine_local=True, running_ids=[CID])
    assert none.status == "warn" and "/sys/fs/cgroup" in none.fix
    assert check_cgroups(root=str(tmp_path / "empty"), engine_local=False, running_ids=[CID]).status == "ok"


def test_clock():
    assert check_clock(NOW, NOW + timedelta(seconds=0.5)).status == "ok"
    skewed = check_clock(NOW, NOW + timedelta(seconds=3))
    assert skewed.status == "warn" and "+3.0 s" in skewed.detail and "NTP" in skewed.fix
    assert check_clock(NOW, NOW - timedelta(seconds=5)).status == "warn"
    assert check_clock(None, NOW).status == "warn"


def test_other_supervisors(tmp_path):
    sd = tmp_path / "state"
    run = ("/usr/bin/python3", "-m", "dockwarden", "run")
    procs = [Proc(10, run + ("--state-dir", str(sd)), {}),  # the lock holder: our daemon
             Proc(11, run + ("--state-dir", "/srv/other"), {}),  # same engine (default socket)
             Proc(12, run, {"DOCKER_HOST": "unix:///run/node2/docker.sock"}),  # another engine
             Proc(13, ("dockwarden", "run"), None),  # environment unreadable
             Proc(99, run, {})]  # ourselves
    c = check_other_supervisors(state_dir=sd, lock_pid=10, docker_host=None, procs=procs, own_pid=99)
    assert c.status == "warn" and "pid 10" in c.detail and "pid 11" in c.detail and "/srv/other" in c.detail
    assert "pid 12" not in c.detail and "pid 13" in c.detail and "not readable" in c.detail
    quiet = check_other_supervisors(state_dir=sd, lock_pid=10, docker_host=None, procs=procs[:1] + procs[2:3],
                                    own_pid=99)
    assert quiet.status == "ok" and "pid 10" in quiet.detail
    cs = [container("autoheal", image="willfarrell/autoheal:1.2.0"), container("dw", labels={"dockwarden.supervisor": "true"}),
          container("me", id=CID, labels={"dockwarden.supervisor": "true"}), container("app")]
    c = check_other_supervisors(state_dir=sd, lock_pid=None, docker_host=None, procs=[], own_pid=99,
                                containers=cs, own_ids=frozenset({CID}))
    assert c.status == "warn" and "docker-autoheal" in c.detail and "container dw runs dockwarden" in c.detail
    assert "container me" not in c.detail and "container app" not in c.detail and "migration table" in c.fix


def test_restart_policies():
    assert check_restart_policies([("web", "web", "no", None), ("db", "db", None, None)]).status == "ok"
    c = check_restart_policies([("web", "web", "always", None), ("api", "shop_api_1", "unless-stopped", "shop"),
                                ("job", "job", "on-failure", None), ("ok", "ok", "no", None)])
    assert c.status == "warn"
    assert "web (service web) has `restart: always`" in c.detail and "even after you stopped it" in c.detail
    assert "unless you stopped it" in c.detail and "exits non-zero" in c.detail and "ok (service" not in c.detail
    assert "docker update --restart=no web" in c.fix and "docker update --restart=no shop_api_1" in c.fix
    assert "compose project shop" in c.fix


def test_own_container_ids(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "cgroup").write_text(f"12:memory:/docker/{CID}\n0::/\n")
    (tmp_path / "self" / "mountinfo").write_text(
        f"600 590 0:50 /var/lib/docker/containers/{'b' * 64}/hostname /etc/hostname rw - ext4 /dev/vda rw\n")
    assert own_container_ids(str(tmp_path)) == frozenset({CID, "b" * 64})
    (tmp_path / "self" / "cgroup").write_text("0::/user.slice\n")
    (tmp_path / "self" / "mountinfo").write_text("22 1 0:21 / / rw - ext4 /dev/vda rw\n")
    assert own_container_ids(str(tmp_path)) == frozenset()
