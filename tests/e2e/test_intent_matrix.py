"""Issue 8's e2e intent matrix: one test per row of the README's table "The
intent model: what you do, what dockwarden records, what it does", on a real
engine, with real daemons (nginx and apache2 from a Debian root filesystem, with
their own stop signals) where the row is about a stop signal.

Each test starts a real `dockwarden run`, waits for its ``daemon_ready``, does
what an operator does (the docker SDK, the `docker` and `docker-compose` CLIs,
the `dockwarden` CLI), then checks both what dockwarden recorded (the
``intent_changed`` events and `dockwarden status --json`) and what the container
does afterwards. "Nothing happens" is checked only after proving the daemon took
the operator's action in (its ``intent_changed``, or the command's end) and then
ran two full passes (``world.json``; ``--resync 1``).

Rows covered elsewhere: the engine restarting (test_engine_restart.py) and the
host rebooting (test_recovery_e2e.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import docker
import pytest
import yaml

from conftest import (FAST_POLICY, HTTPD_IMAGE, IMAGE, NGINX_IMAGE, RUN_ID, TEST_LABEL, wait_for, write_inventory,
                      write_policy)
from dockwarden.model import parse_time
from engine_proxy import EngineProxy, engine_socket
from dockwarden.operator_intent import NON_STOP_SIGNAL_DIE_S

RESYNC_S = 1.0
#: Actions that would bring a container back (what must not happen after an operator stop).
STARTING_ACTIONS = {"start", "restart", "recreate", "compose_up"}


# --------------------------------------------------------------------------- helpers


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def docker_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The `docker` CLI, as an operator types it (the machine's engine)."""
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"docker {' '.join(args)} exited {r.returncode}: {r.stderr}"
    return r


def state(client: docker.DockerClient, name: str) -> dict | None:
    """The container's ``State``, or None when it does not exist."""
    try:
        return client.api.inspect_container(name)["State"]
    except docker.errors.NotFound:
        return None


def statuses(d) -> dict[str, dict]:
    """Each service's row in `dockwarden status --json` (intent, intent_source,
    state...). A CLI run costs about 2.5 s here (imports), so tests read it once,
    at the end; the intent_changed events show the steps before."""
    r = d.cli("status", "--json", check=True)
    return {s["service"]: s for s in json.loads(r.stdout)["services"]}


def status_of(d, service: str) -> dict:
    return statuses(d)[service]


def events_of(d, service: str, type_: str, after: int = 0) -> list[dict]:
    return [e for e in d.events()[after:] if e["type"] == type_ and e.get("service") == service]


def wait_intent(d, service: str, intent: str, after: int, timeout: float = 20) -> dict:
    """The next ``intent_changed`` of the service to ``intent`` (index >= after)."""
    return d.wait_event(lambda e: e["type"] == "intent_changed" and e.get("service") == service
                        and e["details"].get("intent") == intent, timeout=timeout, after=after)


def settle(d, since: datetime | dict) -> None:
    """Two full passes after ``since`` (a time, or an event's ``ts``): whatever the
    daemon would do about what happened before ``since`` has been decided."""
    t = parse_time(since["ts"]) if isinstance(since, dict) else since
    d.wait_full_passes(2, after=t, timeout=20)


def assert_nothing_started(d, service: str, after: int) -> None:
    acts = [e for e in events_of(d, service, "action_started", after) if e.get("action") in STARTING_ACTIONS]
    assert not acts, f"dockwarden acted on {service} against the operator: {acts}\n{d.log_text()[-3000:]}"


def assert_never_taken_back(d, service: str, after: int) -> None:
    back = [e for e in events_of(d, service, "intent_changed", after) if e["details"].get("taken_back")]
    assert not back, f"the operator's stop of {service} was taken back: {back}"


def ready_daemon(daemon_factory, tmp_path: Path, services: list[dict], *, policy: str = FAST_POLICY,
                 env: dict[str, str] | None = None):
    inv = write_inventory(tmp_path / "inv", services)
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", policy), env=env).start(resync=RESYNC_S)
    d.wait_ready()
    return d


