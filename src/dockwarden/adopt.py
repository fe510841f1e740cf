"""From what the engine runs now to an inventory (``dockwarden inventory init``).

PURE: no engine, no clock, no files. :func:`adopt` maps observed containers
(:class:`~dockwarden.model.ContainerState`) to ``services.yaml`` entries and says
what it skipped and why; :func:`render` writes them as YAML with comments for the
person who must confirm them. ``cli_inventory`` does the I/O.

Rules, in order, per container:

1. Skipped: not matching ``match_labels``; dockwarden itself, pool containers,
   one-off jobs (``docker run --rm``, ``compose run``) (``inventory.not_a_service``);
   opted out with ``dockwarden.enable=false``; being removed; not running when
   ``include_stopped`` is False.
2. A compose container (labels ``com.docker.compose.project`` / ``.service``) joins
   one entry per (project, service): ``compose_project``, ``compose_service``
   (when the entry's name differs), ``compose_file`` = the first file of
   ``com.docker.compose.project.config_files``, joined to
   ``com.docker.compose.project.working_dir`` when relative (docker-compose v1
   writes it relative, compose v2 absolute). The inventory is the only source of
   compose paths dockwarden trusts (``execute.compose_target``), so the file is
   written for a person to confirm, and a comment says so.
3. Any other container is one entry named after it.
4. ``desired``: ``running`` when a container of the entry is running or
   restarting, else ``stopped`` (exited, created, dead, paused: dockwarden reads
   a pause as intent ``stopped``), so the inventory matches the host and a pass
   right after finds no drift.
5. ``depends_on`` from compose v2's ``com.docker.compose.depends_on`` label
   (``svc:condition:restart,...``), mapped to the entries' names. docker-compose
   v1 writes no such label: then depends_on is left out and a note says so.
6. ``stop_timeout_s`` from docker-autoheal's ``autoheal.stop.timeout`` label.

Names: a plain container keeps its name; a compose service is named after the
service, or ``<project>-<service>`` when two projects have that service or a
container has that name. Entries are ordered: compose projects (by project,
then service), then plain containers, by name.
"""

from __future__ import annotations

import posixpath
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import yaml
from pydantic import ValidationError

from dockwarden.inventory import ServiceEntry, label_enabled, label_stop_timeout, not_a_service
from dockwarden.model import ContainerState, rfc3339

COMPOSE_CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
COMPOSE_WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"
#: Written by compose v2 (``db:service_healthy:false,cache:service_started:true``);
#: not by docker-compose v1.
COMPOSE_DEPENDS_ON_LABEL = "com.docker.compose.depends_on"
COMPOSE_VERSION_LABEL = "com.docker.compose.version"

#: Container states in which a service is meant to run.
_RUNNING_STATES = frozenset({"running", "restarting"})
#: Docker restart policies that restart containers behind dockwarden's back.
FIGHTING_RESTART_POLICIES = frozenset({"always", "unless-stopped", "on-failure"})


@dataclass(frozen=True)
class Entry:
    """One ``services[]`` entry to write.

    ``fields`` is the entry in the order written (``name`` first); ``containers``
    the container names it stands for; ``comments`` the lines written above it.
    """

    fields: dict[str, Any]
    containers: tuple[str, ...]
    comments: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return str(self.fields["name"])


@dataclass(frozen=True)
class Skipped:
    """A container left out, and why (a sentence a person can read)."""

    container: str
    reason: str


@dataclass(frozen=True)
class Adoption:
    """The result of :func:`adopt`.

    ``notes`` are things to confirm or add by hand (compose files, dependencies
    compose did not record, restart policies that fight dockwarden's);
    ``filtered_out`` counts containers that did not match ``match_labels``.
    """

    entries: tuple[Entry, ...]
    skipped: tuple[Skipped, ...] = ()
    notes: tuple[str, ...] = ()
    filtered_out: int = 0

    def document(self) -> dict[str, Any]:
        """The ``services.yaml`` document: ``{"services": [fields, ...]}``."""
        return {"services": [dict(e.fields) for e in self.entries]}


