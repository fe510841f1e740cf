"""Issue 12: the ways dockwarden ships, each shown working on this machine.

- The container image (``make image``; no registry here, so its base is the
  local debootstrap one): run with only the socket and an inventory mounted, it
  heals a container killed with SIGKILL from the host and turns ``healthy``
  (its HEALTHCHECK asks ``/healthz``); ``docker stop`` stops it within the grace
  period, with exit code 0 and ``daemon_stopped`` in its state volume.
- sd_notify: ``READY=1``, then ``WATCHDOG=1`` every ``WATCHDOG_USEC / 2``; no
  pings while the loop is wedged (``DOCKWARDEN_TEST_WEDGE_FILE``, the API's
  test-only wedge), pings again when it goes round; ``STOPPING=1``.
  ``systemd-analyze verify`` accepts the unit.
- The wheel (``make wheel``) installs in a clean venv; its console script runs
  ``version`` and ``run``.
- examples/compose (Debian's docker-compose v1): the plain example heals a crash
  and answers ``/healthz`` on 127.0.0.1 only; the proxy variant heals a crash
  through the proxy, and ``POST /containers/create`` through it is refused.

The images are built once per session and reused when an image of the same
source already exists (label ``dockwarden.source``, ``scripts/build-image.sh
--source-hash``); ``DOCKWARDEN_TEST_REBUILD_IMAGES=1`` forces a build.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import docker
import pytest

from tests.e2e.conftest import IMAGE as BUSYBOX, REPO, RUN_ID, TEST_LABEL, wait_for, write_inventory

IMAGE = "dockwarden:latest"
PROXY_IMAGE = "dockwarden-socket-proxy:latest"
STATE = "/var/lib/dockwarden"
#: docker stop's default grace period, seconds (the daemon must be out well within it).
GRACE_S = 10


# --------------------------------------------------------------------------- helpers


def _built(client: docker.DockerClient, tag: str, *args: str) -> str:
    """Build ``tag`` with make unless an image of the current source exists."""
    want = subprocess.run(["bash", str(REPO / "scripts" / "build-image.sh"), "--source-hash", *args],
                          capture_output=True, text=True, check=True, cwd=REPO).stdout.strip()
    try:
        have = (client.images.get(tag).labels or {}).get("dockwarden.source")
    except docker.errors.ImageNotFound:
        have = None
    if have == want and os.environ.get("DOCKWARDEN_TEST_REBUILD_IMAGES") != "1":
        return tag
    target = "proxy-image" if "--proxy" in args else "image"
    r = subprocess.run(["make", target, f"PYTHON={sys.executable}"], cwd=REPO, capture_output=True, text=True,
                       timeout=1500)
    if r.returncode != 0:
        pytest.fail(f"make {target} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    assert (client.images.get(tag).labels or {}).get("dockwarden.source") == want
    return tag


@pytest.fixture(scope="session")
def image(docker_client) -> str:
    """dockwarden:latest, built by ``make image`` (the local base: no registry here)."""
    return _built(docker_client, IMAGE)


@pytest.fixture(scope="session")
def proxy_image(docker_client) -> str:
    """dockwarden-socket-proxy:latest, built by ``make proxy-image``."""
    return _built(docker_client, PROXY_IMAGE, "--proxy")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _state_dir(client: docker.DockerClient, container: str) -> Path:
    """The host path of a container's /var/lib/dockwarden (its volume)."""
    mounts = client.api.inspect_container(container)["Mounts"]
    return Path(next(m["Source"] for m in mounts if m["Destination"] == STATE))


def _events(state_dir: Path) -> list[dict]:
    try:
        text = (state_dir / "events.jsonl").read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def _status(state_dir: Path) -> dict:
    """The daemon's ``status.json`` (rewritten after every pass), or {}."""
    try:
        return json.loads((state_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _wait_event(state_dir: Path, pred: Callable[[dict], bool], timeout: float, what: str,
                logs: Callable[[], str] = lambda: "") -> dict:
    try:
        return wait_for(lambda: next((e for e in _events(state_dir) if pred(e)), None), timeout, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}\nlogs:\n{logs()[-4000:]}\nevents:\n"
                             + "\n".join(json.dumps(x) for x in _events(state_dir)[-30:])) from None


def _kill9_and_wait_healed(client: docker.DockerClient, name: str, timeout: float = 30) -> None:
    """SIGKILL the container's main process from the host; wait until it runs again."""
    st = client.api.inspect_container(name)["State"]
    assert st["Running"], st
    os.kill(st["Pid"], signal.SIGKILL)
    wait_for(lambda: (s := client.api.inspect_container(name)["State"])["Running"]
             and s["StartedAt"] != st["StartedAt"], timeout, what=f"{name} running again after kill -9")


def _healthz(port: int) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def _run_dockwarden(client: docker.DockerClient, image: str, inventory: Path, name: str, **kw: Any):
    """The image as the README runs it: the socket and an inventory, nothing else
    (the state goes to the image's anonymous volume, removed with the container)."""
    return client.containers.run(
        image, detach=True, name=name, labels={TEST_LABEL: RUN_ID},
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                 str(inventory): {"bind": "/etc/dockwarden/inventory", "mode": "ro"}}, **kw)