class ComposeProject:
    """A docker-compose (v1) project in its own directory, labelled for cleanup."""

    def __init__(self, wd: Path, project: str, services: dict[str, dict]):
        self.bin = shutil.which("docker-compose")
        if self.bin is None:
            pytest.fail("docker-compose is not installed (scripts/ensure-docker.sh installs it)")
        self.project = project
        self.file = wd / "docker-compose.yml"
        wd.mkdir(parents=True, exist_ok=True)
        for spec in services.values():
            spec.setdefault("network_mode", "none")
            spec.setdefault("labels", {})[TEST_LABEL] = RUN_ID
        self.file.write_text(yaml.safe_dump({"version": "2.4", "services": services}, sort_keys=False))

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [self.bin, "-p", self.project, "-f", str(self.file), *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.file.parent)
        assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}: {r.stderr}"
        return r

    def container(self, client: docker.DockerClient, service: str):
        found = client.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]})
        assert len(found) <= 1, found  # one container per service in these projects; several is a test bug
        return found[0] if found else None

    def inventory_entry(self, service: str, **kw) -> dict:
        return {"name": service, "compose_project": self.project, "compose_file": str(self.file), **kw}


@pytest.fixture
def compose(tmp_path, docker_client, request):
    made: list[ComposeProject] = []

    def make(services: dict[str, dict]) -> ComposeProject:
        p = ComposeProject(tmp_path / f"compose{len(made)}", f"dwt{RUN_ID}m{len(made)}{os.getpid() % 1000}",
                           services)
        made.append(p)
        return p

    yield make
    for p in made:
        subprocess.run([p.bin, "-p", p.project, "-f", str(p.file), "down", "-t", "1"], capture_output=True,
                       timeout=120)
        for c in docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={p.project}"}):
            c.remove(force=True)


# --------------------------------------------------------------------------- the images


@pytest.mark.parametrize("kind,stop_signal,killed_by", [("nginx", "SIGQUIT", "3"), ("httpd", "SIGWINCH", "28")])
def test_real_image_serves_http_and_stops_on_its_own_signal(kind, stop_signal, killed_by, real_images, containers,
                                                            docker_client):
    image = real_images[kind]
    assert docker_client.api.inspect_image(image)["Config"]["StopSignal"] == stop_signal
    c = containers.run(kind, None, image=image)  # the default bridge: reachable from the host
    name = containers.name(kind)
    assert docker_client.api.inspect_container(name)["Config"]["StopSignal"] == stop_signal
    ip = wait_for(lambda: docker_client.api.inspect_container(name)["NetworkSettings"]["IPAddress"], 10,
                  what="an address")

    def answers() -> int | None:
        try:
            with urllib.request.urlopen(f"http://{ip}/", timeout=2) as r:
                return r.status
        except OSError:
            return None

    assert wait_for(answers, 20, interval=0.2, what=f"{kind} answering HTTP") == 200
    since = int(time.time()) - 1
    t0 = time.monotonic()
    c.stop()  # no timeout given: the engine's default grace period (10 s) before SIGKILL
    took = time.monotonic() - t0
    st = state(docker_client, name)
    # Handled, not SIGKILLed after the grace period: quick, and a clean exit (137 would be SIGKILL).
    assert took < 5, f"{kind} took {took:.1f} s to stop: its stop signal was not handled"
    assert st["ExitCode"] == 0 and not st["OOMKilled"], st
    kills = [e["Actor"]["Attributes"]["signal"] for e in docker_client.api.events(
        since=since, until=int(time.time()) + 1, decode=True,
        filters={"container": [c.id], "event": ["kill"]})]
    assert kills == [killed_by], f"signals the engine sent: {kills}"


# --------------------------------------------------------------------------- docker stop / kill


