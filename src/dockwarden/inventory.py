"""Desired state from ``hosts/<node>/services.yaml`` and from container labels.

Inventory layout (runtime supervisor, seed 001): a directory holding
``hosts/<node>/services.yaml`` files, or the path of one such file. Each file::

    services:
      - name: web                 # required, unique per node
        container: web            # default: name
        desired: running          # running | stopped
        remediation: auto         # auto | recommend | off
        depends_on: [db]
        max_restarts: 5           # restart budget override
        restart_window_s: 600
        stop_timeout_s: 20        # stop/restart grace period; default [guardrails] stop_timeout_s
      - name: api
        compose_project: shop     # instead of container
        compose_service: api      # default: name
        compose_file: /srv/shop/docker-compose.yml   # optional, for compose_up

Labels (for containers outside the inventory): ``dockwarden.enable=true|false``
(case-insensitive), ``dockwarden.desired``, ``dockwarden.remediation``; and
docker-autoheal's ``autoheal=true`` / ``autoheal.stop.timeout`` as the policy's
``[labels]`` table says (``config_labels``). A labelled container is tracked as
a service named after the container.

Errors: :func:`load_inventory` raises :class:`~dockwarden.config.ConfigError`
naming the file, the field path (``services[2].desired``) and what was expected.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dockwarden.config import ConfigError
from dockwarden.config_errors import format_validation_error
from dockwarden.config_labels import AUTOHEAL_STOP_TIMEOUT_LABEL, LabelsPolicy
from dockwarden.model import (
    ContainerState,
    DesiredState,
    NodeConfig,
    Intent,
    IntentSource,
    Remediation,
    ServiceSpec,
)
from dockwarden.reconcile.resolve import ServiceIndex
from dockwarden.redact import describe_value, is_plain_name

LABEL_ENABLE = "dockwarden.enable"
LABEL_DESIRED = "dockwarden.desired"
LABEL_REMEDIATION = "dockwarden.remediation"
#: ``true`` on dockwarden's own container (its image sets it): never a service.
LABEL_SUPERVISOR = "dockwarden.supervisor"
#: Containers a dockwarden subsystem manages itself (the pool labels its workers so).
LABEL_MANAGED = "dockwarden.managed"
#: docker compose (v1 and v2) marks the containers of ``compose run`` so.
COMPOSE_ONEOFF_LABEL = "com.docker.compose.oneoff"

_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"  # Docker's container-name rule


class ServiceEntry(BaseModel):
    """One ``services[]`` entry of ``services.yaml`` (validation schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=_NAME_PATTERN)
    container: str | None = Field(None, pattern=_NAME_PATTERN)
    compose_project: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    compose_service: str | None = Field(None, pattern=_NAME_PATTERN)
    compose_file: str | None = None
    desired: Literal["running", "stopped"] = "running"
    remediation: Literal["auto", "recommend", "off"] = "auto"
    depends_on: list[str] = Field(default_factory=list)
    max_restarts: int | None = Field(None, ge=1)
    restart_window_s: float | None = Field(None, gt=0)
    stop_timeout_s: float | None = Field(None, ge=0)
    failover_to: list[str] = Field(default_factory=list)
    failover: Literal["recommend", "auto"] = "recommend"

    @model_validator(mode="after")
    def _container_or_compose(self) -> "ServiceEntry":
        if self.container and self.compose_project:
            raise ValueError("give either 'container' or 'compose_project', not both")
        if (self.compose_service or self.compose_file) and not self.compose_project:
            raise ValueError("'compose_service'/'compose_file' need 'compose_project'")
        return self


class ServicesFile(BaseModel):
    """The whole ``services.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    services: list[ServiceEntry] = Field(default_factory=list)


def _format_errors(path: Path, err: ValidationError, doc: Any) -> str:
    """:func:`~dockwarden.config_errors.format_validation_error`, with the service's
    name after its index when it has one: ``FILE: services[2].desired (service 'web'): ...``."""
    def service(loc: tuple) -> str:
        # Name the service too, when we can, so "services[3]" is findable.
        try:
            idx = next(p for p in loc if isinstance(p, int))
            name = doc["services"][idx].get("name")
        except (StopIteration, KeyError, IndexError, TypeError, AttributeError):
            return ""  # the error is not inside one service entry
        return f" (service {name!r})" if isinstance(name, str) and is_plain_name(name) else ""

    return format_validation_error(path, err, model=ServicesFile, note=service)


def _yaml_error(path: Path, e: yaml.YAMLError) -> str:
    """``FILE: <root>: not valid YAML: PROBLEM at line L, column C; expected ...``,
    without the snippet of the document PyYAML quotes (it may hold a secret)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or getattr(e, "context", None) or type(e).__name__
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{path}: <root>: not valid YAML: {problem}{at}; expected a YAML mapping with a 'services' list"


