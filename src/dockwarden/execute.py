"""The only module that changes containers.

Every action re-reads the container first and acts only when needed
(controller-runtime ``CreateOrUpdate``: compare, then write), so running an
action twice is harmless. Execution never raises: it returns an
:class:`~dockwarden.model.Outcome` (kopf ``execute_handler_once``), with
``permanent=True`` for errors retrying cannot fix (a missing executable or
image, an invalid configuration).

The caller records the action in the store *before* calling, so the Docker
events it causes are recognised as dockwarden's own and never read as operator
intent.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import requests

from dockwarden.model import ActionKind, ActionResult, Outcome, ServiceSpec

log = logging.getLogger(__name__)

#: Substrings of Docker error messages that mean "retrying will not help".
#: Source: runc/containerd messages seen for exit 126/127 and bad configs.
PERMANENT_ERROR_MARKERS = (
    "executable file not found",
    "no such file or directory",
    "permission denied",
    "exec format error",
    "invalid reference format",
    "no such image",
    "invalid mount config",
    "invalid volume specification",
    "unknown or invalid runtime",
    "is not a valid",
)


def is_permanent_error(message: str | None) -> bool:
    """True when a Docker error message names a configuration problem."""
    m = (message or "").lower()
    return any(marker in m for marker in PERMANENT_ERROR_MARKERS)


@dataclass(frozen=True)
class ComposeTarget:
    """Where a compose service lives: project name, service, config files and
    working dir, from the inventory only (``pipeline.compose_target``)."""

    project: str
    service: str
    files: tuple[str, ...] = ()
    working_dir: str | None = None


def compose_command() -> list[str] | None:
    """The compose CLI as an argument list: ``docker compose`` (v2 plugin) when it
    answers, else ``docker-compose`` (v1), else None."""
    docker_bin = shutil.which("docker")
    if docker_bin:
        try:
            r = subprocess.run([docker_bin, "compose", "version"], capture_output=True, timeout=10)
            if r.returncode == 0:
                return [docker_bin, "compose"]
        except (OSError, subprocess.TimeoutExpired):
            log.debug("docker compose plugin not usable")
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


class Executor:
    """Carries out actions against one Docker engine.

    Args:
        client: a docker SDK client.
        stop_timeout_s: grace period before SIGKILL for stop/restart, seconds
            (Docker's default is 10 s).
    """

    def __init__(self, client: docker.DockerClient, *, stop_timeout_s: float = 10.0):
        self.client = client
        self.stop_timeout_s = stop_timeout_s

    # ------------------------------------------------------------------ public

    def run(
        self,
        action: ActionKind,
        *,
        service: str,
        container: str,
        spec: dict[str, Any] | None = None,
        compose: ComposeTarget | None = None,
        stop_timeout_s: float | None = None,
    ) -> Outcome:
        """Carry out one action and report what happened.

        Args:
            action: start, stop, restart, recreate or compose_up.
            service: service name (for the outcome and logs).
            container: container name.
            spec: creation spec for ``recreate`` (``observe.inspect.spec_of`` shape:
                keyword arguments of ``client.containers.create``).
            compose: target for ``compose_up``.
            stop_timeout_s: this call's grace period before SIGKILL for stop and
                restart, seconds (a service's ``stop_timeout_s``: inventory, or
                docker-autoheal's ``autoheal.stop.timeout`` label); None: the
                executor's. Docker takes whole seconds; it is rounded up.
        Returns:
            Outcome: ``ok`` and ``result`` ("unchanged", "started", ...), or
            ``ok=False`` with ``error`` and ``permanent``. Never raises.
        Side effects: Docker start/stop/restart/remove/create, or a compose run.
        """
        t0 = time.monotonic()
        grace_s = math.ceil(self.stop_timeout_s if stop_timeout_s is None else stop_timeout_s)
        try:
            match action:
                case ActionKind.START:
                    result = self._start(container)
                case ActionKind.STOP:
                    result = self._stop(container, grace_s)
                case ActionKind.RESTART:
                    result = self._restart(container, grace_s)
                case ActionKind.RECREATE:
                    if not spec:
                        return self._fail(action, service, container, t0, "no recorded spec to recreate from", True)
                    result = self._recreate(container, spec)
                case ActionKind.COMPOSE_UP:
                    if compose is None:
                        return self._fail(action, service, container, t0, "no compose project to bring up", True)
                    result = self._compose_up(compose)
                case _:
                    return self._fail(action, service, container, t0, f"{action.value} is not an executable action", True)
        except docker.errors.NotFound as e:
            msg = _explain(e)
            return self._fail(action, service, container, t0, msg, is_permanent_error(msg) or action != ActionKind.START)
        except docker.errors.APIError as e:
            msg = _explain(e)
            # 403: an authorization plugin or a socket proxy refused the call (issue 12:
            # recreate behind packaging/socket-proxy); retrying will not help.
            return self._fail(action, service, container, t0, msg, is_permanent_error(msg) or e.status_code == 403)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            return self._fail(action, service, container, t0, f"engine error: {e}", False)
        except _ComposeFailed as e:
            return self._fail(action, service, container, t0, str(e), is_permanent_error(str(e)))
        dt = time.monotonic() - t0
        log.info("%s: %s -> %s in %.3f s", service, action.value, result, dt)
        return Outcome(action=action, service=service, container=container, ok=True, result=result, duration_s=dt)

    # ------------------------------------------------------------------ actions

    def _state(self, container: str) -> dict[str, Any]:
        return self.client.api.inspect_container(container)["State"]

    def _start(self, container: str) -> ActionResult:
        state = self._state(container)
        if state.get("Paused"):
            self.client.api.unpause(container)
            return "started"
        if state.get("Running"):
            return "unchanged"
        self.client.api.start(container)
        return "started"

    def _stop(self, container: str, grace_s: int) -> ActionResult:
        if not self._state(container).get("Running"):
            return "unchanged"
        self.client.api.stop(container, timeout=grace_s)  # the SDK adds grace_s to the HTTP timeout
        return "stopped"

    def _restart(self, container: str, grace_s: int) -> ActionResult:
        self.client.api.restart(container, timeout=grace_s)
        return "restarted"

    def _recreate(self, container: str, spec: dict[str, Any]) -> ActionResult:
        try:
            state = self._state(container)
        except docker.errors.NotFound:
            state = None
        if state is not None:
            if state.get("Running"):
                return "unchanged"
            self.client.api.remove_container(container, force=True)
        kwargs = dict(spec)
        kwargs["name"] = container
        image = kwargs.pop("image")
        c = self.client.containers.create(image, **kwargs)
        c.start()
        return "recreated"

    def _compose_up(self, target: ComposeTarget) -> ActionResult:
        cmd = compose_command()
        if cmd is None:
            raise _ComposeFailed("neither `docker compose` nor `docker-compose` is installed")
        args = [*cmd, "-p", target.project]
        for f in target.files:
            args += ["-f", f]
        # --no-deps: never start a dependency the operator stopped (dependencies are
        # services of their own, reconciled in dependency order).
        args += ["up", "-d", "--no-deps", target.service]
        try:
            r = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=target.working_dir or None)
        except subprocess.TimeoutExpired as e:
            raise _ComposeFailed(f"{' '.join(args)}: timed out after 300 s") from e
        except OSError as e:
            raise _ComposeFailed(f"{' '.join(args)}: {e}") from e
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            raise _ComposeFailed(f"{' '.join(args)} exited {r.returncode}: {' / '.join(tail)}")
        return "composed"

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _fail(action: ActionKind, service: str, container: str, t0: float, error: str, permanent: bool) -> Outcome:
        dt = time.monotonic() - t0
        log.warning("%s: %s failed after %.3f s (%s): %s", service, action.value, dt,
                    "permanent" if permanent else "transient", error)
        return Outcome(action=action, service=service, container=container, ok=False, error=error,
                       permanent=permanent, duration_s=dt)


class _ComposeFailed(RuntimeError):
    pass


def _explain(e: docker.errors.APIError) -> str:
    """The engine's own explanation, without the SDK's URL noise."""
    expl = getattr(e, "explanation", None)
    if isinstance(expl, bytes):
        expl = expl.decode("utf-8", "replace")
    return str(expl or e)


def compose_target(spec: ServiceSpec) -> ComposeTarget | None:
    """Where ``compose up`` runs for a compose service: the project, the service,
    and the compose file *from the inventory only* (its directory is the working
    dir). A container's ``com.docker.compose.project.config_files`` label is
    never used: whoever creates a labelled container would choose the file that
    dockwarden runs with root engine access (issue 8).

    Returns:
        ComposeTarget | None: None when the service is not a compose service or
        its inventory entry names no ``compose_file`` (then a person is told the
        command instead: ``recommend.compose_command_text``).
    """
    if not spec.compose_project or not spec.compose_file:
        return None
    return ComposeTarget(project=spec.compose_project, service=spec.compose_service or spec.name,
                         files=(spec.compose_file,), working_dir=os.path.dirname(spec.compose_file) or None)