STOP_ROWS = {
    # short: (image, command, extra create kwargs, the signal `docker stop` sends, expected exit code)
    "nginx": (NGINX_IMAGE, None, {}, "SIGQUIT", 0),
    "httpd": (HTTPD_IMAGE, None, {}, "SIGWINCH", 0),
    # docker-init (tini) is PID 1 and passes SIGUSR1 on: `sleep` dies of it (default action), 128 + 10.
    "busybox-usr1": (IMAGE, ["sleep", "3600"], {"stop_signal": "SIGUSR1", "init": True}, "SIGUSR1", 138),
}


@pytest.mark.parametrize("short", list(STOP_ROWS))
def test_docker_stop_with_the_image_stop_signal_stays_stopped(short, real_images, tmp_path, containers,
                                                              daemon_factory, docker_client):
    """Row `docker stop X` (SIGTERM or the image's STOPSIGNAL): kill -> die -> stop;
    intent stopped (observed); it stays stopped."""
    image, command, kw, sig, exit_code = STOP_ROWS[short]
    containers.run(short, command, image=image, network_mode="none", **kw)
    name = containers.name(short)
    d = ready_daemon(daemon_factory, tmp_path, [{"name": "svc", "container": name}])
    n = len(d.events())
    t0 = time.monotonic()
    docker_cli("stop", name)  # the engine's default grace period
    assert time.monotonic() - t0 < 5, "the stop signal was not handled (SIGKILL after the grace period)"
    assert state(docker_client, name)["ExitCode"] == exit_code
    ev = wait_intent(d, "svc", "stopped", after=n)
    assert ev["details"]["source"] == "observed" and ev["details"]["signal"] == sig, ev
    settle(d, ev)
    assert not state(docker_client, name)["Running"], "dockwarden started what the operator stopped"
    assert_nothing_started(d, "svc", n)
    row = status_of(d, "svc")
    assert (row["intent"], row["intent_source"], row["state"]) == ("stopped", "observed", "exited")


def test_docker_kill_stays_stopped_and_docker_start_makes_it_running_again(tmp_path, containers, daemon_factory,
                                                                           docker_client):
    """Rows `docker kill X` (SIGKILL: kill -> die; stopped, nothing) and `docker start X`
    (start; running again: a later crash is healed)."""
    containers.run("k", ["sleep", "3600"], network_mode="none")
    name = containers.name("k")
    d = ready_daemon(daemon_factory, tmp_path, [{"name": "svc", "container": name}])
    n = len(d.events())
    docker_cli("kill", name)
    ev = wait_intent(d, "svc", "stopped", after=n)
    assert ev["details"]["signal"] == "SIGKILL", ev
    settle(d, ev)
    assert state(docker_client, name)["ExitCode"] == 137 and not state(docker_client, name)["Running"]
    assert_nothing_started(d, "svc", n)
    assert status_of(d, "svc")["intent"] == "stopped"

    m = len(d.events())
    docker_cli("start", name)
    ev = wait_intent(d, "svc", "running", after=m)
    assert ev["details"]["source"] == "observed"
    # Running again means supervised again: a crash is healed.
    k = len(d.events())
    pid = state(docker_client, name)["Pid"]
    os.kill(pid, signal.SIGKILL)
    d.wait_event(lambda e: e["type"] == "recovered" and e.get("service") == "svc", timeout=20, after=k)
    st = state(docker_client, name)
    assert st["Running"] and st["Pid"] != pid
    assert not events_of(d, "svc", "intent_changed", k)


