"""A private second dockerd in its own network namespace (design.md: "A second
engine"), so tests can stop and start an engine without touching the one the
other tests use.

Beside ``start``/``stop`` an engine can be frozen (SIGSTOP: its connections hang
instead of failing), killed (SIGKILL of dockerd: its containers keep running
under their shims, as when only the daemon dies) or powered off (every process of
the engine and of its containers killed at once, as when the host dies), and
started again. ``teardown`` leaves no process, mount, namespace or directory
behind whatever state the engine was left in. ``tests/support/fleet.py`` adds
tcp+TLS and ssh endpoints on top.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import docker


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _pings(host: str) -> bool:
    try:
        return bool(docker.DockerClient(base_url=host, timeout=5).ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


class PrivateEngine:
    """``start()``/``stop()`` a dockerd at ``unix:///run/<name>/docker.sock``."""

    def __init__(self, name: str, *, data_root: Path | None = None, extra_args: tuple[str, ...] = (),
                 extra_hosts: tuple[str, ...] = ()):
        """``extra_hosts``: more ``-H`` addresses (e.g. ``tcp://10.231.7.2:2376``, with the
        TLS flags in ``extra_args``); the unix socket is always there for the test's own use."""
        self.name = name
        self.run_dir = Path(f"/run/{name}")
        self._own_data_root = data_root is None
        self.data_root = data_root or Path(f"/var/lib/{name}")
        self.extra_args = tuple(extra_args)
        self.extra_hosts = tuple(extra_hosts)
        self.frozen = False
        self.sock = self.run_dir / "docker.sock"
        self.host = f"unix://{self.sock}"
        self.proc: subprocess.Popen | None = None
        self.log = Path(f"/tmp/{name}.log")

    def add_netns(self) -> None:
        if os.geteuid() != 0 or not shutil.which("nsenter") or not shutil.which("ip"):
            raise RuntimeError("a private engine needs root, nsenter and ip (make test installs them)")
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"], check=True)

    def load_image(self, image: str) -> None:
        """No registry: copy an image over from the machine's engine."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", self.host, "load"], stdin=save.stdout, check=True, capture_output=True)
        save.wait()

    def setup(self, image: str | None = None) -> "PrivateEngine":
        self.add_netns()
        self.start()
        if image:
            self.load_image(image)
        return self

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.name}", "dockerd", "-H", self.host,
             *[a for h in self.extra_hosts for a in ("-H", h)],
             "--data-root", str(self.data_root), "--exec-root", str(self.run_dir / "exec"),
             "--pidfile", str(self.run_dir / "docker.pid"), "--bridge", "none", "--iptables=false",
             *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not _pings(self.host):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} dockerd did not start; log {self.log}")
            time.sleep(0.3)

    @property
    def pid(self) -> int | None:
        """dockerd's pid (nsenter execs it), None when it is not running."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        return self.proc.pid

    def running(self) -> bool:
        return self.pid is not None

    def freeze(self) -> None:
        """SIGSTOP dockerd: connections to it hang instead of failing; its containers run on."""
        pid = self.pid
        if pid is None:
            raise RuntimeError(f"{self.name}: dockerd is not running")
        os.kill(pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT dockerd (harmless when it is not frozen)."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        self.frozen = False

    def kill(self) -> None:
        """SIGKILL dockerd, and its containerd (dockerd starts it with a parent-death
        signal, so it dies with it); the shims and the containers run on until dockerd
        is started again, which then stops them (no live-restore).

        The dead containerd's pid file is removed: both processes are reparented to
        this machine's pid 1, which may leave them zombies for a while, and dockerd
        takes a zombie in the pid file for a live containerd it then waits for."""
        containerd = self._containerd_pid()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.frozen = False
        if containerd is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(containerd, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _alive(containerd) and time.monotonic() < deadline:
                time.sleep(0.02)
        self._containerd_pidfile().unlink(missing_ok=True)

    def _containerd_pidfile(self) -> Path:
        return self.run_dir / "exec" / "containerd" / "containerd.pid"

    def _containerd_pid(self) -> int | None:
        try:
            return int(self._containerd_pidfile().read_text().strip())
        except (OSError, ValueError):
            return None

    def container_ids(self) -> list[str]:
        """Ids of the containers this engine has on disk (whether it runs or not)."""
        d = self.data_root / "containers"
        try:
            return [p.name for p in d.iterdir() if len(p.name) == 64]
        except OSError:
            return []

    def engine_pids(self) -> list[int]:
        """Every process in the engine's network namespace (dockerd, containerd, shims)."""
        r = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False)
        return [int(x) for x in r.stdout.split() if x.isdigit()]

    def container_pids(self) -> list[int]:
        """Host pids of every process in this engine's containers (cgroup ``/docker/<id>``)."""
        ids = set(self.container_ids())
        if not ids:
            return []
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                text = (entry / "cgroup").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                tail = line.rsplit("/", 1)[-1]
                tail = tail.removeprefix("docker-").removesuffix(".scope")
                if tail in ids:
                    out.append(int(entry.name))
                    break
        return out

    def power_off(self) -> None:
        """The host dies: every process of the engine (dockerd, containerd, shims) and
        of its containers is stopped at once, then killed. Started again, the engine
        finds its containers exited."""
        pids = set(self.engine_pids()) | set(self.container_pids())
        if self.pid is not None:
            pids.add(self.pid)
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        if self.proc is not None:
            self.proc.wait()
        self.proc = None
        self.frozen = False
        deadline = time.monotonic() + 10
        while (set(self.engine_pids()) | set(self.container_pids())) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._containerd_pidfile().unlink(missing_ok=True)

    def stop(self) -> None:
        if self.frozen:
            self.thaw()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _remove_all_containers(self) -> None:
        try:
            client = docker.DockerClient(base_url=self.host, timeout=30)
            for c in client.containers.list(all=True):
                try:
                    c.remove(force=True)
                except docker.errors.NotFound:
                    pass
        except Exception:  # noqa: BLE001 - best effort; the kills below follow
            pass

    def _mounts_under(self) -> list[str]:
        """Mount points at or under the data root and the run dir (overlay layers,
        container shm, the data root itself when dockerd died with it mounted)."""
        roots = (str(self.data_root), str(self.run_dir))
        out = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4]
            if any(point == r or point.startswith(r + "/") for r in roots):
                out.append(point)
        return out

    def teardown(self) -> None:
        """Leave nothing behind, whatever state the engine was left in (frozen, killed,
        powered off): its containers are removed (dockerd is started again when it was
        killed with containers left), dockerd is stopped, any process left in its
        namespace or its containers' cgroups is killed, its mounts are unmounted, and
        the namespace, the run dir and (when it made it) the data root are deleted."""
        self.thaw()
        if self.proc is None and self.container_ids() and Path(f"/run/netns/{self.name}").exists():
            try:
                self.start()
            except RuntimeError:
                pass
        if self.running():
            self._remove_all_containers()
        self.stop()
        leftovers = set(self.engine_pids()) | set(self.container_pids())
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _ in range(5):  # stacked mounts come off one per umount
            points = self._mounts_under()
            if not points:
                break
            for point in sorted(points, key=len, reverse=True):
                subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "delete", self.name], check=False)
        if self._own_data_root:
            shutil.rmtree(self.data_root, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=30)