@pytest.fixture
def dockwarden_container(docker_client):
    made: list[str] = []

    def run(*args: Any, **kw: Any):
        c = _run_dockwarden(docker_client, *args, **kw)
        made.append(c.id)
        return c

    yield run
    for cid in made:
        try:
            docker_client.api.remove_container(cid, force=True, v=True)
        except docker.errors.NotFound:
            pass


# --------------------------------------------------------------------------- the image


def test_image_heals_a_crash_and_turns_healthy(image, docker_client, containers, dockwarden_container, tmp_path):
    svc = containers.run("svc", ["sleep", "100000"])
    inv = write_inventory(tmp_path / "inv", [{"name": "svc", "container": svc.name}], node="packnode")
    info = docker_client.images.get(image).attrs["Config"]
    assert info["Labels"]["dockwarden.supervisor"] == "true"
    assert info["Healthcheck"]["Test"][:2] == ["CMD", "/opt/dockwarden/bin/python"]
    dw = dockwarden_container(image, inv, f"dwt-{RUN_ID}-pk-img-{uuid.uuid4().hex[:4]}")
    state = _state_dir(docker_client, dw.id)
    logs = lambda: dw.logs().decode(errors="replace")  # noqa: E731
    _wait_event(state, lambda e: e["type"] == "daemon_ready", 60, "daemon_ready", logs)
    top = docker_client.api.top(dw.id)["Processes"]
    assert "dockwarden run" in " ".join(top[0]), top  # the daemon is the container's first process

    _kill9_and_wait_healed(docker_client, svc.name)
    ok = _wait_event(state, lambda e: e["type"] == "action_succeeded" and e.get("service") == "svc"
                     and e.get("action") == "start", 30, "the daemon's start of svc", logs)
    assert ok["node"] == "packnode"
    # HEALTHCHECK every 15 s (the first one 15 s after the start): /healthz answers 200.
    wait_for(lambda: docker_client.api.inspect_container(dw.id)["State"]["Health"]["Status"] == "healthy", 90,
             interval=1, what="docker health status healthy")
    last = docker_client.api.inspect_container(dw.id)["State"]["Health"]["Log"][-1]
    assert last["ExitCode"] == 0 and "/healthz 200" in last["Output"], last


def test_docker_stop_reaches_the_daemon(image, docker_client, containers, dockwarden_container, tmp_path):
    svc = containers.run("svc", ["sleep", "100000"])
    inv = write_inventory(tmp_path / "inv", [{"name": "svc", "container": svc.name}], node="packnode")
    dw = dockwarden_container(image, inv, f"dwt-{RUN_ID}-pk-stop-{uuid.uuid4().hex[:4]}")
    state = _state_dir(docker_client, dw.id)
    _wait_event(state, lambda e: e["type"] == "daemon_ready", 60, "daemon_ready",
                lambda: dw.logs().decode(errors="replace"))
    t0 = time.monotonic()
    docker_client.api.stop(dw.id, timeout=GRACE_S)
    took = time.monotonic() - t0
    st = docker_client.api.inspect_container(dw.id)["State"]
    assert st["ExitCode"] == 0, (st, dw.logs().decode(errors="replace")[-2000:])  # 137 would be SIGKILL
    assert took < GRACE_S - 2, f"docker stop took {took:.1f} s of its {GRACE_S} s grace period"
    assert _events(state)[-1]["type"] == "daemon_stopped", _events(state)[-5:]
    assert docker_client.api.inspect_container(svc.name)["State"]["Running"]  # its containers stay up


# --------------------------------------------------------------------------- systemd