def test_docker_kill_hup_reloads_nginx_and_a_later_crash_is_still_healed(real_images, tmp_path, containers,
                                                                          daemon_factory, docker_client):
    """Row `docker kill -s HUP X` that only reloads: kill, no die; intent unchanged;
    nothing done; and the service is still supervised (a crash afterwards is healed)."""
    containers.run("hup", None, image=NGINX_IMAGE, network_mode="none")
    name = containers.name("hup")
    d = ready_daemon(daemon_factory, tmp_path, [{"name": "svc", "container": name}])

    def workers() -> set[str]:
        top = docker_client.api.top(name)
        cmd = top["Titles"].index("CMD")
        pid = top["Titles"].index("PID")
        return {p[pid] for p in top["Processes"] if "worker process" in p[cmd]}

    master = state(docker_client, name)["Pid"]
    old_workers = wait_for(workers, 10, what="nginx workers")
    n = len(d.events())
    t_hup = time.monotonic()
    docker_cli("kill", "-s", "HUP", name)
    sent = now_utc()
    # nginx reloaded: new workers, same master.
    wait_for(lambda: (w := workers()) and not (w & old_workers), 10, what="nginx's workers replaced (reload)")
    settle(d, sent)
    st = state(docker_client, name)
    assert st["Running"] and st["Pid"] == master
    assert not events_of(d, "svc", "intent_changed", n), "a reload was read as a stop"
    assert not events_of(d, "svc", "action_started", n)
    # A die more than NON_STOP_SIGNAL_DIE_S after a HUP is a crash, not the HUP's doing
    # (operator_intent.py); the wait keeps this row about the reload, not that rule.
    time.sleep(max(0.0, NON_STOP_SIGNAL_DIE_S + 0.5 - (time.monotonic() - t_hup)))
    k = len(d.events())
    os.kill(master, signal.SIGKILL)  # from the host: a crash
    d.wait_event(lambda e: e["type"] == "recovered" and e.get("service") == "svc", timeout=20, after=k)
    assert state(docker_client, name)["Running"]
    assert not events_of(d, "svc", "intent_changed", n)
    assert status_of(d, "svc")["intent"] == "running"


def test_crash_from_the_host_is_healed(real_images, tmp_path, containers, daemon_factory, docker_client):
    """Row: the process dies by itself (kill -9 from the host): die with no kill;
    intent unchanged; drift stopped, started again."""
    containers.run("crash", None, image=HTTPD_IMAGE, network_mode="none")
    name = containers.name("crash")
    d = ready_daemon(daemon_factory, tmp_path, [{"name": "svc", "container": name}])
    n = len(d.events())
    pid = state(docker_client, name)["Pid"]
    os.kill(pid, signal.SIGKILL)
    drift = d.wait_event(lambda e: e["type"] == "drift_detected" and e.get("service") == "svc", timeout=15, after=n)
    assert drift["drift"] == "stopped"
    started = d.wait_event(lambda e: e["type"] == "action_started" and e.get("service") == "svc", after=n)
    assert started["action"] == "start" and started["details"]["by"] == "daemon"
    d.wait_event(lambda e: e["type"] == "recovered" and e.get("service") == "svc", timeout=20, after=n)
    st = state(docker_client, name)
    assert st["Running"] and st["Pid"] != pid
    assert not events_of(d, "svc", "intent_changed", n), "a crash was read as the operator's"
    row = status_of(d, "svc")
    assert (row["intent"], row["intent_source"], row["state"]) == ("running", "inventory", "running")


def test_docker_restart_ends_running_and_dockwarden_does_nothing(real_images, tmp_path, containers, daemon_factory,
                                                                 docker_client):
    """Row `docker restart X`: kill -> die -> stop -> start; running in the end; nothing done."""
    containers.run("rs", None, image=NGINX_IMAGE, network_mode="none")
    name = containers.name("rs")
    d = ready_daemon(daemon_factory, tmp_path, [{"name": "svc", "container": name}])
    n = len(d.events())
    before = state(docker_client, name)["StartedAt"]
    docker_cli("restart", name)
    after_restart = state(docker_client, name)["StartedAt"]
    assert after_restart != before
    ev = wait_intent(d, "svc", "running", after=n)
    settle(d, ev)
    st = state(docker_client, name)
    assert st["Running"] and st["StartedAt"] == after_restart, "dockwarden restarted it again"
    assert not events_of(d, "svc", "action_started", n)
    row = status_of(d, "svc")
    assert (row["intent"], row["state"]) == ("running", "running")