@dataclass
class _Group:
    """The containers of one compose (project, service)."""

    project: str
    service: str
    containers: list[ContainerState] = field(default_factory=list)


def parse_depends_on(value: str | None) -> list[str]:
    """Service names of compose v2's ``com.docker.compose.depends_on`` label.

    Args:
        value (str | None): e.g. ``"db:service_healthy:false,cache:service_started:true"``
            (older v2 releases write ``db:service_started`` or just ``db``).
    Returns:
        list[str]: e.g. ``["db", "cache"]``, in label order, without duplicates
        or empty items.
    """
    out: list[str] = []
    for item in (value or "").split(","):
        name = item.strip().split(":", 1)[0].strip()
        if name and name not in out:
            out.append(name)
    return out


def _matches(c: ContainerState, match_labels: Mapping[str, str | None]) -> bool:
    for k, v in match_labels.items():
        if k not in c.labels or (v is not None and c.labels[k] != v):
            return False
    return True


def _skip_reason(c: ContainerState, *, include_stopped: bool, own_ids: frozenset[str]) -> str | None:
    if c.id in own_ids:
        return "dockwarden itself"
    why = not_a_service(c)
    if why is not None:
        return why
    if label_enabled(c.labels) is False:
        return "opted out (dockwarden.enable=false)"
    if c.state == "removing":
        return "being removed"
    if not include_stopped and c.state not in _RUNNING_STATES:
        return f"not running ({c.state}; --running adopts running containers only)"
    return None


def _compose_file(c: ContainerState) -> tuple[str | None, list[str]]:
    """The compose file for the inventory, from a container's compose labels:
    (absolute path or None, notes)."""
    files = [f.strip() for f in (c.labels.get(COMPOSE_CONFIG_FILES_LABEL) or "").split(",") if f.strip()]
    workdir = (c.labels.get(COMPOSE_WORKING_DIR_LABEL) or "").strip()
    project = c.compose_project
    if not files:
        return None, [f"compose project {project}: its containers name no compose file "
                      f"({COMPOSE_CONFIG_FILES_LABEL}); add compose_file by hand so dockwarden can "
                      f"bring a removed container back"]
    notes = []
    if len(files) > 1:
        notes.append(f"compose project {project} was started with {len(files)} files ({', '.join(files)}); "
                     f"the inventory holds one compose_file, the first: confirm that it alone describes the project")
    first = files[0]
    if not posixpath.isabs(first):
        if not posixpath.isabs(workdir):
            notes.append(f"compose project {project}: compose file {first!r} is relative and no absolute "
                         f"working dir is recorded ({COMPOSE_WORKING_DIR_LABEL}); add compose_file by hand")
            return None, notes
        first = posixpath.normpath(posixpath.join(workdir, first))
    return first, notes


def _state_text(cs: Sequence[ContainerState]) -> str:
    parts = []
    for c in cs:
        s = c.state
        if c.state in ("exited", "dead") and c.exit_code is not None:
            s += f" with code {c.exit_code}"
        if c.health:
            s += f", {c.health}"
        parts.append(f"{c.name} {s}")
    return "; ".join(parts)


def _names(plain: Sequence[ContainerState], groups: Sequence[_Group]) -> dict[tuple[str, str], str]:
    """Entry names of compose services (see the module docstring)."""
    used = {c.name for c in plain}
    by_service: dict[str, int] = {}
    for g in groups:
        by_service[g.service] = by_service.get(g.service, 0) + 1
    out: dict[tuple[str, str], str] = {}
    for g in groups:
        name = g.service if by_service[g.service] == 1 and g.service not in used else f"{g.project}-{g.service}"
        base, n = name, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        out[(g.project, g.service)] = name
    return out