class NotifyListener:
    """The systemd side of sd_notify: a bound datagram socket, read by a thread
    that records ``(monotonic time, {KEY: VALUE})``."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.got: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.got.append((time.monotonic(), dict(x.split("=", 1) for x in data.decode().splitlines() if "=" in x)))

    def times(self, key: str, since: float = 0.0, until: float = float("inf")) -> list[float]:
        return [t for t, f in list(self.got) if key in f and since <= t <= until]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_sd_notify_ready_watchdog_wedge_and_stopping(docker_client, containers, daemon_factory, tmp_path):
    svc = containers.run("svc", ["sleep", "100000"])
    inv = write_inventory(tmp_path / "inv", [{"name": "svc", "container": svc.name}])
    listener = NotifyListener(tmp_path / "notify")
    wedge = tmp_path / "wedge"
    d = daemon_factory(inv, extra=["--mode", "observe"], env={
        "NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "1000000", "DOCKWARDEN_TEST_WEDGE_FILE": str(wedge)})
    try:
        d.start(resync=1.0)
        t_ready = wait_for(lambda: (t := listener.times("READY")) and t[0], 15, what="READY=1")
        ready_msg = next(f for t, f in listener.got if "READY" in f)
        assert ready_msg["STATUS"].startswith("nominal"), ready_msg

        # WATCHDOG_USEC = 1 s: a ping every 0.5 s.
        time.sleep(4.0)
        pings = listener.times("WATCHDOG", since=t_ready, until=t_ready + 4.0)
        assert 6 <= len(pings) <= 10, pings
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert max(gaps) < 0.9, gaps

        # Wedge the loop (the API's test-only wedge; its /healthz turns 503 too):
        # within 3 resync intervals (3 s) and a round, the pings stop.
        url = d.api_url()
        port = int(url.rsplit(":", 1)[1])
        wedge.touch()
        t_wedge = time.monotonic()
        wait_for(lambda: _healthz(port)[0] == 503, 10, what="/healthz 503 while wedged")
        time.sleep(max(0.0, t_wedge + 8.0 - time.monotonic()))
        late = listener.times("WATCHDOG", since=t_wedge + 5.0)
        assert late == [], f"pings {[round(t - t_wedge, 2) for t in late]} s after the wedge"
        last = max(listener.times("WATCHDOG", until=t_wedge + 5.0))
        print(f"sd_notify: {len(pings)} pings in 4 s, gaps {min(gaps):.2f}-{max(gaps):.2f} s; "
              f"the last ping {last - t_wedge:.2f} s after the wedge")
        # The loop goes round again: so do the pings.
        wedge.unlink()
        t_free = time.monotonic()
        wait_for(lambda: listener.times("WATCHDOG", since=t_free), 5, what="pings after the wedge is gone")
        wait_for(lambda: _healthz(port)[0] == 200, 10, what="/healthz 200 again")
    finally:
        if wedge.exists():
            wedge.unlink()
        code = d.stop()
        listener_got = list(listener.got)
        listener.close()
    assert code == 0
    assert any(f.get("STOPPING") == "1" for _, f in listener_got), listener_got[-5:]


def test_systemd_analyze_verifies_the_unit(tmp_path):
    """``systemd-analyze verify`` in a root of its own: the unit, the system's
    units (docker.service, multi-user.target...), and an executable where
    ExecStart says (the wheel's console script goes to /usr/local/bin)."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze not found: `make test` installs the systemd package (scripts/ensure-docker.sh)")
    unit = (REPO / "packaging" / "systemd" / "dockwarden.service").read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "After=docker.service", "StateDirectory=dockwarden",
                 "ProtectSystem=strict", "NoNewPrivileges=yes", "ExecStart=/usr/local/bin/dockwarden run"):
        assert line in unit, line

    def verify(text: str) -> subprocess.CompletedProcess:
        root = tmp_path / f"root-{uuid.uuid4().hex[:6]}"
        (root / "usr/local/bin").mkdir(parents=True)
        (root / "etc/systemd/system").mkdir(parents=True)
        (root / "lib/systemd").mkdir(parents=True)
        shutil.copytree("/lib/systemd/system", root / "lib/systemd/system", symlinks=True)
        exe = root / "usr/local/bin/dockwarden"
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
        path = root / "etc/systemd/system/dockwarden.service"
        path.write_text(text)
        return subprocess.run(["systemd-analyze", "verify", f"--root={root}", str(path)], capture_output=True,
                              text=True, timeout=60)

    r = verify(unit)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    bad = verify(unit.replace("WatchdogSec=60", "WatchdogSec=sixty"))  # the check is not vacuous
    assert "WatchdogSec" in bad.stderr or "sec value" in bad.stderr, bad.stderr


# --------------------------------------------------------------------------- the wheel


