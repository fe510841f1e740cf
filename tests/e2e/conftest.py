"""Fixtures for end-to-end tests against a real Docker engine.

Everything a test creates carries the label ``dockwarden.test=<run id>`` and is
removed in a finalizer, even when the test fails. The daemon under test is a
real ``python -m dockwarden run`` subprocess with its own state dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import docker
import pytest
import yaml

IMAGE = "dockwarden-test/busybox:latest"
#: Real daemons with their real stop signals (scripts/build-real-images.sh).
NGINX_IMAGE = "dockwarden-test/nginx:latest"  # STOPSIGNAL SIGQUIT
HTTPD_IMAGE = "dockwarden-test/httpd:latest"  # STOPSIGNAL SIGWINCH
REPO = Path(__file__).resolve().parents[2]
RUN_ID = uuid.uuid4().hex[:8]
TEST_LABEL = "dockwarden.test"


def pytest_configure(config):
    """Children get the SIGINT an operator's Ctrl-C reaches: a shell without job
    control starts background commands with SIGINT ignored (POSIX, bash: "&"), and
    that disposition is inherited across exec, so a CI runner started that way made
    every `dockwarden` child deaf to Ctrl-C (test_interrupted_dockwarden_stop... failed
    in a local `.ci/run &`). A Python handler here is reset to the default on exec."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    """A client of the real engine; fails (never skips) when there is none:
    `make test` starts one."""
    client = docker.from_env(timeout=60)
    try:
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure means no engine
        pytest.fail(f"no Docker engine answers ({e}); run `make test`, which starts one")
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        subprocess.run(["bash", str(REPO / "scripts" / "build-test-image.sh")], check=True)
    yield client
    for c in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={RUN_ID}"}):
        c.remove(force=True)


@pytest.fixture(scope="session")
def real_images(docker_client) -> dict[str, str]:
    """The nginx and httpd images, built once per machine from a Debian root
    filesystem (debootstrap, cached under /var/cache/dockwarden-test; about two
    minutes the first time, nothing when the images exist). Fails, never skips,
    when they cannot be built: `make test` installs debootstrap."""
    r = subprocess.run(["bash", str(REPO / "scripts" / "build-real-images.sh")], capture_output=True, text=True,
                       timeout=900)
    if r.returncode != 0:
        pytest.fail(f"scripts/build-real-images.sh exited {r.returncode}:\n{r.stderr[-3000:]}")
    return {"nginx": NGINX_IMAGE, "httpd": HTTPD_IMAGE}


class Containers:
    """Creates labelled test containers and removes them at teardown."""

    def __init__(self, client: docker.DockerClient, prefix: str):
        self.client = client
        self.prefix = prefix
        self.created: list[str] = []

    def name(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def run(self, short: str, command: list[str] | str | None, *, healthcheck: dict | None = None,
            labels: dict[str, str] | None = None, start: bool = True, image: str = IMAGE, **kw: Any):
        name = self.name(short)
        c = self.client.containers.create(
            image, command, name=name, labels={TEST_LABEL: RUN_ID, **(labels or {})},
            healthcheck=healthcheck, **kw,
        )
        self.created.append(name)
        if start:
            c.start()
        return c

    def get(self, short: str):
        return self.client.containers.get(self.name(short))

    def state(self, short: str) -> dict:
        return self.client.api.inspect_container(self.name(short))["State"]

    def kill_process(self, short: str, sig: int = signal.SIGKILL, timeout: float = 20) -> int:
        """Signal the container's main process from outside the engine (a crash the
        engine did not ask for) and return its pid. Waits, up to ``timeout`` s, for the
        container to be running with a pid: a stopped container reports Pid 0, and
        signalling pid 0 would signal this test's own process group."""
        st: dict = {}

        def running() -> bool:
            nonlocal st
            st = self.state(short)
            return bool(st["Running"]) and not st.get("Restarting") and int(st.get("Pid") or 0) > 0

        wait_for(running, timeout, what=f"{self.name(short)} running with a pid before it is killed")
        pid = int(st["Pid"])
        os.kill(pid, sig)
        return pid

    def cleanup(self) -> None:
        for n in self.created:
            try:
                self.client.api.remove_container(n, force=True)
            except docker.errors.NotFound:
                pass


@pytest.fixture
def containers(docker_client, request):
    short = request.node.name.replace("test_", "")[:20].replace("[", "-").replace("]", "").replace("_", "-")
    cs = Containers(docker_client, f"dwt-{RUN_ID}-{short}-{uuid.uuid4().hex[:4]}")
    yield cs
    cs.cleanup()


def write_inventory(root: Path, services: list[dict], node: str = "testnode") -> Path:
    """Write ``root/hosts/<node>/services.yaml`` and return ``root``."""
    d = root / "hosts" / node
    d.mkdir(parents=True, exist_ok=True)
    (d / "services.yaml").write_text(yaml.safe_dump({"services": services}, sort_keys=False))
    return root


