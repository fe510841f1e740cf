"""Every Docker call of the container pool: create/start, remove, list, exec,
probes. The only pool module that imports ``docker`` (``.importlinter``).

Containers are found by their labels (``dockwarden.managed=true`` and
``dockwarden.pool``) and names, never by a remembered id; a container that
does not carry the labels is never removed or used. Errors of the SDK become
:class:`~dockwarden.pool.errors.PoolError` subclasses, so callers never see
``docker.errors``. Source of the calls: docker-py ``APIClient`` (containers,
create_container, create_host_config, start, remove_container, exec_create,
exec_start, exec_inspect).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import docker
import docker.errors
import requests.exceptions
from docker.types import Mount

from dockwarden import ssh_transport
from dockwarden.pool.errors import PoolEngineError, PoolInputError, PoolRefused

POOL_LABEL = "dockwarden.pool"
MANAGED_LABEL = "dockwarden.managed"
_EXITED = re.compile(r"Exited \((-?\d+)\)")


@dataclass(frozen=True)
class SpawnSpec:
    """What to create. ``mounts`` are (source, target, read_only); a source that
    is an absolute path is a bind mount, else a volume name. ``cpus`` in CPUs and
    ``memory`` in bytes, 0 = no limit."""

    name: str
    image: str
    command: list[str]
    labels: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[tuple[str, str, bool]] = field(default_factory=list)
    cpus: float = 0.0
    memory: int = 0


@dataclass(frozen=True)
class EngineContainer:
    """A pool container as the engine lists it. ``state`` is Docker's State
    (running, exited, ...); ``health`` Docker's own healthcheck status or None."""

    id: str
    name: str
    state: str
    health: str | None
    exit_code: int | None
    ip: str | None


@contextmanager
def _engine_call(what: str) -> Iterator[None]:
    """Turn SDK and transport errors into PoolEngineError naming the call."""
    try:
        yield
    except docker.errors.APIError as e:
        raise PoolEngineError(f"{what}: {e.explanation or e}") from e
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as e:
        raise PoolEngineError(f"{what}: Docker engine unreachable: {e}") from e