def test_wheel_installs_in_a_clean_venv_and_runs(docker_client, tmp_path):
    dist = tmp_path / "dist"
    r = subprocess.run(["make", "wheel", f"DIST={dist}", f"PYTHON={sys.executable}"], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = dist.glob("dockwarden-*-py3-none-any.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run([str(venv / "bin/pip"), "install", "--quiet", "--disable-pip-version-check", str(whl)],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    where = subprocess.run([str(venv / "bin/python"), "-c", "import dockwarden, pathlib; "
                            "print(pathlib.Path(dockwarden.__file__).parent)"], capture_output=True, text=True,
                           env=env, check=True, cwd=tmp_path).stdout.strip()
    assert where.startswith(str(venv)), where  # the installed package, not the checkout
    assert (Path(where) / "api/static/index.html").is_file()  # the dashboard's files
    share = venv / "share/dockwarden"
    assert (share / "examples/policy.toml").read_text() == (REPO / "examples/policy.toml").read_text()
    assert (share / "systemd/dockwarden.service").is_file()
    out = subprocess.run([str(venv / "bin/dockwarden"), "version"], capture_output=True, text=True, env=env,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "0.1.0", out

    # `dockwarden run` against this machine's engine with an empty inventory (observe
    # only: nothing here is its to touch), until its first pass and /healthz 200.
    inv = write_inventory(tmp_path / "inv", [], node="wheelnode")
    state = tmp_path / "state"
    log = open(tmp_path / "run.log", "wb")
    p = subprocess.Popen([str(venv / "bin/dockwarden"), "run", "--inventory", str(inv), "--state-dir", str(state),
                          "--mode", "observe", "--resync", "2"], stdout=log, stderr=subprocess.STDOUT,
                         env={**env, "DOCKWARDEN_LISTEN": "127.0.0.1:0"}, cwd=tmp_path)
    try:
        _wait_event(state, lambda e: e["type"] == "daemon_ready", 30, "daemon_ready",
                    lambda: (tmp_path / "run.log").read_text(errors="replace"))
        url = wait_for(lambda: json.loads((state / "api.json").read_text())["url"] if (state / "api.json").exists()
                       else None, 10, what="api.json")
        port = int(url.rsplit(":", 1)[1])
        assert wait_for(lambda: _healthz(port)[0] == 200, 10, what="/healthz 200")
    finally:
        p.send_signal(signal.SIGTERM)
        code = p.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "run.log").read_text(errors="replace")[-3000:]
    assert _events(state)[-1]["type"] == "daemon_stopped"


# --------------------------------------------------------------------------- examples/compose


class Compose:
    """One docker-compose (Debian's v1) project from a copy of examples/compose.

    One change to the copy: the demo service is tracked through the inventory
    instead of its ``dockwarden.enable`` label. This engine is shared, and any
    other dockwarden running on it in auto mode would heal a labelled demo too
    (often first); an inventory entry is this daemon's alone.
    """

    def __init__(self, client: docker.DockerClient, tmp: Path, file: str):
        self.client = client
        self.dir = tmp / "compose"
        shutil.copytree(REPO / "examples" / "compose", self.dir)
        self.file = file
        self.project = f"dwt{RUN_ID}{uuid.uuid4().hex[:4]}"
        path = self.dir / file
        text = path.read_text()
        assert '      dockwarden.enable: "true"' in text
        path.write_text(text.replace('      dockwarden.enable: "true"', f'      {TEST_LABEL}: "{RUN_ID}"'))
        write_inventory(self.dir / "inventory", [{"name": "demo", "container": f"{self.project}_demo_1"}],
                        node="local")
        self.port = _free_port()
        self.env = {**os.environ, "DEMO_IMAGE": BUSYBOX, "DOCKWARDEN_PORT": str(self.port)}

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        exe = shutil.which("docker-compose")
        assert exe, "docker-compose not found: `make test` installs it (scripts/ensure-docker.sh)"
        r = subprocess.run([exe, "-p", self.project, "-f", self.file, *args], cwd=self.dir, env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"docker-compose {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        return r

    def container(self, service: str):
        (c,) = self.client.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]})
        return c

    def logs(self, service: str) -> str:
        return self.container(service).logs().decode(errors="replace")

    def down(self) -> None:
        try:
            self.run("down", "-v", "--timeout", "5")
        except AssertionError as e:
            print(e)


@pytest.fixture
def compose(docker_client, tmp_path):
    made: list[Compose] = []

    def make(file: str) -> Compose:
        c = Compose(docker_client, tmp_path, file)
        made.append(c)
        return c

    yield make
    for c in made:
        c.down()