def test_docker_pause_is_kept_paused_and_unpause_is_running(real_images, tmp_path, containers, daemon_factory,
                                                            docker_client):
    """Rows `docker pause X` (stopped; never unpaused by dockwarden) and `docker unpause X` (running)."""
    containers.run("pz", None, image=NGINX_IMAGE, network_mode="none")
    name = containers.name("pz")
    d = ready_daemon(daemon_factory, tmp_path, [{"name": "svc", "container": name}])
    n = len(d.events())
    docker_cli("pause", name)
    ev = wait_intent(d, "svc", "stopped", after=n)
    settle(d, ev)
    assert state(docker_client, name)["Paused"], "dockwarden unpaused what the operator paused"
    assert not events_of(d, "svc", "action_started", n)
    row = status_of(d, "svc")
    assert (row["intent"], row["state"]) == ("stopped", "paused")

    m = len(d.events())
    docker_cli("unpause", name)
    ev = wait_intent(d, "svc", "running", after=m)
    settle(d, ev)
    st = state(docker_client, name)
    assert st["Running"] and not st["Paused"]
    assert not events_of(d, "svc", "action_started", n)


def test_docker_stop_then_rm_stays_gone(real_images, tmp_path, containers, daemon_factory, docker_client):
    """Row `docker stop X; docker rm X`: ... stop -> destroy; intent stays stopped; gone means gone."""
    containers.run("gone", None, image=NGINX_IMAGE, network_mode="none")
    name = containers.name("gone")
    d = ready_daemon(daemon_factory, tmp_path, [{"name": "svc", "container": name}])
    n = len(d.events())
    docker_cli("stop", name)
    wait_intent(d, "svc", "stopped", after=n)
    docker_cli("rm", name)
    settle(d, now_utc())
    assert state(docker_client, name) is None, "dockwarden recreated what the operator removed"
    assert_nothing_started(d, "svc", n)
    assert_never_taken_back(d, "svc", n)
    row = status_of(d, "svc")
    assert (row["intent"], row["intent_source"], row["state"]) == ("stopped", "observed", "missing")


def test_docker_rm_f_of_a_running_container_is_recreated(real_images, tmp_path, containers, daemon_factory,
                                                         docker_client):
    """Row `docker rm -f X` of a running container: kill (SIGKILL) -> die -> destroy, no
    stop; taken back to running; recreated from the recorded spec."""
    containers.run("rmf", None, image=HTTPD_IMAGE, network_mode="none", labels={"role": "web"})
    name = containers.name("rmf")
    d = ready_daemon(daemon_factory, tmp_path, [{"name": "svc", "container": name}])  # the first pass records the spec
    old_id = docker_client.containers.get(name).id
    n = len(d.events())
    docker_cli("rm", "-f", name)
    back = d.wait_event(lambda e: e["type"] == "intent_changed" and e.get("service") == "svc"
                        and e["details"].get("taken_back"), timeout=20, after=n)
    assert back["details"]["intent"] is None  # back to the inventory's `running`
    started = d.wait_event(lambda e: e["type"] == "action_started" and e.get("service") == "svc", after=n)
    assert started["action"] == "recreate"
    d.wait_event(lambda e: e["type"] == "recovered" and e.get("service") == "svc", timeout=30, after=n)
    new = docker_client.containers.get(name)
    assert new.id != old_id and new.status == "running"
    assert new.labels["role"] == "web" and new.attrs["Config"]["StopSignal"] == "SIGWINCH"
    row = status_of(d, "svc")
    assert (row["intent"], row["state"]) == ("running", "running")


def test_stopped_while_dockwarden_was_not_running_is_replayed(real_images, tmp_path, containers, daemon_factory,
                                                              docker_client):
    """Row: you stop a container while dockwarden is not running; the daemon had seen
    events before it stopped, so it replays what it missed: stopped (observed), nothing."""
    containers.run("away", None, image=NGINX_IMAGE, network_mode="none")
    name = containers.name("away")
    d = ready_daemon(daemon_factory, tmp_path, [{"name": "svc", "container": name}])
    n = len(d.events())
    docker_cli("restart", name)  # events the daemon sees (its replay starts from the last one)
    wait_intent(d, "svc", "running", after=n)
    assert d.stop() == 0
    docker_cli("stop", name)
    m = len(d.events())
    d.start(resync=RESYNC_S)
    d.wait_ready()
    ev = wait_intent(d, "svc", "stopped", after=m)
    settle(d, ev)
    assert not state(docker_client, name)["Running"]
    assert_nothing_started(d, "svc", m)
    assert status_of(d, "svc")["intent"] == "stopped"