class PoolEngine:
    """The Docker engine as the pool uses it.

    Args:
        docker_host: ``DOCKER_HOST``-style URL, or None for the environment's default.
        timeout_s: HTTP timeout of API calls, seconds.
    Raises:
        PoolEngineError: the engine does not answer a ping.
    """

    def __init__(self, docker_host: str | None = None, timeout_s: float = 60.0):
        with _engine_call("connect"):
            ssh_transport.ensure_loaded(docker_host or os.environ.get("DOCKER_HOST"))
            if docker_host:
                self.client = docker.DockerClient(base_url=docker_host, timeout=int(timeout_s))
            else:
                self.client = docker.from_env(timeout=int(timeout_s))
            self.client.ping()
        self.api = self.client.api

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ read

    def list(self) -> dict[str, EngineContainer]:
        """Every pool container of this engine (any prefix, any state), by name. One API call."""
        with _engine_call("list pool containers"):
            rows = self.api.containers(all=True, filters={"label": [f"{MANAGED_LABEL}=true", POOL_LABEL]})
        out = {}
        for r in rows:
            name = (r.get("Names") or ["/"])[0].lstrip("/")
            status = r.get("Status") or ""
            health = None
            if "(healthy)" in status:
                health = "healthy"
            elif "(unhealthy)" in status:
                health = "unhealthy"
            elif "(health: starting)" in status:
                health = "starting"
            m = _EXITED.search(status)
            nets = ((r.get("NetworkSettings") or {}).get("Networks") or {}).values()
            ip = next((n.get("IPAddress") for n in nets if n.get("IPAddress")), None)
            out[name] = EngineContainer(id=r["Id"], name=name, state=r.get("State") or "unknown", health=health,
                                        exit_code=int(m.group(1)) if m else None, ip=ip)
        return out

    def names_in_use(self, prefix: str) -> set[str]:
        """Names of all containers (pool or not) starting with ``prefix``, so a new
        default name never collides with a container outside the pool."""
        with _engine_call("list container names"):
            rows = self.api.containers(all=True, filters={"name": prefix})
        return {n.lstrip("/") for r in rows for n in (r.get("Names") or []) if n.lstrip("/").startswith(prefix)}

    # ------------------------------------------------------------------ write

    def create_and_start(self, spec: SpawnSpec) -> str:
        """Create and start one container; removes it again when start fails.

        Returns:
            The container's id.
        Raises:
            PoolInputError: the image is not on this engine (the pool never pulls).
            PoolRefused: the name is taken by a container outside the pool.
            PoolEngineError: anything else the engine refused.
        """
        mounts = [Mount(target=t, source=s, type="bind" if s.startswith("/") else "volume", read_only=ro)
                  for s, t, ro in spec.mounts]
        try:
            with _engine_call(f"{spec.name}: create"):
                hc = self.api.create_host_config(
                    mounts=mounts or None, nano_cpus=int(spec.cpus * 1e9) or None, mem_limit=spec.memory or None)
                created = self.api.create_container(
                    spec.image, command=spec.command or None, name=spec.name, labels=spec.labels,
                    environment=spec.env or None, host_config=hc, detach=True)
        except PoolEngineError as e:
            cause = e.__cause__
            if isinstance(cause, docker.errors.ImageNotFound):
                raise PoolInputError(f"image: {spec.image!r} is not on this engine (the pool never pulls; "
                                     f"build, load or pull it first)") from e
            if isinstance(cause, docker.errors.APIError) and cause.status_code == 409:
                raise PoolRefused(f"name {spec.name!r} is used by a container that is not in the pool") from e
            raise
        cid = created["Id"]
        try:
            with _engine_call(f"{spec.name}: start"):
                self.api.start(cid)
        except PoolEngineError:
            with _engine_call(f"{spec.name}: remove after a failed start"):
                self.api.remove_container(cid, force=True)
            raise
        return cid

    def remove(self, name: str) -> bool:
        """Kill and remove a pool container by name (SIGKILL: ``docker rm -f``).

        Returns:
            True when removed, False when it was already gone.
        Raises:
            PoolRefused: a container of that name exists but is not a pool container.
            PoolEngineError: the engine refused or is unreachable.
        """
        with _engine_call(f"{name}: remove"):
            try:
                info = self.api.inspect_container(name)
            except docker.errors.NotFound:
                return False
            labels = (info.get("Config") or {}).get("Labels") or {}
            if labels.get(MANAGED_LABEL) != "true" or POOL_LABEL not in labels:
                raise PoolRefused(f"{name}: the container of that name is not a pool container; not removing it")
            try:
                self.api.remove_container(info["Id"], force=True)
            except docker.errors.NotFound:
                return False
        return True

    # ------------------------------------------------------------------ exec and probes

    def exec_stream(self, name: str, argv: list[str], on_stdout: Callable[[bytes], None],
                    on_stderr: Callable[[bytes], None]) -> int:
        """Run ``argv`` in a running container (``docker exec``, no shell, no tty)
        and pass its output on as it comes.

        Returns:
            The command's exit code (126/127 when it cannot run, as ``docker exec``).
        Raises:
            PoolEngineError: the container is not running, vanished, or the engine failed.
        """
        with _engine_call(f"{name}: exec"):
            eid = self.api.exec_create(name, argv, stdout=True, stderr=True, tty=False)["Id"]
            for out, err in self.api.exec_start(eid, stream=True, demux=True):
                if out:
                    on_stdout(out)
                if err:
                    on_stderr(err)
            code = self.api.exec_inspect(eid).get("ExitCode")
        return -1 if code is None else int(code)

    def probe_command(self, name: str, argv: list[str], timeout_s: float) -> tuple[bool, str]:
        """Run a health command in the container; healthy when it exits 0 within the timeout.

        Returns:
            (healthy, a short reason: exit code and the output's last line, or the error).
        """
        def run() -> tuple[int, bytes]:
            eid = self.api.exec_create(name, argv, stdout=True, stderr=True, tty=False)["Id"]
            output = self.api.exec_start(eid)
            return self.api.exec_inspect(eid).get("ExitCode"), output

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        try:
            code, output = pool.submit(run).result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            return False, f"health command timed out after {timeout_s:g} s"
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as e:
            return False, f"health command could not run: {e}"
        finally:
            pool.shutdown(wait=False)
        last = (output or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        if code == 0:
            return True, "health command exited 0"
        return False, f"health command exited {code}: {last[0][:200]}".rstrip(": ")

    @staticmethod
    def probe_http(ip: str | None, port: int, path: str, timeout_s: float) -> tuple[bool, str]:
        """GET http://<ip>:<port><path> from this host; healthy on 2xx or 3xx.

        Returns:
            (healthy, a short reason).
        """
        if not ip:
            return False, "HTTP probe: the container has no IP address"
        url = f"http://{ip}:{port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - http to our own container
                return resp.status < 400, f"HTTP probe {url}: {resp.status}"
        except urllib.error.HTTPError as e:
            return e.code < 400, f"HTTP probe {url}: {e.code}"
        except (urllib.error.URLError, OSError) as e:
            return False, f"HTTP probe {url}: {getattr(e, 'reason', e)}"