def parse_services_file(path: Path, node: str) -> list[ServiceSpec]:
    """Read and validate one ``services.yaml``.

    Args:
        path: the file.
        node: the node it describes (the ``hosts/<node>`` directory name).
    Returns:
        The services in file order.
    Raises:
        ConfigError: unreadable file, invalid YAML, or an invalid field; the
            message names the file and the field path.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: <root>: cannot read inventory file: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: <root>: not UTF-8 text (byte {e.start}); expected a UTF-8 YAML file") from e
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error(path, e)) from e
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: <root>: expected a mapping with a 'services' list, got {type(doc).__name__}")
    try:
        parsed = ServicesFile.model_validate(doc)  # non-string keys are errors too ("Keys should be strings")
    except ValidationError as e:
        raise ConfigError(_format_errors(path, e, doc)) from e

    specs: list[ServiceSpec] = []
    seen: dict[str, int] = {}
    for i, s in enumerate(parsed.services):
        if s.name in seen:
            raise ConfigError(
                f"{path}: services[{i}].name: duplicate service name {s.name!r} "
                f"(first at services[{seen[s.name]}])"
            )
        seen[s.name] = i
        specs.append(
            ServiceSpec(
                name=s.name,
                node=node,
                container=s.container if not s.compose_project else None,
                compose_project=s.compose_project,
                compose_service=(s.compose_service or s.name) if s.compose_project else None,
                compose_file=s.compose_file,
                desired=Intent(s.desired),
                remediation=Remediation(s.remediation),
                depends_on=tuple(s.depends_on),
                max_restarts=s.max_restarts,
                restart_window_s=s.restart_window_s,
                stop_timeout_s=s.stop_timeout_s,
                source=IntentSource.INVENTORY,
                origin=str(path),
                failover_to=tuple(s.failover_to),
                failover=s.failover,
            )
        )
    names = set(seen)
    for i, s in enumerate(parsed.services):
        for j, dep in enumerate(s.depends_on):
            if dep not in names:
                raise ConfigError(
                    f"{path}: services[{i}].depends_on[{j}] (service {s.name!r}): "
                    f"unknown service {dep!r}; expected one of {sorted(names)}"
                )
            if dep == s.name:
                raise ConfigError(f"{path}: services[{i}].depends_on[{j}]: a service cannot depend on itself")
    containers: dict[str, str] = {}
    for i, sp in enumerate(specs):
        if sp.compose_project:
            continue
        c = sp.container_name
        if c in containers:
            raise ConfigError(
                f"{path}: services[{i}].container: container {c!r} is already used by service {containers[c]!r}"
            )
        containers[c] = sp.name
    return specs


def inventory_files(path: Path) -> dict[str, Path]:
    """Map node name -> services.yaml for an inventory directory or single file.

    A single file's node is its parent directory's name when that parent sits
    in a ``hosts`` directory, else ``local``.

    Raises:
        ConfigError: the path does not exist or holds no ``hosts/*/services.yaml``.
    """
    if path.is_file():
        node = path.parent.name if path.parent.parent.name == "hosts" else "local"
        return {node: path}
    if not path.is_dir():
        raise ConfigError(f"{path}: inventory not found (expected a directory with hosts/<node>/services.yaml or one services.yaml)")
    files = sorted(path.glob("hosts/*/services.yaml")) + sorted(path.glob("hosts/*/services.yml"))
    if not files:
        raise ConfigError(f"{path}: no hosts/<node>/services.yaml found in the inventory directory")
    return {f.parent.name: f for f in files}


def load_inventory(path: str | Path | None, node: str | None = None) -> DesiredState:
    """Load the desired state of one node from an inventory.

    Args:
        path: inventory directory or file; None gives an empty desired state
            (labelled containers are still tracked).
        node: which ``hosts/<node>`` to read. None: the inventory's only node,
            else this machine's hostname.
    Returns:
        DesiredState with the node's services (all files are validated, so a
        broken file for another node is reported too).
    Raises:
        ConfigError: any file is invalid, or the node is not in the inventory.
    """
    if path is None:
        return DesiredState(node=node or socket.gethostname(), services={})
    p = Path(path)
    files = inventory_files(p)
    parsed = {n: parse_services_file(f, n) for n, f in files.items()}
    if node is None:
        node = next(iter(files)) if len(files) == 1 else socket.gethostname()
    if node not in parsed:
        raise ConfigError(
            f"{p}: no hosts/{node}/services.yaml; nodes in the inventory: {sorted(parsed)} "
            f"(choose one with --node or DOCKWARDEN_NODE)"
        )
    return DesiredState(node=node, services={s.name: s for s in parsed[node]})


# --------------------------------------------------------------------------- nodes


class TLSEntry(BaseModel):
    """``tls:`` of ``node.yaml``: client certificates for a ``tcp://`` engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify: bool = True


class NodeFile(BaseModel):
    """``hosts/<node>/node.yaml`` (validation schema). Defaults from Portainer's
    edge agents (5 s heartbeat, offline after 2 x interval + 20 s)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    docker_host: str | None = Field(None, pattern=r"^(unix|tcp|ssh)://\S+$")
    tls: TLSEntry | None = None
    offline_after_s: float = Field(30.0, gt=0)
    heartbeat_s: float = Field(5.0, gt=0)
    failover_after_s: float = Field(300.0, gt=0)


def load_node_config(path: str | Path | None, node: str) -> NodeConfig:
    """The node's ``node.yaml`` (next to its ``services.yaml``), or defaults.

    Raises:
        ConfigError: the file is not valid YAML or a field is wrong; names the file
            and the field. A ``tls`` table needs a ``tcp://`` docker_host.
    """
    if path is None:
        return NodeConfig(name=node)
    files = inventory_files(Path(path))
    f = files.get(node)
    nf = f.parent / "node.yaml" if f is not None else None
    if nf is None or not nf.exists():
        return NodeConfig(name=node)
    try:
        doc = yaml.safe_load(nf.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError(f"{nf}: <root>: cannot read node file: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{nf}: <root>: not UTF-8 text (byte {e.start}); expected a UTF-8 YAML file") from e
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error(nf, e).replace("a 'services' list", "node settings")) from e
    if not isinstance(doc, dict):
        raise ConfigError(f"{nf}: <root>: expected a mapping of node settings, got {type(doc).__name__}")
    try:
        parsed = NodeFile.model_validate(doc)
    except ValidationError as e:
        raise ConfigError(format_validation_error(nf, e, model=NodeFile)) from e
    if parsed.tls is not None and not (parsed.docker_host or "").startswith("tcp://"):
        raise ConfigError(f"{nf}: tls: expected only with a tcp:// docker_host")
    tls = parsed.tls or TLSEntry()
    return NodeConfig(name=node, docker_host=parsed.docker_host, tls_ca_cert=tls.ca_cert,
                      tls_client_cert=tls.client_cert, tls_client_key=tls.client_key, tls_verify=tls.verify,
                      offline_after_s=parsed.offline_after_s, heartbeat_s=parsed.heartbeat_s,
                      failover_after_s=parsed.failover_after_s)


def node_names(path: str | Path | None, wanted: Sequence[str] | None) -> list[str]:
    """The nodes to supervise: ``wanted`` (``--node``; ``all`` or empty with a
    several-node inventory: every ``hosts/<node>``), in inventory order.

    Raises:
        ConfigError: a wanted node is not in the inventory.
    """
    if path is None:
        return [w for w in (wanted or []) if w != "all"] or [socket.gethostname()]
    files = inventory_files(Path(path))
    if not wanted:
        return [next(iter(files))] if len(files) == 1 else [socket.gethostname()]
    if "all" in wanted:
        return list(files)
    unknown = [w for w in wanted if w not in files]
    if unknown:
        raise ConfigError(f"{path}: no hosts/<node> for {unknown}; nodes in the inventory: {sorted(files)}")
    return list(dict.fromkeys(wanted))


def check_failover_targets(path: str | Path | None, desired: Mapping[str, DesiredState]) -> None:
    """Every ``failover_to`` entry names another node of the inventory.

    Raises:
        ConfigError: naming the file, the service and the unknown node.
    """
    if path is None:
        return
    nodes = set(inventory_files(Path(path)))
    for node, d in desired.items():
        for spec in d.services.values():
            for t in spec.failover_to:
                if t not in nodes or t == node:
                    raise ConfigError(f"{spec.origin}: service {spec.name!r}: failover_to: expected another node "
                                      f"of the inventory ({sorted(nodes - {node})}), got {t!r}")


# --------------------------------------------------------------------------- labels


def _label(labels: dict[str, str], key: str) -> str | None:
    """Label lookup tolerant of key case (users write ``DockWarden.Enable``);
    ``key`` is given in lower case."""
    for k, v in labels.items():
        if str(k).lower() == key:
            return v.strip() if isinstance(v, str) else str(v)
    return None


def _bool_label(labels: dict[str, str], key: str) -> bool | None:
    """A boolean label, case-insensitive in key and value: True, False, or None
    when absent or not a boolean (``true/1/yes/on``, ``false/0/no/off``)."""
    v = _label(labels, key)
    if v is None:
        return None
    lv = v.lower()
    if lv in ("true", "1", "yes", "on"):
        return True
    if lv in ("false", "0", "no", "off"):
        return False
    return None


def label_enabled(labels: dict[str, str]) -> bool | None:
    """``dockwarden.enable``: True, False, or None when absent or not a boolean.

    Case-insensitive in key and value (docker-autoheal users asked for this).
    """
    return _bool_label(labels, LABEL_ENABLE)


def runs_dockwarden(c: ContainerState) -> bool:
    """True for a container that is dockwarden itself: labelled
    ``dockwarden.supervisor=true``, or its entrypoint and command run
    ``dockwarden run`` (``python -m dockwarden run``, ``sh -c "dockwarden run"``)."""
    if _bool_label(c.labels, LABEL_SUPERVISOR) is True:
        return True
    spec = c.spec or {}
    argv = [*(spec.get("entrypoint") or []), *(spec.get("command") or [])]
    words = [w.rsplit("/", 1)[-1] for arg in argv for w in str(arg).split()]
    return any(w == "dockwarden" and words[i + 1:i + 2] == ["run"] for i, w in enumerate(words))


def not_a_service(c: ContainerState) -> str | None:
    """Why a container can never be a service of its own, or None.

    Returns:
        str | None: "dockwarden itself" (:func:`runs_dockwarden`); a pool
        container (label ``dockwarden.managed=true``: the pool manages it); a
        one-off job (``HostConfig.AutoRemove``, ``docker run --rm``: removed when
        it exits); a compose one-off (label ``com.docker.compose.oneoff=True``,
        ``docker compose run``).
    """
    if runs_dockwarden(c):
        return "dockwarden itself"
    if _bool_label(c.labels, LABEL_MANAGED) is True:
        return "a container of dockwarden's pool (dockwarden.managed=true): the pool manages it"
    if c.auto_remove:
        return "a one-off job (docker run --rm): Docker removes it when it exits"
    if _bool_label(c.labels, COMPOSE_ONEOFF_LABEL) is True:
        return "a compose one-off (docker compose run)"
    return None


def has_healthcheck(c: ContainerState) -> bool:
    """True when the container has a healthcheck (its own or its image's), so
    it can turn ``unhealthy``. ``["NONE"]`` disables an image's healthcheck."""
    if c.health is not None:
        return True
    test = ((c.spec or {}).get("healthcheck") or {}).get("test") or []
    return bool(test) and test[0] != "NONE"


def _autoheal_opt_in(c: ContainerState, rules: LabelsPolicy) -> str | None:
    """How docker-autoheal's rules make ``c`` a tracked service (text for the
    spec's origin), or None. See :class:`~dockwarden.config_labels.LabelsPolicy`."""
    if rules.autoheal_compat == "off":
        return None
    key = rules.autoheal_label.lower()
    value = _bool_label(c.labels, key)
    if value is False or not_a_service(c) is not None:
        return None
    if value is True:
        return f"{rules.autoheal_label}=true"
    if rules.autoheal_compat == "all" and has_healthcheck(c):
        return "[labels] autoheal_compat = all"
    return None


def label_stop_timeout(labels: dict[str, str]) -> tuple[float | None, str | None]:
    """docker-autoheal's ``autoheal.stop.timeout`` label in seconds: (value, problem);
    (None, None) when absent, (None, text) when not a number of seconds."""
    v = _label(labels, AUTOHEAL_STOP_TIMEOUT_LABEL)
    if v is None:
        return None, None
    try:
        t = float(v)
    except ValueError:
        t = -1.0
    if not 0 <= t < 86400:
        return None, (f"label {AUTOHEAL_STOP_TIMEOUT_LABEL}: expected seconds, a number from 0 to 86399 "
                      f"(got {describe_value(v)})")
    return t, None


def spec_from_labels(c: ContainerState, node: str,
                     rules: LabelsPolicy | None = None) -> tuple[ServiceSpec | None, str | None]:
    """A ServiceSpec for a container its labels opt in.

    Opted in: ``dockwarden.enable=true``; else docker-autoheal's rules
    (``rules``, the policy's ``[labels]``; default: ``autoheal=true``). Opted
    out: ``dockwarden.enable=false``, whatever else it carries.
    ``dockwarden.desired`` and ``dockwarden.remediation`` apply to both;
    ``autoheal.stop.timeout`` (seconds) becomes ``stop_timeout_s``.

    Args:
        c (ContainerState): The container.
        node (str): The node it runs on.
        rules (LabelsPolicy | None): The ``[labels]`` table; None: its defaults.
    Returns:
        (spec, problem): spec is None when the container is not opted in;
        problem names the container, each bad label and what was expected, e.g.
        ``container web: label dockwarden.desired: expected running or stopped (got 'later')``
        (the value as :func:`dockwarden.redact.describe_value` allows); the bad
        label is then ignored and its default applies.
    """
    enabled = label_enabled(c.labels)
    if enabled is False:
        return None, None
    via = "dockwarden.enable=true" if enabled else _autoheal_opt_in(c, rules or LabelsPolicy())
    if via is None:
        return None, None
    problems = []
    desired = Intent.RUNNING
    dv = _label(c.labels, LABEL_DESIRED)
    if dv is not None:
        if dv.lower() in ("running", "stopped"):
            desired = Intent(dv.lower())
        else:
            problems.append(f"label {LABEL_DESIRED}: expected running or stopped (got {describe_value(dv)})")
    remediation = Remediation.AUTO
    rv = _label(c.labels, LABEL_REMEDIATION)
    if rv is not None:
        if rv.lower() in ("auto", "recommend", "off"):
            remediation = Remediation(rv.lower())
        else:
            problems.append(f"label {LABEL_REMEDIATION}: expected auto, recommend or off (got {describe_value(rv)})")
    stop_timeout_s, problem = label_stop_timeout(c.labels)
    if problem:
        problems.append(problem)
    spec = ServiceSpec(
        name=c.name,
        node=node,
        container=c.name,
        desired=desired,
        remediation=remediation,
        stop_timeout_s=stop_timeout_s,
        source=IntentSource.LABEL,
        origin=f"container {c.name} labels ({via})",
    )
    return spec, (f"container {c.name}: " + "; ".join(problems) if problems else None)


#: A caller-owned memo for :func:`merge_labelled`: container id -> (what
#: :func:`spec_from_labels` reads of it, with the node and the rules; its answer).
#: A resync of 1 000 containers keeps most of them unchanged (issue 9).
LabelledSpecs = dict[str, tuple[tuple, tuple["ServiceSpec | None", "str | None"]]]


def merge_labelled(
    desired: DesiredState, containers: Iterable[ContainerState], rules: LabelsPolicy | None = None,
    memo: LabelledSpecs | None = None,
) -> tuple[DesiredState, list[str]]:
    """Add label-enabled containers that the inventory does not already track.

    The inventory wins over labels for the same container: a container some
    inventory service claims (by name, or by its compose labels: the one
    resolver, ``reconcile.resolve``) is never added again, nor one whose name
    an inventory service already uses.

    Args:
        desired (DesiredState): The inventory's desired state.
        containers (Iterable[ContainerState]): The observed containers.
        rules (LabelsPolicy | None): The policy's ``[labels]`` table; None: its
            defaults (``autoheal=true`` opts in).
        memo (LabelledSpecs | None): optional, reused across calls (a daemon keeps
            one); the result is the same with or without it. An entry is used while
            what :func:`spec_from_labels` reads (name, labels, spec, ``auto_remove``,
            whether it has a health status, the node, the rules) is equal; entries of
            containers no longer passed are dropped.
    Returns:
        (desired state with labelled services added, label problems as text).
    """
    if not isinstance(containers, (tuple, list)):
        containers = tuple(containers)  # read twice when the memo is pruned
    services = dict(desired.services)
    claimed = ServiceIndex(desired)
    problems: list[str] = []
    seen = 0
    for c in containers:
        seen += 1
        if c.name in services or claimed.claims(c):
            continue
        if memo is None:
            spec, problem = spec_from_labels(c, desired.node, rules)
        else:
            # Compared item by item, identity first: the same label and spec dicts
            # (a container not inspected again) cost one pointer comparison each.
            read = (c.name, c.labels, c.spec, c.auto_remove, c.health is None, desired.node, rules)
            hit = memo.get(c.id)
            if hit is not None and hit[0] == read:
                spec, problem = hit[1]
            else:
                spec, problem = spec_from_labels(c, desired.node, rules)
                memo[c.id] = (read, (spec, problem))
        if problem:
            problems.append(problem)
        if spec is not None:
            services[spec.name] = spec
    if memo is not None and len(memo) > seen:
        present = {c.id for c in containers}
        for cid in [k for k in memo if k not in present]:
            del memo[cid]
    return DesiredState(node=desired.node, services=services), problems
