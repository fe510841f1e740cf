"""Pure parts of dockwarden.observe: inspect/event/stats parsing, spec, world helpers.

The inspect documents below are trimmed copies of what Engine 20.10 returns
(``docker inspect``), edited per case.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from dockwarden import model
from dockwarden.observe.inspect import container_state_from_inspect, spec_of
from dockwarden.observe.events import event_from_dict
from dockwarden.observe.host import HostSampler
from dockwarden.observe.stats import CgroupStatsReader, cpu_percent_between
from dockwarden.observe.stats_api import stats_from_api
from dockwarden.observe.world import replace_containers, world_document, write_world

CID = "4e742af59f69d0920a96989007ab13b6da9f99a875c1567d75b9d7ffff8ec737"

BASE: dict = {
    "Id": CID,
    "Created": "2026-11-21T10:23:05.985423426Z",
    "Path": "sleep",
    "Args": ["300"],
    "State": {
        "Status": "running", "Running": True, "Paused": False, "Restarting": False,
        "OOMKilled": False, "Dead": False, "Pid": 4737, "ExitCode": 0, "Error": "",
        "StartedAt": "2026-11-21T10:23:06.17831625Z",
        "FinishedAt": "0001-01-01T00:00:00Z",
    },
    "Image": "sha256:7b0bfbc01f4f9845e1791d2774d456dd00ef429c61814c18fdb10467e929c9d9",
    "Name": "/web",
    "RestartCount": 0,
    "HostConfig": {
        "Binds": None, "NetworkMode": "default",
        "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "Memory": 0, "MemorySwap": 0, "ShmSize": 67108864,
        "LogConfig": {"Type": "json-file", "Config": {}},
    },
    "Mounts": [],
    "Config": {
        "Hostname": "4e742af59f69", "Domainname": "", "User": "",
        "Tty": False, "OpenStdin": False, "Env": ["PATH=/bin"],
        "Cmd": ["sleep", "300"], "Image": "dockwarden-test/busybox:latest",
        "WorkingDir": "", "Entrypoint": None, "Labels": {"dockwarden.test": "1"},
    },
}


def doc(**changes: dict) -> dict:
    """A deep copy of BASE with top-level sections updated (one level deep)."""
    d = copy.deepcopy(BASE)
    for key, val in changes.items():
        if isinstance(val, dict) and isinstance(d.get(key), dict):
            d[key].update(val)
        else:
            d[key] = val
    return d


# --------------------------------------------------------------------------- container state


def test_running_container_basic_fields():
    c = container_state_from_inspect(doc())
    assert c.id == CID
    assert c.name == "web"
    assert c.image == "dockwarden-test/busybox:latest"
    assert c.state == "running" and c.running
    assert c.health is None and c.health_last_output is None and c.health_failing_streak == 0
    assert c.exit_code is None  # running: ExitCode 0 is meaningless
    assert c.pid == 4737
    assert c.error is None
    assert c.restart_policy == "no"
    assert c.labels == {"dockwarden.test": "1"}
    assert c.compose_project is None and c.compose_service is None
    assert c.memory_limit_bytes is None
    assert c.cpu_percent is None and c.memory_bytes is None


def test_nanosecond_and_never_times():
    c = container_state_from_inspect(doc())
    assert c.created_at == datetime(2026, 11, 21, 10, 23, 5, 985423, tzinfo=timezone.utc)
    assert c.started_at == datetime(2026, 11, 21, 10, 23, 6, 178316, tzinfo=timezone.utc)
    assert c.finished_at is None  # "0001-01-01T00:00:00Z" is Docker's "never"


def test_exited_with_code_and_error():
    c = container_state_from_inspect(doc(State={
        "Status": "exited", "Running": False, "Pid": 0, "ExitCode": 127,
        "Error": 'exec: "nope": executable file not found in $PATH',
        "FinishedAt": "2026-11-21T10:30:00.000000001Z",
    }, RestartCount=4))
    assert c.state == "exited" and not c.running
    assert c.exit_code == 127
    assert c.error == 'exec: "nope": executable file not found in $PATH'
    assert c.pid == 0
    assert c.restart_count == 4
    assert c.finished_at == datetime(2026, 11, 21, 10, 30, tzinfo=timezone.utc)


def test_exit_code_zero_kept_for_exited():
    c = container_state_from_inspect(doc(State={"Status": "exited", "ExitCode": 0}))
    assert c.exit_code == 0


def test_created_container_has_no_exit_code():
    c = container_state_from_inspect(doc(State={"Status": "created", "ExitCode": 0,
                                                "StartedAt": "0001-01-01T00:00:00Z"}))
    assert c.exit_code is None
    assert c.started_at is None


def test_failed_start_keeps_exit_code_and_error():
    c = container_state_from_inspect(doc(State={
        "Status": "created", "ExitCode": 127, "Pid": 0, "StartedAt": "0001-01-01T00:00:00Z",
        "Error": 'runc create failed: exec: "/nope": stat /nope: no such file or directory'}))
    assert c.state == "created"
    assert c.exit_code == 127
    assert c.error is not None and "/nope" in c.error


def test_oom_killed():
    c = container_state_from_inspect(doc(State={"Status": "exited", "OOMKilled": True, "ExitCode": 137},
                                          HostConfig={"Memory": 8 * 1024 * 1024}))
    assert c.oom_killed is True
    assert c.exit_code == 137
    assert c.memory_limit_bytes == 8 * 1024 * 1024  # from HostConfig.Memory


def test_health_log_last_output_stripped_and_truncated():
    long = "x" * 2000
    c = container_state_from_inspect(doc(State={"Health": {
        "Status": "unhealthy", "FailingStreak": 5,
        "Log": [
            {"Start": "2026-11-21T10:23:07Z", "ExitCode": 0, "Output": "ok\n"},
            {"Start": "2026-11-21T10:23:08Z", "ExitCode": 1, "Output": "  \n" + long + "\n"},
        ]}}))
    assert c.health == "unhealthy"
    assert c.health_failing_streak == 5
    assert c.health_last_output == "x" * 500


def test_health_starting_without_log():
    c = container_state_from_inspect(doc(State={"Health": {"Status": "starting", "FailingStreak": 0, "Log": []}}))
    assert c.health == "starting"
    assert c.health_last_output is None


def test_health_last_output_short():
    c = container_state_from_inspect(doc(State={"Health": {
        "Status": "healthy", "FailingStreak": 0,
        "Log": [{"ExitCode": 0, "Output": "pong\n"}]}}))
    assert c.health == "healthy"
    assert c.health_last_output == "pong"


def test_compose_labels():
    labels = {"com.docker.compose.project": "shop", "com.docker.compose.service": "db",
              "com.docker.compose.oneoff": "False"}
    c = container_state_from_inspect(doc(Config={"Labels": labels}))
    assert c.compose_project == "shop"
    assert c.compose_service == "db"
    assert c.labels == labels


def test_restart_policy_and_memory_limit():
    c = container_state_from_inspect(doc(HostConfig={
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}, "Memory": 67108864}))
    assert c.restart_policy == "on-failure"
    assert c.memory_limit_bytes == 67108864


def test_restart_policy_empty_is_none():
    c = container_state_from_inspect(doc(HostConfig={"RestartPolicy": {"Name": "", "MaximumRetryCount": 0}}))
    assert c.restart_policy is None


def test_stats_arguments_win():
    c = container_state_from_inspect(doc(HostConfig={"Memory": 67108864}), cpu_percent=12.5,
                                     memory_bytes=1000, memory_limit_bytes=2000)
    assert (c.cpu_percent, c.memory_bytes, c.memory_limit_bytes) == (12.5, 1000, 2000)


def test_missing_sections_tolerated():
    c = container_state_from_inspect({"Id": CID, "Name": "/bare"})
    assert c.name == "bare" and c.state == "" and c.spec is not None


# --------------------------------------------------------------------------- spec_of


def test_spec_of_basic():
    s = spec_of(doc())
    assert s["image"] == "dockwarden-test/busybox:latest"
    assert s["name"] == "web"
    assert s["command"] == ["sleep", "300"]
    assert s["environment"] == ["PATH=/bin"]
    assert s["labels"] == {"dockwarden.test": "1"}
    assert s["ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}
    # defaults are left out
    for key in ("hostname", "entrypoint", "restart_policy", "network_mode", "mem_limit",
                "healthcheck", "volumes", "working_dir", "user", "shm_size", "log_config",
                "tty", "stdin_open"):
        assert key not in s, key
    assert json.loads(json.dumps(s)) == s  # JSON round trip


def test_spec_of_full():
    d = doc(
        Config={"Hostname": "api-1", "User": "1000:1000", "WorkingDir": "/srv", "Entrypoint": ["/bin/sh", "-c"],
                "Cmd": ["httpd -f"], "Tty": True, "OpenStdin": True, "StopSignal": "SIGINT",
                "Healthcheck": {"Test": ["CMD-SHELL", "wget -q -O- localhost"], "Interval": 2_000_000_000,
                                "Timeout": 1_000_000_000, "Retries": 3, "StartPeriod": 5_000_000_000}},
        HostConfig={"Binds": ["/srv/data:/data:ro", "named:/cache", "/anon"], "NetworkMode": "shopnet",
                    "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 5},
                    "Memory": 64 * 2**20, "MemorySwap": 128 * 2**20, "NanoCpus": 500_000_000,
                    "CapAdd": ["NET_ADMIN"], "ExtraHosts": ["db:10.0.0.2"], "Init": True,
                    "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": ""}],
                                     "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}]},
                    "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
                    "Mounts": [{"Type": "tmpfs", "Target": "/run"}]},
        Mounts=[{"Type": "volume", "Name": "abc123", "Destination": "/var/lib/x", "RW": True},
                {"Type": "volume", "Name": "named", "Destination": "/cache", "RW": True},
                {"Type": "volume", "Name": "def456", "Destination": "/anon", "RW": True},
                {"Type": "bind", "Source": "/srv/data", "Destination": "/data", "RW": False}],
    )
    s = spec_of(d)
    assert s["hostname"] == "api-1"
    assert s["user"] == "1000:1000"
    assert s["working_dir"] == "/srv"
    assert s["entrypoint"] == ["/bin/sh", "-c"]
    assert s["command"] == ["httpd -f"]
    assert s["tty"] is True and s["stdin_open"] is True
    assert s["stop_signal"] == "SIGINT"
    assert s["healthcheck"] == {"test": ["CMD-SHELL", "wget -q -O- localhost"], "interval": 2_000_000_000,
                                "timeout": 1_000_000_000, "retries": 3, "start_period": 5_000_000_000}
    assert s["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
    # anonymous volume bound by its current name; named/bind ones not duplicated
    assert s["volumes"] == ["/srv/data:/data:ro", "named:/cache", "abc123:/var/lib/x", "def456:/anon"]
    assert s["mounts"] == [{"Type": "tmpfs", "Target": "/run"}]
    assert s["network_mode"] == "shopnet"
    assert s["mem_limit"] == 64 * 2**20 and s["memswap_limit"] == 128 * 2**20
    assert s["nano_cpus"] == 500_000_000
    assert s["cap_add"] == ["NET_ADMIN"]
    assert s["extra_hosts"] == ["db:10.0.0.2"]
    assert s["init"] is True
    assert s["ports"] == {"53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
                          "80/tcp": [{"HostIp": "", "HostPort": ""}]}
    assert s["log_config"] == {"Type": "json-file", "Config": {"max-size": "10m"}}
    assert "stop_timeout" not in s  # ContainerCollection.create() rejects it
    assert json.loads(json.dumps(s)) == s


def test_spec_of_host_network_omits_hostname():
    s = spec_of(doc(Config={"Hostname": "myhost"}, HostConfig={"NetworkMode": "host", "PortBindings": {}}))
    assert s["network_mode"] == "host"
    assert "hostname" not in s
    assert "ports" not in s


def test_spec_is_accepted_by_sdk_create_args():
    """The docker SDK's own argument conversion accepts every key of a full spec."""
    from docker.models.containers import _create_container_args

    s = spec_of(doc(Config={"Healthcheck": {"Test": ["CMD", "true"], "Interval": 10**9}, "StopSignal": "SIGTERM"},
                    HostConfig={"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0},
                                "Memory": 2**26, "MemorySwap": 2**27, "Binds": ["/a:/b"],
                                "CapDrop": ["ALL"], "Dns": ["1.1.1.1"], "Tmpfs": {"/t": "size=1m"},
                                "ShmSize": 2**27, "Sysctls": {"net.core.somaxconn": "1024"},
                                "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]}))
    kwargs = dict(s)
    kwargs["version"] = "1.41"
    args = _create_container_args(kwargs)  # raises TypeError on an unknown key
    hc = args["host_config"]
    assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}
    assert hc["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    assert hc["Memory"] == 2**26
    assert hc["Binds"] == ["/a:/b"]
    assert hc["ShmSize"] == 2**27
    assert args["healthcheck"] == {"test": ["CMD", "true"], "interval": 10**9, "timeout": None,
                                   "retries": None, "start_period": None}


# --------------------------------------------------------------------------- events


def test_event_from_dict_die():
    ev = {"status": "die", "id": CID, "from": "busybox", "Type": "container", "Action": "die",
          "Actor": {"ID": CID, "Attributes": {"exitCode": "137", "image": "busybox", "name": "web"}},
          "scope": "local", "time": 1795256586, "timeNano": 1795256586123456789}
    e = event_from_dict(ev)
    assert e is not None
    assert e.action == "die" and e.base_action == "die"
    assert e.container_id == CID
    assert e.name == "web"
    assert e.attributes["exitCode"] == "137"
    assert e.time == datetime.fromtimestamp(1795256586, timezone.utc) + timedelta(microseconds=123456)


def test_event_from_dict_health_status_and_fallbacks():
    e = event_from_dict({"Type": "container", "Action": "health_status: unhealthy",
                         "Actor": {"ID": CID, "Attributes": {"name": "web"}}, "time": 1795256586})
    assert e is not None and e.base_action == "health_status"
    assert e.time == datetime.fromtimestamp(1795256586, timezone.utc)
    old = event_from_dict({"status": "start", "id": CID, "time": 1795256586})
    assert old is not None and old.action == "start" and old.container_id == CID and old.name == ""


def test_event_from_dict_ignores_other_types():
    assert event_from_dict({"Type": "network", "Action": "connect", "Actor": {"ID": "n"}}) is None
    assert event_from_dict({"Type": "container", "Actor": {"ID": CID}}) is None


# --------------------------------------------------------------------------- stats


def test_cpu_percent_from_two_samples():
    assert cpu_percent_between(None, 10, 10) is None
    # 0.5 s of CPU in 1 s of wall time: 50 % of one core
    assert cpu_percent_between((1_000_000_000, 0), 1_500_000_000, 1_000_000_000) == pytest.approx(50.0)
    # two cores busy: 200 %
    assert cpu_percent_between((0, 0), 2_000_000_000, 1_000_000_000) == pytest.approx(200.0)
    assert cpu_percent_between((5, 10), 1, 20) is None  # counter went back (restart)
    assert cpu_percent_between((5, 10), 6, 10) is None  # no wall time passed


def test_stats_from_api_v1_unlimited_and_cache():
    d = {"read": "2026-11-21T10:26:56.123456789Z", "preread": "0001-01-01T00:00:00Z",
         "cpu_stats": {"cpu_usage": {"total_usage": 123456789}},
         "precpu_stats": {"cpu_usage": {"total_usage": 0}},
         "memory_stats": {"usage": 10_000_000, "limit": 25276514304,
                          "stats": {"total_inactive_file": 4_000_000}}}
    cpu, read_ns, mem, limit = stats_from_api(d, host_total=25276514304)
    assert cpu == 123456789
    assert read_ns == int(datetime(2026, 11, 21, 10, 26, 56, tzinfo=timezone.utc).timestamp()) * 10**9 + 123456000
    assert mem == 6_000_000
    assert limit is None  # limit == host RAM means unlimited


def test_stats_from_api_v2_limited():
    d = {"read": "2026-11-21T10:26:56Z", "cpu_stats": {"cpu_usage": {"total_usage": 5}},
         "memory_stats": {"usage": 3_000, "limit": 8 * 2**20, "stats": {"inactive_file": 1_000}}}
    _, _, mem, limit = stats_from_api(d, host_total=2**34)
    assert mem == 2_000
    assert limit == 8 * 2**20


def _write_v1(root, cid, *, cpu_ns, usage, limit, inactive, rel=None):
    rel = rel or f"docker/{cid}"  # the cgroupfs driver; systemd: system.slice/docker-<id>.scope
    mem = root / "memory" / rel
    cpu = root / "cpuacct" / rel
    mem.mkdir(parents=True, exist_ok=True)
    cpu.mkdir(parents=True, exist_ok=True)
    (cpu / "cpuacct.usage").write_text(f"{cpu_ns}\n")
    (mem / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (mem / "memory.limit_in_bytes").write_text(f"{limit}\n")
    (mem / "memory.stat").write_text(f"cache 0\nrss {usage}\ntotal_inactive_file {inactive}\n")


def test_cgroup_v1_reader(tmp_path):
    clock = iter([0, 1_000_000_000, 2_000_000_000, 3_000_000_000])
    r = CgroupStatsReader(str(tmp_path), clock_ns=lambda: next(clock))
    assert r.version is None and not r.available()
    (tmp_path / "memory").mkdir()
    (tmp_path / "cpuacct").mkdir()
    r = CgroupStatsReader(str(tmp_path), clock_ns=lambda: next(clock))
    assert r.version == 1 and r.available() and not r.available([CID])
    _write_v1(tmp_path, CID, cpu_ns=1_000_000_000, usage=50_000, limit=9223372036854771712, inactive=10_000)
    assert r.available([CID])
    first = r.read([CID])
    assert first == {CID: (None, 40_000, None)}  # unlimited -> None
    _write_v1(tmp_path, CID, cpu_ns=1_750_000_000, usage=60_000, limit=8 * 2**20, inactive=0)
    second = r.read([CID])
    assert second[CID][0] == pytest.approx(75.0)
    # The limit is the engine's record (the inspect's HostConfig.Memory), not read here.
    assert second[CID][1:] == (60_000, None)
    # forgotten when not asked for, so a later read starts over
    assert r.read([]) == {}
    assert r.read([CID])[CID][0] is None


def test_cgroup_reader_leaves_out_unknown_ids(tmp_path):
    (tmp_path / "memory").mkdir()
    (tmp_path / "cpuacct").mkdir()
    _write_v1(tmp_path, CID, cpu_ns=1, usage=5, limit=10, inactive=0)
    r = CgroupStatsReader(str(tmp_path))
    assert set(r.read([CID, "0" * 64])) == {CID}


def _write_v2(root, cid, *, usage_usec, current, limit="max", inactive):
    """A cgroup v2 container (systemd driver); returns its directory."""
    (root / "cgroup.controllers").write_text("cpu memory\n")
    d = root / "system.slice" / f"docker-{cid}.scope"
    d.mkdir(parents=True, exist_ok=True)
    (d / "memory.current").write_text(f"{current}\n")
    (d / "memory.max").write_text(f"{limit}\n")
    (d / "memory.stat").write_text(f"anon {current}\ninactive_file {inactive}\n")
    (d / "cpu.stat").write_text(f"usage_usec {usage_usec}\nuser_usec 1\n")
    return d


def test_cgroup_v2_reader(tmp_path):
    d = _write_v2(tmp_path, CID, usage_usec=1000000, current=4096, inactive=1024)
    clock = iter([0, 2_000_000_000])
    r = CgroupStatsReader(str(tmp_path), clock_ns=lambda: next(clock))
    assert r.version == 2
    assert r.read([CID]) == {CID: (None, 3072, None)}
    (d / "cpu.stat").write_text("usage_usec 3000000\n")
    (d / "memory.max").write_text("1048576\n")
    pct, mem, limit = r.read([CID])[CID]
    assert pct == pytest.approx(100.0)  # 2 s of CPU in 2 s: one full core
    assert limit is None  # the inspect's, not memory.max


def test_cgroup_reader_keeps_the_memory_of_an_idle_container_until_due(tmp_path):
    """Memory files are read again when the CPU counter moved, or when the figures
    are due (MEMORY_IDLE_REREAD_S, spread by id); a stopped container is seen at once."""
    from dockwarden.observe import stats

    now = [0]
    d = _write_v2(tmp_path, CID, usage_usec=1000, current=4096, inactive=0)
    r = CgroupStatsReader(str(tmp_path), clock_ns=lambda: now[0])
    assert r.read([CID])[CID][1:] == (4096, None)
    due = r._reread_after_ns(CID)
    bound = int(stats.MEMORY_IDLE_REREAD_S * 1e9)
    assert bound // 2 <= due <= bound
    # Idle (the CPU counter has not moved): the figures read before are kept.
    (d / "memory.current").write_text("8192\n")
    now[0] = due - 1
    assert r.read([CID])[CID] == (0.0, 4096, None)
    # Due: read again although still idle.
    now[0] = due
    assert r.read([CID])[CID][1] == 8192
    # The CPU counter moved: read at once.
    (d / "memory.current").write_text("16384\n")
    (d / "cpu.stat").write_text("usage_usec 2000\n")
    now[0] = due + 1
    assert r.read([CID])[CID][1] == 16384
    # Stopped (its cgroup is gone): left out, idle or not.
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    now[0] = due + 2
    assert r.read([CID]) == {}
    # Ids seen together are not all due on the same pass.
    ids = [f"{i:064x}" for i in range(50)]
    assert len({r._reread_after_ns(i) for i in ids}) > 40


def test_cgroup_v2_cgroupfs_path(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    d = tmp_path / "docker" / CID
    d.mkdir(parents=True)
    (d / "memory.current").write_text("100\n")
    (d / "memory.max").write_text("max\n")
    (d / "memory.stat").write_text("inactive_file 0\n")
    (d / "cpu.stat").write_text("usage_usec 1\n")
    r = CgroupStatsReader(str(tmp_path))
    assert r.read([CID]) == {CID: (None, 100, None)}


def test_prime_takes_the_first_cpu_sample_of_every_container_cgroup_found(tmp_path):
    """``once`` starts its CPU interval before asking the engine anything (issue 9):
    the ids come from the cgroup directories, both drivers, nothing else counts."""
    (tmp_path / "memory").mkdir()
    (tmp_path / "cpuacct").mkdir()
    other = "b" * 64
    _write_v1(tmp_path, CID, cpu_ns=1_000_000_000, usage=5, limit=10, inactive=0)
    _write_v1(tmp_path, other, cpu_ns=0, usage=7, limit=10, inactive=0, rel=f"system.slice/docker-{other}.scope")
    for junk in ("docker/not-a-container", "system.slice/cron.service", f"docker/{CID[:12]}"):
        (tmp_path / "cpuacct" / junk).mkdir(parents=True)
    clock = iter([0, 0, 500_000_000, 500_000_000])
    r = CgroupStatsReader(str(tmp_path), clock_ns=lambda: next(clock))
    assert r.prime() == 2
    _write_v1(tmp_path, CID, cpu_ns=1_250_000_000, usage=5, limit=10, inactive=0)
    got = r.read([CID, other])
    assert got[CID][0] == pytest.approx(50.0)  # 0.25 s of CPU over the 0.5 s since prime
    assert got[other][0] == pytest.approx(0.0)
    # Nothing found (no docker cgroups, or no cgroups at all): nothing primed, nothing raised.
    assert CgroupStatsReader(str(tmp_path / "none")).prime() == 0


def test_prime_reads_cgroup_v2_counters(tmp_path):
    d = _write_v2(tmp_path, CID, usage_usec=1000000, current=4096, inactive=0)
    clock = iter([0, 1_000_000_000])
    r = CgroupStatsReader(str(tmp_path), clock_ns=lambda: next(clock))
    assert r.prime() == 1
    (d / "cpu.stat").write_text("usage_usec 1500000\n")
    assert r.read([CID])[CID][0] == pytest.approx(50.0)


# --------------------------------------------------------------------------- host and world


def test_host_sampler(tmp_path):
    t = [0.0]
    s = HostSampler(clock=lambda: t[0])
    t[0] = 0.05
    h1 = s.sample(["/", str(tmp_path), "/", "/no/such/path", None])
    assert h1.cpu_percent is None  # 50 ms after the baseline: too short
    assert [d.path for d in h1.disks] == ["/", str(tmp_path)]
    assert h1.disk("/").total_bytes > 0 and 0 <= h1.disk("/").percent <= 100
    assert h1.mem_total_bytes >= h1.mem_available_bytes > 0
    assert h1.cpu_count >= 1 and h1.load1 >= 0
    assert h1.boot_time is not None and h1.boot_time.tzinfo is not None and h1.boot_time < model.utcnow()
    time.sleep(0.3)  # let the kernel's CPU counters advance
    t[0] = 1.0
    h2 = s.sample(["/"])
    assert h2.cpu_percent is not None and 0.0 <= h2.cpu_percent <= 100.0


def _cs(cid: str, name: str, state: str = "running") -> model.ContainerState:
    return model.ContainerState(id=cid, name=name, image="img", state=state)


def _world(*cs: model.ContainerState) -> model.WorldState:
    return model.WorldState(node="n1", observed_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
                            host=None, containers=tuple(cs))


def test_replace_containers():
    w = _world(_cs("a1", "alpha"), _cs("b1", "beta"), _cs("c1", "gamma"))
    w2 = replace_containers(w, [_cs("b1", "beta", "exited"), _cs("a2", "alpha"), _cs("d1", "delta")],
                            removed=["c1"])
    assert [(c.id, c.name, c.state) for c in w2.containers] == [
        ("a2", "alpha", "running"),  # recreated: same name, new id
        ("b1", "beta", "exited"),
        ("d1", "delta", "running"),
    ]
    assert w.containers[2].name == "gamma"  # input untouched
    assert w2.node == "n1" and w2.observed_at == w.observed_at
    w3 = replace_containers(w2, [], removed=["beta"])
    assert [c.name for c in w3.containers] == ["alpha", "delta"]


def test_write_world_atomic_json(tmp_path):
    w = _world(_cs("a1", "alpha"))
    p = tmp_path / "world.json"
    write_world(w, p)
    write_world(replace_containers(w, [_cs("b1", "beta")]), p)
    data = json.loads(p.read_text())
    assert data["node"] == "n1"
    assert data["observed_at"] == "2026-01-01T00:00:00.000Z"
    assert [c["name"] for c in data["containers"]] == ["alpha", "beta"]
    assert [f.name for f in tmp_path.iterdir()] == ["world.json"]  # no temp files left


def test_world_document_memo_gives_the_same_document_and_follows_every_change():
    """The memo of container documents (world.json at 1 000 containers) never
    changes what is written: a new spec is converted again, new usage figures and
    any other changed field show, environment values never leak, and containers
    gone are dropped from the memo."""
    spec1 = {"image": "img", "environment": ["TOKEN=s3cret", "MODE=a"], "labels": {"k": "v"}}
    a = dataclasses.replace(_cs("a1", "alpha"), spec=spec1)
    b = dataclasses.replace(_cs("b1", "beta"), spec={"image": "img"})
    memo: dict = {}
    w = _world(a, b)
    assert world_document(w, memo) == world_document(w)
    assert set(memo) == {"a1", "b1"}
    doc = world_document(w, memo)  # from the memo
    assert doc["containers"][0]["spec"] == {"image": "img", "labels": {"k": "v"}, "environment_keys": ["TOKEN", "MODE"]}
    assert "s3cret" not in json.dumps(doc)
    # the container is inspected again: a new spec object replaces the memo's
    a2 = dataclasses.replace(a, spec={"image": "img:2", "environment": ["MODE=b"]})
    doc2 = world_document(_world(a2), memo)
    assert doc2["containers"][0]["spec"] == {"image": "img:2", "environment_keys": ["MODE"]}
    assert doc2 == world_document(_world(a2))
    assert set(memo) == {"a1"}  # beta is gone
    # A stats read changes only the usage figures: the memo serves the rest, with the new figures.
    a3 = a2.with_usage(12.5, 4096, None)
    assert a3 is not a2 and a2.cpu_percent is None  # a copy: states are never changed in place
    assert a3.with_usage(12.5, 4096, None) is a3  # figures unchanged (an idle container): no copy
    doc3 = world_document(_world(a3), memo)
    assert doc3 == world_document(_world(a3))
    assert (doc3["containers"][0]["cpu_percent"], doc3["containers"][0]["memory_bytes"]) == (12.5, 4096)
    assert doc2["containers"][0]["cpu_percent"] is None  # an earlier document is never changed
    # Any other field changed, with the very same spec object: never served stale.
    a4 = dataclasses.replace(a3, state="exited", exit_code=137)
    doc4 = world_document(_world(a4), memo)
    assert (doc4["containers"][0]["state"], doc4["containers"][0]["exit_code"]) == ("exited", 137)
    assert doc4 == world_document(_world(a4))


def test_write_world_missing_dir_raises(tmp_path):
    with pytest.raises(OSError):
        write_world(_world(), tmp_path / "nope" / "world.json")


def test_plan_inspection_reinspects_what_events_named_even_when_the_list_looks_unchanged():
    """The list may lag a `die` event: a container an event named is inspected
    again even when its list key did not change (bench/mttr.py --chain once stalled
    30 s on a crash the list still showed running)."""
    from dockwarden.observe.plan import plan_inspection
    from builders import container

    running = ("running", "/c", ())
    known = {"id-a": (running, container("a", id="id-a")), "id-b": (running, container("b", id="id-b")),
             "id-c": (running, container("c", id="id-c"))}
    keys = {"id-a": running, "id-b": ("exited", "/b", ("137",)), "id-c": running, "id-new": running}
    reuse, todo = plan_inspection(keys, known, incremental=True)
    assert sorted(reuse) == ["id-a", "id-c"] and todo == ["id-b", "id-new"]
    reuse, todo = plan_inspection(keys, known, incremental=True, named={"id-c"})
    assert sorted(reuse) == ["id-a"] and todo == ["id-b", "id-c", "id-new"]
    reuse, todo = plan_inspection(keys, known, incremental=True, named={"/a"})  # by name too
    assert sorted(reuse) == ["id-c"] and todo == ["id-a", "id-b", "id-new"]
    reuse, todo = plan_inspection(keys, known, incremental=False)
    assert reuse == {} and todo == list(keys)


def test_sparse_split_inspects_everything_whose_status_shows_trouble():
    """A sparse observation (``once``) builds only running containers with nothing
    wrong in their status from the list; exited, restarting, paused, created,
    unhealthy and still-starting ones are inspected (exit code, OOM, restarts, health)."""
    from dockwarden.observe.plan import list_key, sparse_split

    def key(state: str, status: str) -> tuple:
        return list_key({"State": state, "Names": ["/x"], "Status": status})

    keys = {"up": key("running", "Up 2 hours"), "healthy": key("running", "Up 5 minutes (healthy)"),
            "sick": key("running", "Up 5 minutes (unhealthy)"),
            "starting": key("running", "Up 3 seconds (health: starting)"),
            "exited": key("exited", "Exited (137) 2 seconds ago"), "loop": key("restarting", "Restarting (1) 1 second ago"),
            "paused": key("paused", "Up 1 hour (Paused)"), "new": key("created", "Created")}
    light, rest = sparse_split(keys, list(keys))
    assert light == ["up", "healthy"]
    assert rest == ["sick", "starting", "exited", "loop", "paused", "new"]


def test_container_state_from_a_list_entry():
    from dockwarden.observe.inspect import container_state_from_list

    entry = {"Id": "abc", "Names": ["/web-1"], "Image": "nginx:1", "State": "running", "Created": 1700000000,
             "Status": "Up 5 minutes (healthy)", "Labels": {"com.docker.compose.project": "p",
                                                             "com.docker.compose.service": "web"}}
    c = container_state_from_list(entry)
    assert (c.id, c.name, c.image, c.state, c.health) == ("abc", "web-1", "nginx:1", "running", "healthy")
    assert (c.compose_project, c.compose_service) == ("p", "web")
    assert c.created_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert c.inspected is False and c.spec is None and c.started_at is None
    assert container_state_from_list({**entry, "Status": "Up 1 second (health: starting)"}).health == "starting"
    assert container_state_from_list({**entry, "Status": "Up 1 hour"}).health is None


def test_keyed_value_matches_whole_keys_only():
    from dockwarden.observe.stats import _keyed_value
    v1 = b"cache 7\ninactive_file 11\ntotal_cache 7\ntotal_inactive_file 13\n"
    assert _keyed_value(v1, b"total_inactive_file") == 13
    assert _keyed_value(v1, b"inactive_file") == 11
    assert _keyed_value(b"total_inactive_file 13\ninactive_file 11\n", b"inactive_file") == 11  # not a suffix
    assert _keyed_value(v1, b"cache") == 7  # the first line
    assert _keyed_value(b"usage_usec 42", b"usage_usec") == 42  # no final newline
    assert _keyed_value(v1, b"inactive_anon") == 0  # absent
    with pytest.raises(ValueError):
        _keyed_value(b"usage_usec nope\n", b"usage_usec")