def test_stopped_while_dockwarden_was_not_running_on_a_quiet_engine(tmp_path, private_engine, daemon_factory):
    """Row: you stop a container while dockwarden is not running, on an engine
    where the daemon never saw an event (nothing to replay from): Docker's
    HasBeenManuallyStopped says the operator stopped it: stopped (observed), nothing.

    A private engine, so that no other test's containers make events (the shared
    engine is never quiet)."""
    client = private_engine.client()
    name = f"dwt-{RUN_ID}-quiet"
    client.containers.run(IMAGE, ["sleep", "3600"], name=name, detach=True, network_mode="none",
                          labels={TEST_LABEL: RUN_ID}, stop_signal="SIGKILL")
    d = ready_daemon(daemon_factory, tmp_path, [{"name": "svc", "container": name}],
                     env={"DOCKER_HOST": private_engine.host})
    assert d.stop() == 0
    client.api.stop(name)  # `docker stop`
    assert state(client, name)["Running"] is False
    m = len(d.events())
    d.start(resync=RESYNC_S)
    d.wait_ready()
    # The first of: the stop adopted, or the container started against it.
    ev = d.wait_event(lambda e: e.get("service") == "svc" and e["type"] in ("intent_changed", "action_started"),
                      timeout=10, after=m)
    assert ev["type"] == "intent_changed", f"dockwarden acted instead of adopting the stop: {ev}"
    assert (ev["details"]["intent"], ev["details"]["source"]) == ("stopped", "observed"), ev
    settle(d, ev)
    assert not state(client, name)["Running"], "dockwarden started what the operator stopped while it was away"
    assert_nothing_started(d, "svc", m)
    assert status_of(d, "svc")["intent"] == "stopped"


# --------------------------------------------------------------------------- compose


def test_compose_stop_stays_stopped(real_images, tmp_path, compose, daemon_factory, docker_client):
    """Row `docker compose stop`: kill -> die -> stop; stopped; nothing."""
    p = compose({"web": {"image": NGINX_IMAGE}})
    p("up", "-d")
    d = ready_daemon(daemon_factory, tmp_path, [p.inventory_entry("web")])
    n = len(d.events())
    p("stop")
    ev = wait_intent(d, "web", "stopped", after=n)
    assert ev["details"]["signal"] == "SIGQUIT"
    settle(d, ev)
    c = p.container(docker_client, "web")
    assert c is not None and c.status == "exited"
    assert_nothing_started(d, "web", n)
    assert status_of(d, "web")["intent"] == "stopped"


def test_compose_down_stays_gone(real_images, tmp_path, compose, daemon_factory, docker_client):
    """Row `docker compose down`: ... stop -> destroy; stopped (kept); no compose up."""
    p = compose({"web": {"image": NGINX_IMAGE}})
    p("up", "-d")
    d = ready_daemon(daemon_factory, tmp_path, [p.inventory_entry("web")])
    n = len(d.events())
    p("down")
    wait_intent(d, "web", "stopped", after=n)
    settle(d, now_utc())
    assert p.container(docker_client, "web") is None, "dockwarden brought back what compose down removed"
    assert_nothing_started(d, "web", n)
    assert_never_taken_back(d, "web", n)
    row = status_of(d, "web")
    assert (row["intent"], row["state"]) == ("stopped", "missing")