def write_policy(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


FAST_POLICY = """
[backoff]
initial_delay_s = 1
max_delay_s = 8
stable_reset_s = 600
[restart_budget]
max_restarts = 5
window_s = 600
[guardrails]
dependency_wait_s = 1
stop_timeout_s = 1
"""


class Daemon:
    """A real `dockwarden run` subprocess, with helpers to read its events."""

    def __init__(self, tmp: Path, inventory: Path, policy: Path | None, extra: list[str],
                 env: dict[str, str] | None = None):
        self.state_dir = tmp / "state"
        self.inventory = inventory
        self.policy = policy
        self.extra = extra
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = tmp / "daemon.log"

    def cli_cmd(self, *args: str) -> list[str]:
        """The argument list of a `dockwarden` command on this daemon's state dir
        (for tests that run it themselves, e.g. to interrupt it)."""
        cmd = [sys.executable, "-m", "dockwarden", *args, "--state-dir", str(self.state_dir),
               "--inventory", str(self.inventory)]
        if self.policy:
            cmd += ["--policy", str(self.policy)]
        return cmd

    def cli_env(self) -> dict[str, str]:
        return _env(self.env)

    def cli(self, *args: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = self.cli_cmd(*args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.cli_env())
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def start(self, resync: float = 2.0, *, ready: bool = True) -> "Daemon":
        """Start the daemon; with ``ready``, wait for its ``daemon_ready`` event (engine
        connected, events subscribed, first pass done) instead of sleeping."""
        cmd = [sys.executable, "-m", "dockwarden", "run", "--state-dir", str(self.state_dir),
               "--inventory", str(self.inventory), "--resync", str(resync), *self.extra]
        if self.policy:
            cmd += ["--policy", str(self.policy)]
        self._log = open(self.log_path, "ab")
        n = len(self.events())
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=_env(self.env))
        self.wait_event(lambda e: e["type"] == ("daemon_ready" if ready else "daemon_started"), timeout=30, after=n)
        return self

    def wait_ready(self, timeout: float = 30) -> dict:
        """Wait for the ``daemon_ready`` of the running daemon (engine connected,
        events subscribed, first pass done)."""
        started = max(i for i, e in enumerate(self.events()) if e["type"] == "daemon_started")
        return self.wait_event(lambda e: e["type"] == "daemon_ready", timeout=timeout, after=started)

    def world_observed_at(self) -> datetime | None:
        """``observed_at`` of the last full observation a pass went through
        (``world.json``, written at the end of every pass; an event-driven pass
        keeps the observation time of the full one it patched)."""
        from dockwarden.model import parse_time

        try:
            return parse_time(json.loads((self.state_dir / "world.json").read_text())["observed_at"])
        except (OSError, ValueError, KeyError):
            return None

    def wait_full_passes(self, n: int, after: datetime, timeout: float = 30) -> datetime:
        """Wait until ``n`` distinct full observations made after ``after`` (UTC)
        have gone through the pipeline (decisions recorded, actions begun).
        Returns the last one's ``observed_at``."""
        mark = after
        for k in range(n):
            mark = wait_for(lambda: (t := self.world_observed_at()) is not None and t > mark and t, timeout,
                            interval=0.05, what=f"full pass {k + 1} of {n} after {after.isoformat()}")
        return mark

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        self._log.close()
        return code

    def events(self) -> list[dict]:
        p = self.state_dir / "events.jsonl"
        if not p.exists():
            return []
        out = []
        for line in p.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out

    def wait_event(self, pred: Callable[[dict], bool], timeout: float = 30, after: int = 0) -> dict:
        """Wait until an event (index >= after) matches; fail with the log when not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events()[after:]:
                if pred(e):
                    return e
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(
            f"no matching event within {timeout} s; daemon log:\n{self.log_text()[-4000:]}\n"
            f"events:\n" + "\n".join(json.dumps(e) for e in self.events()[-40:])
        )

    def api_url(self, timeout: float = 10) -> str:
        """The daemon's API address, from ``<state-dir>/api.json``."""
        def read():
            try:
                return json.loads((self.state_dir / "api.json").read_text())["url"]
            except (OSError, ValueError, KeyError):
                return None

        return wait_for(read, timeout, what="api.json")

    def api_token(self) -> str:
        """The write token (``<state-dir>/api-token``)."""
        return (self.state_dir / "api-token").read_text().strip()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("COLUMNS", "200")
    # The HTTP API on a free loopback port (its address is in <state-dir>/api.json),
    # so daemons of parallel tests never fight over 127.0.0.1:9321.
    env.setdefault("DOCKWARDEN_LISTEN", "127.0.0.1:0")
    return env


@pytest.fixture
def daemon_factory(tmp_path):
    made: list[Daemon] = []

    def make(inventory: Path, policy: Path | None = None, extra: list[str] | None = None,
             env: dict[str, str] | None = None) -> Daemon:
        d = Daemon(tmp_path, inventory, policy, extra or [], env)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


@contextlib.contextmanager
def mounted_tmpfs(path: Path, options: str):
    """Mount a tmpfs with ``options`` (``size=24m``, ``ro,size=1m``...) on the
    directory ``path`` for the block (make test runs as root); lazily unmounted."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def wait_for(pred: Callable[[], Any], timeout: float = 30, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@pytest.fixture
def private_engine(docker_client):
    """A second dockerd in its own network namespace, holding the test image,
    removed afterwards (tests/support/engine.py); for tests that stop engines."""
    from tests.support.engine import PrivateEngine

    eng = PrivateEngine(f"dwt-{RUN_ID}-{uuid.uuid4().hex[:4]}")
    try:
        eng.setup(IMAGE)
        yield eng
    finally:
        eng.teardown()