def _validated(fields: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Check one entry against the inventory schema: (fields, None) or (None, reason)."""
    try:
        ServiceEntry(**fields)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "entry"
        return None, f"cannot be written as an inventory entry: {where}: {first['msg']} (got {first.get('input')!r})"
    return fields, None


def adopt(containers: Sequence[ContainerState], *, include_stopped: bool = True,
          own_ids: frozenset[str] = frozenset(),
          match_labels: Mapping[str, str | None] | None = None) -> Adoption:
    """Turn observed containers into inventory entries (rules in the module docstring).

    Args:
        containers (Sequence[ContainerState]): Every container of the engine.
        include_stopped (bool): Adopt containers that are not running too
            (``--all``, the default), as ``desired: stopped``; False: skip them
            (``--running``).
        own_ids (frozenset[str]): Ids of the container this dockwarden runs in, if any.
        match_labels (Mapping[str, str | None] | None): Adopt only containers with
            these labels (a None value: the label with any value).
    Returns:
        Adoption: entries, skipped containers with reasons, notes for the person
        confirming the file. Every entry passes the inventory schema.
    """
    match_labels = match_labels or {}
    skipped: list[Skipped] = []
    notes: list[str] = []
    plain: list[ContainerState] = []
    groups: dict[tuple[str, str], _Group] = {}
    filtered_out = 0
    for c in sorted(containers, key=lambda c: (c.name, c.id)):
        if not _matches(c, match_labels):
            filtered_out += 1
            continue
        why = _skip_reason(c, include_stopped=include_stopped, own_ids=own_ids)
        if why is not None:
            skipped.append(Skipped(c.name, why))
        elif c.compose_project and c.compose_service:
            key = (c.compose_project, c.compose_service)
            groups.setdefault(key, _Group(*key)).containers.append(c)
        else:
            plain.append(c)
    ordered = [groups[k] for k in sorted(groups)]
    names = _names(plain, ordered)

    entries: list[Entry] = []
    projects_with_deps = {g.project for g in ordered
                          if any(COMPOSE_DEPENDS_ON_LABEL in c.labels for c in g.containers)}
    for project in sorted({g.project for g in ordered} - projects_with_deps):
        versions = sorted({c.labels.get(COMPOSE_VERSION_LABEL, "?") for g in ordered if g.project == project
                           for c in g.containers})
        notes.append(f"compose project {project}: no {COMPOSE_DEPENDS_ON_LABEL} label on its containers "
                     f"(compose v2 writes it; these were made by compose {', '.join(versions)}, and "
                     f"docker-compose v1 does not), so depends_on is left out: add each service's "
                     f"dependencies by hand")
    project_files: dict[str, str | None] = {}
    for g in ordered:
        first = g.containers[0]
        name = names[(g.project, g.service)]
        if g.project not in project_files:
            path, file_notes = _compose_file(first)
            project_files[g.project] = path
            notes += file_notes
        fields: dict[str, Any] = {"name": name, "compose_project": g.project}
        if g.service != name:
            fields["compose_service"] = g.service
        if project_files[g.project]:
            fields["compose_file"] = project_files[g.project]
        running = any(c.state in _RUNNING_STATES for c in g.containers)
        fields["desired"] = "running" if running else "stopped"
        deps: list[str] = []
        for dep in parse_depends_on(next((c.labels[COMPOSE_DEPENDS_ON_LABEL] for c in g.containers
                                          if COMPOSE_DEPENDS_ON_LABEL in c.labels), None)):
            dep_name = names.get((g.project, dep))
            if dep_name is None:
                notes.append(f"{name}: compose says it depends on {g.project}/{dep}, which was not adopted "
                             f"(skipped or absent): left out of depends_on")
            elif dep_name != name:
                deps.append(dep_name)
        if deps:
            fields["depends_on"] = deps
        _stop_timeout_field(fields, g.containers, notes)
        comments = [f"compose project {g.project}, service {g.service}: {_state_text(g.containers)}"]
        if "compose_file" in fields:
            comments.append("compose_file was read from the containers' compose labels: confirm it "
                            "(dockwarden trusts compose paths from this file only)")
        ok, why = _validated(fields)
        if ok is None:
            skipped += [Skipped(c.name, why or "") for c in g.containers]
            continue
        entries.append(Entry(fields, tuple(c.name for c in g.containers), tuple(comments)))
    for c in plain:
        fields = {"name": c.name, "desired": "running" if c.state in _RUNNING_STATES else "stopped"}
        _stop_timeout_field(fields, [c], notes)
        comments = [f"container {_state_text([c])}, image {c.image}"]
        if fields["desired"] == "stopped":
            comments.append("not running now, so desired: stopped; write running if it should run")
        ok, why = _validated(fields)
        if ok is None:
            skipped.append(Skipped(c.name, why or ""))
            continue
        entries.append(Entry(fields, (c.name,), tuple(comments)))
    by_name = {c.name: c for c in containers}
    for e in entries:
        for cname in e.containers:
            c = by_name[cname]
            policy = (c.restart_policy or "no").split(":", 1)[0]
            if policy in FIGHTING_RESTART_POLICIES:
                notes.append(f"{e.name}: container {cname} has Docker restart policy {policy!r}, which restarts "
                             f"it behind dockwarden's back (`dockwarden doctor` explains): "
                             f"`docker update --restart=no {cname}`")
    return Adoption(tuple(entries), tuple(skipped), tuple(notes), filtered_out)


def _stop_timeout_field(fields: dict[str, Any], cs: Sequence[ContainerState], notes: list[str]) -> None:
    """``stop_timeout_s`` from docker-autoheal's label on the first container that has it."""
    for c in cs:
        value, problem = label_stop_timeout(c.labels)
        if problem:
            notes.append(f"{fields['name']}: container {c.name}: {problem}; not written")
        if value is not None:
            fields["stop_timeout_s"] = int(value) if value == int(value) else value
            return


HEADER = """\
# hosts/{node}/services.yaml: desired state of node {node}
#
# Written by `dockwarden inventory init` at {ts} from what the Docker engine
# ({engine}) ran then: review it before you rely on it. It says what ran, not
# what should run: a container stopped then is `desired: stopped`.
#
# compose_file paths were read from the containers' compose labels. dockwarden
# runs `compose up` only with a compose file named in this inventory, the only
# source of compose paths it trusts (whoever creates a container chooses its
# labels): confirm each one.
#
# Every field is explained in examples/inventory/hosts/demo/services.yaml.
# Check the file with `dockwarden inventory validate`.
"""


def render(adoption: Adoption, *, node: str, generated_at: datetime, engine: str) -> str:
    """The inventory as YAML text, with a header and a comment above each entry.

    Args:
        adoption (Adoption): From :func:`adopt`.
        node (str): The node name (the ``hosts/<node>`` directory).
        generated_at (datetime): When the engine was observed (UTC), for the header.
        engine (str): Which engine it was (``DOCKER_HOST`` or the local socket).
    Returns:
        str: ``services.yaml`` text that ``yaml.safe_load`` reads back as
        :meth:`Adoption.document`.
    """
    lines = [HEADER.format(node=node, ts=rfc3339(generated_at), engine=engine).rstrip("\n"), ""]
    if not adoption.entries:
        lines.append("services: []")
        return "\n".join(lines) + "\n"
    lines.append("services:")
    for i, e in enumerate(adoption.entries):
        if i:
            lines.append("")
        for c in e.comments:
            lines += textwrap.wrap(c, width=92, initial_indent="  # ", subsequent_indent="  #   ",
                                   break_on_hyphens=False, break_long_words=False)
        dumped = yaml.safe_dump([dict(e.fields)], sort_keys=False, default_flow_style=False, width=1000)
        lines += [f"  {ln}" for ln in dumped.rstrip("\n").split("\n")]
    return "\n".join(lines) + "\n"