def test_compose_up_after_down_is_running_again(real_images, tmp_path, compose, daemon_factory, docker_client):
    """Row `docker compose up -d`: create/start; running."""
    p = compose({"web": {"image": NGINX_IMAGE}})
    p("up", "-d")
    d = ready_daemon(daemon_factory, tmp_path, [p.inventory_entry("web")])
    n = len(d.events())
    p("down")
    wait_intent(d, "web", "stopped", after=n)
    m = len(d.events())
    p("up", "-d")
    ev = wait_intent(d, "web", "running", after=m)
    assert ev["details"]["source"] == "observed"
    settle(d, ev)
    c = p.container(docker_client, "web")
    assert c is not None and c.status == "running"
    assert not events_of(d, "web", "action_started", n)
    row = status_of(d, "web")
    assert (row["intent"], row["state"]) == ("running", "running")


def test_dockwarden_stop_of_a_compose_service_stays_stopped(real_images, tmp_path, compose, daemon_factory,
                                                            docker_client):
    """Row `dockwarden stop X` (compose services too): stopped (cli); stopped, never restarted."""
    p = compose({"web": {"image": HTTPD_IMAGE}})
    p("up", "-d")
    d = ready_daemon(daemon_factory, tmp_path, [p.inventory_entry("web")])
    n = len(d.events())
    r = d.cli("stop", "web")
    assert r.returncode == 0, r.stdout + r.stderr
    done = now_utc()
    assert p.container(docker_client, "web").status == "exited"
    ev = events_of(d, "web", "intent_changed", n)
    assert [e["details"] for e in ev] == [{"intent": "stopped", "source": "cli"}], ev
    stop = events_of(d, "web", "action_started", n)
    assert [(e["action"], e["details"]["by"]) for e in stop] == [("stop", "cli")]
    settle(d, done)
    assert p.container(docker_client, "web").status == "exited"
    assert_nothing_started(d, "web", n)
    row = status_of(d, "web")
    assert (row["intent"], row["intent_source"]) == ("stopped", "cli")


def test_dockwarden_start_of_a_compose_service_leaves_its_stopped_dependency_stopped(
        real_images, tmp_path, compose, daemon_factory, docker_client):
    """Row `dockwarden start X` (removed compose service: `compose up --no-deps`): the
    dependency the operator stopped stays stopped."""
    p = compose({"db": {"image": NGINX_IMAGE}, "app": {"image": HTTPD_IMAGE, "depends_on": ["db"]}})
    p("up", "-d")
    d = ready_daemon(daemon_factory, tmp_path, [p.inventory_entry("db"),
                                                p.inventory_entry("app", depends_on=["db"])])
    n = len(d.events())
    p("stop", "db")
    wait_intent(d, "db", "stopped", after=n)
    p("rm", "-s", "-f", "app")
    wait_intent(d, "app", "stopped", after=n)
    assert p.container(docker_client, "app") is None
    m = len(d.events())
    r = d.cli("start", "app")
    assert r.returncode == 0, r.stdout + r.stderr
    done = now_utc()
    started = events_of(d, "app", "action_started", m)
    assert [(e["action"], e["details"]["by"]) for e in started] == [("compose_up", "cli")]
    app = p.container(docker_client, "app")
    assert app is not None and app.status == "running"
    settle(d, done)
    db = p.container(docker_client, "db")
    assert db.status == "exited", "the stopped dependency was started with its dependant"
    assert_nothing_started(d, "db", n)
    rows = statuses(d)
    assert (rows["db"]["intent"], rows["app"]["intent"]) == ("stopped", "running")


# --------------------------------------------------------------------------- interrupted stop