def _up_and_heal(cp: Compose) -> Path:
    """Bring the project up, wait for the daemon's first pass, kill -9 the demo,
    see it healed by this daemon. Returns the daemon's state dir on the host."""
    cp.run("up", "-d")
    dw = cp.container("dockwarden")
    state = _state_dir(cp.client, dw.id)
    _wait_event(state, lambda e: e["type"] == "daemon_ready", 60, "daemon_ready", lambda: cp.logs("dockwarden"))
    demo = cp.container("demo")
    wait_for(lambda: any(x.get("container") == demo.name and x.get("state") == "running"
                         for x in _status(state).get("services") or []), 30, what=f"{demo.name} tracked")
    _kill9_and_wait_healed(cp.client, demo.name)
    _wait_event(state, lambda e: e["type"] == "action_succeeded" and e.get("container") == demo.name
                and e.get("action") == "start", 30, "the daemon's start of the demo", lambda: cp.logs("dockwarden"))
    # The API is published on the host's loopback only, and answers there.
    ports = cp.client.api.inspect_container(dw.id)["NetworkSettings"]["Ports"]["9321/tcp"]
    assert [(p["HostIp"], p["HostPort"]) for p in ports] == [("127.0.0.1", str(cp.port))], ports
    wait_for(lambda: _healthz(cp.port)[0] == 200, 30, what="/healthz 200 on the published port")
    return state


def test_compose_example_heals_a_crash(image, compose):
    cp = compose("docker-compose.yml")
    _up_and_heal(cp)
    mounts = {m["Destination"] for m in cp.client.api.inspect_container(cp.container("dockwarden").id)["Mounts"]}
    assert {"/var/run/docker.sock", STATE, "/etc/dockwarden/inventory"} <= mounts, mounts


def _exec_json(container, program: str) -> dict:
    """Run ``python -c program`` in ``container`` and parse the JSON it prints on
    stdout. stdout and stderr are read apart: merged, a log line on stderr may
    arrive after the JSON (the two streams are framed separately by the engine)."""
    code, (out, err) = container.exec_run(["python", "-c", program], demux=True)
    out, err = (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")
    assert code == 0, out + err
    return json.loads(out.strip().splitlines()[-1])


def test_compose_proxy_heals_through_the_proxy_and_refuses_create(image, proxy_image, compose):
    cp = compose("docker-compose.proxy.yml")
    state = _up_and_heal(cp)
    dw = cp.container("dockwarden")
    mounts = {m["Destination"] for m in cp.client.api.inspect_container(dw.id)["Mounts"]}
    assert "/var/run/docker.sock" not in mounts, mounts  # only the proxy holds the socket
    demo = cp.container("demo")
    proxy_log = cp.logs("socket-proxy")
    assert any((f"/containers/{demo.name}/start" in line or f"/containers/{demo.id}/start" in line)
               and " 204 " in line for line in proxy_log.splitlines()), proxy_log[-3000:]  # the start went through
    assert _events(state)  # the daemon recorded through the proxy

    # From dockwarden's container, through the proxy: create is refused (403), with
    # a body and without; a read it needs goes through.
    probe = (
        "import docker, json, os\n"
        "c = docker.DockerClient(base_url=os.environ['DOCKER_HOST'], version='auto')\n"
        "out = {'ping': c.ping(), 'containers': len(c.api.containers(all=True))}\n"
        "try:\n"
        "    c.api.create_container('" + BUSYBOX + "', ['true'], host_config=c.api.create_host_config("
        "binds=['/:/host'], privileged=True))\n"
        "    out['create'] = 'created'\n"
        "except docker.errors.APIError as e:\n"
        "    out['create'] = [e.status_code, e.explanation]\n"
        "r = c.api._post(c.api._url('/containers/create'))\n"
        "out['bare_create'] = r.status_code\n"
        "print(json.dumps(out))\n"
    )
    got = _exec_json(dw, probe)
    assert got["ping"] is True and got["containers"] >= 3, got
    assert got["create"][0] == 403 and "refused by the socket proxy" in got["create"][1], got
    assert got["bare_create"] == 403, got

    # dockwarden's own recreate through the proxy: refused, and a permanent failure
    # (the circuit opens and a person is asked), not a transient one retried with backoff.
    recreate = (
        "import docker, json, os\n"
        "from dockwarden.execute import Executor\n"
        "from dockwarden.model import ActionKind\n"
        "c = docker.DockerClient(base_url=os.environ['DOCKER_HOST'], version='auto')\n"
        f"o = Executor(c).run(ActionKind.RECREATE, service='gone', container='dwt-{RUN_ID}-never-created', "
        f"spec={{'image': '{BUSYBOX}', 'command': ['true']}})\n"
        "print(json.dumps({'ok': o.ok, 'permanent': o.permanent, 'error': o.error}))\n"
    )
    got = _exec_json(dw, recreate)
    assert got["ok"] is False and got["permanent"] is True and "refused by the socket proxy" in got["error"], got
