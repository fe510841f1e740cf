"""The one answer to "which container is this service?" and back.

Pure: no I/O. Every part of dockwarden that maps a service to its
container(s) (drift, recommend, the pipeline, the daemon, recovery, the CLI and
the API) goes through this module, so they cannot disagree (design.md: "one
resolver").

Rules, in order:

* A compose service (``spec.compose_project`` set) is realised by the
  containers labelled ``com.docker.compose.project == compose_project`` and
  ``com.docker.compose.service == compose_service or name`` (the labels docker
  compose v1 and v2 write). Its container *name* is whatever compose chose
  (``proj_web_1``, ``proj-web-1``); actions are recorded under that real name
  and id.
* Any other service is realised by the container named
  ``spec.container_name`` (``container`` from the inventory, else the service
  name).

Lookups use :class:`~dockwarden.model.ContainerIndex` (built once per world
snapshot) and :class:`ServiceIndex` (built once per desired state), so resolving
all services is O(services + containers).
"""

from __future__ import annotations

from collections.abc import Mapping

from dockwarden.model import ContainerState, DesiredState, ServiceSpec, WorldState

#: Labels docker compose (v1 and v2) writes on the containers it creates.
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"


def compose_key(spec: ServiceSpec) -> tuple[str, str] | None:
    """``(project, service)`` of a compose service, else None."""
    if not spec.compose_project:
        return None
    return (spec.compose_project, spec.compose_service or spec.name)


def find_containers(spec: ServiceSpec, world: WorldState) -> list[ContainerState]:
    """Every container that realises a service (a scaled compose service has
    several), running ones first, then by name and id.

    Args:
        spec (ServiceSpec): The service.
        world (WorldState): The observed node.
    Returns:
        list[ContainerState]: Empty when the engine has none (drift ``missing``).
    """
    key = compose_key(spec)
    if key is not None:
        found = list(world.index.by_compose.get(key, ()))
    else:
        c = world.index.by_name.get(spec.container_name)
        found = [c] if c is not None else []
    if len(found) > 1:
        found.sort(key=lambda c: (not c.running, c.name, c.id))
    return found


def find_container(spec: ServiceSpec, world: WorldState) -> ContainerState | None:
    """The container that realises a service, if the engine has one.

    When a scaled compose service has several containers, a running one is
    preferred, then the first by name, so the choice is deterministic.

    Args:
        spec (ServiceSpec): The service.
        world (WorldState): The observed node.
    Returns:
        ContainerState | None: None when no container matches (drift ``missing``).
    """
    found = find_containers(spec, world)
    return found[0] if found else None


def matches(spec: ServiceSpec, c: ContainerState) -> bool:
    """True when container ``c`` realises service ``spec`` (the rules above)."""
    key = compose_key(spec)
    if key is not None:
        return (c.compose_project, c.compose_service) == key
    return c.name == spec.container_name


class ServiceIndex:
    """The reverse lookups of one desired state: which service does this
    container (or this engine event's actor) belong to?

    Args:
        desired (DesiredState): The desired state, labelled services merged in.
    """

    __slots__ = ("desired", "_by_container", "_by_compose")

    def __init__(self, desired: DesiredState):
        self.desired = desired
        self._by_container: dict[str, ServiceSpec] = {}
        self._by_compose: dict[tuple[str, str], ServiceSpec] = {}
        for spec in desired.services.values():
            key = compose_key(spec)
            if key is not None:
                self._by_compose.setdefault(key, spec)
            else:
                self._by_container.setdefault(spec.container_name, spec)

    def service_of(self, name: str, labels: Mapping[str, str] | None = None) -> ServiceSpec | None:
        """The service a container belongs to, by its compose labels, else its name.

        Args:
            name (str): The container's name (a leading "/" is ignored).
            labels (Mapping[str, str] | None): Its labels (an engine event's
                actor attributes carry them too).
        Returns:
            ServiceSpec | None: None for a container no service claims.
        """
        labels = labels or {}
        return self._lookup(name, labels.get(COMPOSE_PROJECT_LABEL), labels.get(COMPOSE_SERVICE_LABEL))

    def _lookup(self, name: str, project: str | None, service: str | None) -> ServiceSpec | None:
        if project and service:
            spec = self._by_compose.get((project, service))
            if spec is not None:
                return spec
        return self._by_container.get(name.lstrip("/"))

    def service_of_container(self, c: ContainerState) -> ServiceSpec | None:
        """The service an observed container belongs to, else None."""
        return self._lookup(c.name, c.compose_project, c.compose_service)

    def claims(self, c: ContainerState) -> bool:
        """True when some service claims container ``c``."""
        return self.service_of_container(c) is not None