def test_interrupted_dockwarden_stop_does_not_swallow_later_docker_stops(tmp_path, containers, daemon_factory,
                                                                         docker_client):
    """Row `dockwarden stop X` interrupted (Ctrl-C): the action is closed
    `interrupted`, the engine finishes the stop, it is never restarted; and a later
    `docker stop X` (after `dockwarden start X`) is still read as the operator's.

    The old bug: the unfinished action made every later stop of X look like dockwarden's own."""
    # TERM is ignored, so the stop takes the whole grace period (8 s) before SIGKILL.
    containers.run("slow", ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"], network_mode="none")
    name = containers.name("slow")
    policy = FAST_POLICY.replace("stop_timeout_s = 1", "stop_timeout_s = 8")
    assert "stop_timeout_s = 8" in policy
    d = ready_daemon(daemon_factory, tmp_path, [{"name": "svc", "container": name}], policy=policy)
    n = len(d.events())
    cli = subprocess.Popen(d.cli_cmd("stop", "svc"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=d.cli_env())
    try:
        act = d.wait_event(lambda e: e["type"] == "action_started" and e.get("service") == "svc"
                           and e["details"].get("by") == "cli", timeout=20, after=n)
        time.sleep(1.0)  # well inside the 8 s grace period
        assert cli.poll() is None, "the stop returned before its grace period ended"
        cli.send_signal(signal.SIGINT)
        _, err = cli.communicate(timeout=5)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    assert cli.returncode == 130, err
    assert state(docker_client, name)["Running"], "the grace period was already over: nothing was interrupted"
    d.wait_event(lambda e: e["type"] == "action_interrupted"
                 and e["details"].get("action_id") == act["details"]["action_id"], timeout=5, after=n)
    # The engine finishes the stop (SIGKILL at the end of the grace period); never restarted.
    wait_for(lambda: not state(docker_client, name)["Running"], 20, what="the engine finishing the stop")
    settle(d, now_utc())
    assert not state(docker_client, name)["Running"]
    assert_nothing_started(d, "svc", n)
    assert [e["details"] for e in events_of(d, "svc", "intent_changed", n)][:1] == [
        {"intent": "stopped", "source": "cli"}]  # recorded before the action, kept after the interruption

    r = d.cli("start", "svc")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: state(docker_client, name)["Running"], 10, what="svc running")
    m = len(d.events())
    docker_cli("stop", "-t", "1", name)
    ev = wait_intent(d, "svc", "stopped", after=m)
    assert ev["details"]["source"] == "observed"
    settle(d, ev)
    assert not state(docker_client, name)["Running"], "a docker stop after an interrupted action was undone"
    assert_nothing_started(d, "svc", m)
    assert status_of(d, "svc")["intent"] == "stopped"
    # TERM ignored, SIGKILL after the timeout: a pass may see it exited before the `die`
    # says whose stop it was. The operator is not told of an incident for their own stop.
    assert not events_of(d, "svc", "incident_opened", m), events_of(d, "svc", "incident_opened", m)


# --------------------------------------------------------------------------- stream drop


def test_event_stream_drop_keeps_the_operators_stop(real_images, tmp_path, containers, daemon_factory,
                                                    docker_client):
    """Row: the event stream drops while the engine stays up: no engine events;
    operator stops are kept; reconnect and replay."""
    proxy = EngineProxy(engine_socket())
    try:
        containers.run("blip", None, image=NGINX_IMAGE, network_mode="none")
        name = containers.name("blip")
        d = ready_daemon(daemon_factory, tmp_path, [{"name": "svc", "container": name}],
                         env={"DOCKER_HOST": proxy.host})
        assert proxy.accepted > 0, "the daemon does not talk to the engine through the proxy"
        n = len(d.events())
        docker_client.api.stop(name)  # through the real socket, not the proxy
        ev = wait_intent(d, "svc", "stopped", after=n)
        m = len(d.events())
        assert proxy.cut() > 0
        d.wait_event(lambda e: e["type"] == "engine_lost", timeout=15, after=m)
        back = d.wait_event(lambda e: e["type"] == "engine_reconnected", timeout=30, after=m)
        assert back["details"]["engine_restarted"] is not True, back
        settle(d, back)
        assert not state(docker_client, name)["Running"], "the operator's stop was undone after a stream drop"
        assert_nothing_started(d, "svc", n)
        assert_never_taken_back(d, "svc", n)
        row = status_of(d, "svc")
        assert (row["intent"], row["intent_source"]) == ("stopped", "observed"), ev
    finally:
        proxy.close()
