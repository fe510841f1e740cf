"""A private second dockerd in its own network namespace (design.md: "A second
engine"), so tests can stop and start an engine without touching the one the
other tests use."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import docker


def _pings(host: str) -> bool:
    try:
        return bool(docker.DockerClient(base_url=host, timeout=5).ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


class PrivateEngine:
    """``start()``/``stop()`` a dockerd at ``unix:///run/<name>/docker.sock``."""

    def __init__(self, name: str, *, data_root: Path | None = None, extra_args: tuple[str, ...] = ()):
        self.name = name
        self.run_dir = Path(f"/run/{name}")
        self._own_data_root = data_root is None
        self.data_root = data_root or Path(f"/var/lib/{name}")
        self.extra_args = tuple(extra_args)
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

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def teardown(self) -> None:
        """Stop dockerd, delete the namespace, the run dir and (when it made it) the data root."""
        self.stop()
        subprocess.run(["ip", "netns", "delete", self.name], check=False)
        if self._own_data_root:
            shutil.rmtree(self.data_root, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=30)
