"""The nouns of dockwarden: plain, serialisable, immutable records.

Everything the reconcile pipeline passes between stages is defined here, so the
pure core (``reconcile/``) never sees a Docker SDK object, a database row or a
clock. Times are timezone-aware UTC ``datetime`` objects in memory and RFC 3339
strings on disk; durations are seconds; sizes are bytes.

Vocabulary follows ``shared/design.md``: desired state, world state, drift,
finding, recommendation, decision, action, outcome, event, intent.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, ClassVar, Literal


# --------------------------------------------------------------------------- enums


class Intent(enum.StrEnum):
    """The operator's recorded wish for a service."""

    RUNNING = "running"
    STOPPED = "stopped"


class IntentSource(enum.StrEnum):
    """Where an intent came from; later sources override earlier ones."""

    INVENTORY = "inventory"
    LABEL = "label"
    CLI = "cli"
    OBSERVED = "observed"  # a `docker stop`/`docker kill` that dockwarden did not cause
    FAILOVER = "failover"  # dockwarden moved the service to another node while its node was offline
    API = "api"  # POST /api/v1/services/{name}/stop|start


class Mode(enum.StrEnum):
    """Guardrail mode. ``observe`` records only, ``recommend`` also emits
    recommendations, ``auto`` also acts. Ordered from least to most active."""

    OBSERVE = "observe"
    RECOMMEND = "recommend"
    AUTO = "auto"

    @property
    def rank(self) -> int:
        return ("observe", "recommend", "auto").index(self.value)

    @staticmethod
    def least(a: "Mode", b: "Mode") -> "Mode":
        """The less active of two modes (a service can only narrow the global mode)."""
        return a if a.rank <= b.rank else b


class Remediation(enum.StrEnum):
    """Per-service remediation setting from the inventory or labels.

    ``auto`` and ``recommend`` map to the modes of the same name; ``off`` maps to
    ``observe``.
    """

    AUTO = "auto"
    RECOMMEND = "recommend"
    OFF = "off"

    def as_mode(self) -> Mode:
        return {"auto": Mode.AUTO, "recommend": Mode.RECOMMEND, "off": Mode.OBSERVE}[self.value]


class DriftKind(enum.StrEnum):
    """Kinds of difference between desired and actual state (design.md)."""

    MISSING = "missing"
    STOPPED = "stopped"
    UNHEALTHY = "unhealthy"
    CRASH_LOOP = "crash_loop"
    FAILED_DEPLOYMENT = "failed_deployment"
    OFFLINE_NODE = "node_offline"  # design.md's "offline node": its engine stopped answering (issue 11)
    DEPENDENCY_UNAVAILABLE = "dependency_unavailable"
    RESOURCE_PRESSURE = "resource_pressure"
    RESOURCE_SPIKE = "resource_spike"
    HOUSEKEEPING = "housekeeping"
    UNRESOLVED_INCIDENT = "unresolved_incident"
    RUNNING_AGAINST_INTENT = "running_against_intent"  # runs though the recorded intent is stopped


class Priority(enum.IntEnum):
    """P0 memory crisis, P1 disk pressure, P2 service down or blocked,
    P3 degraded, P4 housekeeping (disinto supervisor, seed 000). Lower is worse."""

    P0 = 0
    P1 = 1
    P2 = 2
    P3 = 3
    P4 = 4

    def __str__(self) -> str:  # "P2", as written in events and journals
        return self.name


class SummaryState(enum.StrEnum):
    """The host's one-word state (runtime supervisor, seed 001)."""

    NOMINAL = "nominal"
    DEGRADED = "degraded"
    UNSTABLE = "unstable"
    RECONCILING = "reconciling"


class ActionKind(enum.StrEnum):
    """What a recommendation proposes (design.md vocabulary)."""

    START = "start"
    STOP = "stop"
    RESTART = "restart"
    RECREATE = "recreate"
    COMPOSE_UP = "compose_up"
    PULL = "pull"
    PRUNE = "prune"
    DIAGNOSTICS = "diagnostics"
    FAILOVER_REVIEW = "failover_review"
    FAILBACK_REVIEW = "failback_review"  # a failed-over service's node is back: a person decides
    DELAY = "delay"


#: Actions that change a container; the others are advice only.
MUTATING_ACTIONS = frozenset(
    {ActionKind.START, ActionKind.STOP, ActionKind.RESTART, ActionKind.RECREATE,
     ActionKind.COMPOSE_UP, ActionKind.PULL, ActionKind.PRUNE}
)


class RecommendationType(enum.StrEnum):
    """Event type of a recommendation (runtime supervisor, seed 001).

    ``reconcile_required``: the drift needs an action now.
    ``reconcile_recommended``: an action would help but is not urgent, or is advice.
    ``reconcile_blocked``: acting is pointless or forbidden; a person must look.
    """

    REQUIRED = "reconcile_required"
    RECOMMENDED = "reconcile_recommended"
    BLOCKED = "reconcile_blocked"


class EventType(enum.StrEnum):
    """Types of records in ``events.jsonl`` and the ``events`` table."""

    DRIFT_DETECTED = "drift_detected"
    DRIFT_RESOLVED = "drift_resolved"
    RECONCILE_REQUIRED = "reconcile_required"
    RECONCILE_RECOMMENDED = "reconcile_recommended"
    RECONCILE_BLOCKED = "reconcile_blocked"
    ACTION_STARTED = "action_started"
    ACTION_SUCCEEDED = "action_succeeded"
    ACTION_FAILED = "action_failed"
    ACTION_INTERRUPTED = "action_interrupted"  # the call never returned (Ctrl-C, kill -9, deadline)
    RECOVERED = "recovered"
    SUMMARY_CHANGED = "summary_changed"
    INTENT_CHANGED = "intent_changed"
    GUARD_CHANGED = "guard_changed"  # pause / resume / circuit re-armed by the operator
    ENGINE_LOST = "engine_lost"
    ENGINE_RECONNECTED = "engine_reconnected"
    CONFIG_REJECTED = "config_rejected"
    DAEMON_STARTED = "daemon_started"
    DAEMON_STOPPED = "daemon_stopped"
    DAEMON_READY = "daemon_ready"  # engine connected, event stream subscribed, first pass done
    NODE_OFFLINE = "node_offline"  # a node's engine stopped answering its heartbeat (issue 11)
    NODE_ONLINE = "node_online"  # it answers again
    FAILED_OVER = "failed_over"  # a service was created on another node while its node was offline
    PASS_FAILED = "pass_failed"  # a pass raised; retried with backoff, the daemon goes on
    STREAM_STALE = "stream_stale"  # the event stream missed changes; resubscribed with replay
    INCIDENT_OPENED = "incident_opened"
    INCIDENT_ACKNOWLEDGED = "incident_acknowledged"
    INCIDENT_RESOLVED = "incident_resolved"
    INCIDENT_REMINDER = "incident_reminder"
    INCIDENT_REOPENED = "incident_reopened"  # flapping: the drift came back soon after it resolved
    INCIDENT_ESCALATED = "incident_escalated"  # an open incident got worse than ever announced (P3 -> P1)
    NOTIFICATION_DELIVERED = "notification_delivered"
    NOTIFICATION_FAILED = "notification_failed"
    NOTIFICATION_DROPPED = "notification_dropped"
    NOTIFY_TEST = "notify_test"
    RECOVERY_STARTED = "recovery_started"
    RECOVERY_COMPLETED = "recovery_completed"
    PRUNE_TIER = "prune_tier"  # one tier of the disk-pressure recipe ran (bytes freed in details)
    HOUSEKEEPING = "housekeeping"  # a stale lock file or worktree was removed
    POOL_SPAWNED = "pool_spawned"
    POOL_SPAWN_FAILED = "pool_spawn_failed"
    POOL_DESTROYED = "pool_destroyed"
    POOL_UNHEALTHY = "pool_unhealthy"
    POOL_HEALTHY = "pool_healthy"
    POOL_REPLACED = "pool_replaced"
    POOL_RATE_LIMITED = "pool_rate_limited"
    POOL_RATE_LIMIT_CLEARED = "pool_rate_limit_cleared"
    API_LISTENING = "api_listening"  # the HTTP API answers (details: url)
    API_FAILED = "api_failed"  # the HTTP API could not listen; supervision goes on without it


class CircuitState(enum.StrEnum):
    """Circuit breaker state of one service."""

    CLOSED = "closed"  # actions allowed (within backoff)
    OPEN = "open"  # budget exhausted or permanent failure: no actions until resume/stable


# --------------------------------------------------------------------------- time


def utcnow() -> datetime:
    """The current time, timezone-aware UTC. Only edges call this; the pure core
    receives ``now`` as an argument."""
    return datetime.now(timezone.utc)


def rfc3339(ts: datetime | None) -> str | None:
    """Format an aware datetime as RFC 3339 UTC with milliseconds, e.g.
    ``2026-11-21T10:19:33.123Z``. ``None`` stays ``None``."""
    if ts is None:
        return None
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str | None) -> datetime | None:
    """Parse an RFC 3339 / Docker timestamp into an aware UTC datetime.

    Docker writes nanoseconds (``2026-11-21T10:19:33.123456789Z``) and uses
    ``0001-01-01T00:00:00Z`` for "never"; both are handled (the latter gives None).
    Returns None for empty or unparseable input.
    """
    if not value or value.startswith("0001-01-01"):
        return None
    v = value.strip().replace("Z", "+00:00")
    # Trim fractional seconds beyond microseconds (Docker gives nanoseconds).
    if "." in v:
        head, rest = v.split(".", 1)
        frac = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            frac += rest[i]
            i += 1
        v = f"{head}.{frac[:6]}{rest[i:]}" if frac else head + rest[i:]
    try:
        ts = datetime.fromisoformat(v)
    except ValueError:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc)


# --------------------------------------------------------------------------- world state


@dataclass(frozen=True)
class DiskUsage:
    """Usage of one filesystem. ``path`` is the mount point asked about."""

    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    percent: float  # 0-100, as psutil.disk_usage reports it
    mountpoint: str | None = None  # the filesystem's mount point; two paths on one fs share it


@dataclass(frozen=True)
class HostStats:
    """Host resources at one instant (psutil)."""

    cpu_percent: float | None  # 0-100 of all cores, since the previous sample
    cpu_count: int
    load1: float
    load5: float
    load15: float
    mem_total_bytes: int
    mem_available_bytes: int
    swap_total_bytes: int
    swap_used_bytes: int
    disks: tuple[DiskUsage, ...] = ()  # "/" first, then the Docker root dir's fs if different
    boot_time: datetime | None = None

    def disk(self, path: str) -> DiskUsage | None:
        for d in self.disks:
            if d.path == path:
                return d
        return None


@dataclass(frozen=True)
class ContainerState:
    """One container as the engine reports it (from inspect, plus stats).

    ``state`` is Docker's ``State.Status``: created, running, paused, restarting,
    removing, exited or dead. ``health`` is ``None`` when the container has no
    healthcheck, else starting, healthy or unhealthy.
    """

    id: str
    name: str  # without the leading "/"
    image: str  # the image reference it was created from (Config.Image)
    state: str
    health: str | None = None
    health_failing_streak: int = 0
    health_last_output: str | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    error: str | None = None  # State.Error, e.g. 'exec: "nope": executable file not found'
    restart_count: int = 0
    pid: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    compose_project: str | None = None
    compose_service: str | None = None
    restart_policy: str | None = None  # HostConfig.RestartPolicy.Name
    auto_remove: bool = False  # HostConfig.AutoRemove: a `docker run --rm` job, removed when it exits
    stop_signal: str | None = None  # Config.StopSignal (e.g. "SIGQUIT"); None means Docker's default SIGTERM
    cpu_percent: float | None = None  # % of one core (100 = one full core), from two samples
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None  # None when unlimited
    spec: dict[str, Any] | None = None  # creation spec for `recreate` (see observe.inspect.spec_of)
    inspected: bool = True  # False: built from the list call only (observe.inspect.container_state_from_list)

    #: The fields a stats read sets (:meth:`with_usage`); every other field comes from an inspect
    #: or the list call.
    USAGE_FIELDS: ClassVar[tuple[str, ...]] = ("cpu_percent", "memory_bytes", "memory_limit_bytes")

    def with_usage(self, cpu_percent: float | None, memory_bytes: int | None,
                   memory_limit_bytes: int | None) -> "ContainerState":
        """A copy with a stats read's figures (:data:`USAGE_FIELDS`); ``self`` when
        they are the ones it has.

        The same as ``dataclasses.replace`` without running ``__init__`` again
        (0.6 us instead of 5.7 us; a resync copies every running container, issue 9).

        Args:
            cpu_percent: % of one core; memory_bytes: without inactive page cache;
            memory_limit_bytes: None when unlimited.
        """
        if (cpu_percent == self.cpu_percent and memory_bytes == self.memory_bytes
                and memory_limit_bytes == self.memory_limit_bytes):
            return self  # an idle container's figures did not move: no copy
        new = object.__new__(ContainerState)
        fields = new.__dict__
        fields.update(self.__dict__)
        fields["cpu_percent"], fields["memory_bytes"], fields["memory_limit_bytes"] = (
            cpu_percent, memory_bytes, memory_limit_bytes)
        return new

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class WorldState:
    """A snapshot of the actual state of one node, written to ``world.json``.

    ``engine_ok`` is False when the Docker engine could not be reached; then
    ``containers`` is empty and ``engine_error`` says why.
    """

    node: str
    observed_at: datetime
    host: HostStats | None
    containers: tuple[ContainerState, ...] = ()
    engine_ok: bool = True
    engine_error: str | None = None
    docker_root_dir: str | None = None

    def by_name(self) -> dict[str, ContainerState]:
        return self.index.by_name

    @cached_property
    def index(self) -> "ContainerIndex":
        """Lookups by name, id and compose service, built once per snapshot (O(n))."""
        return ContainerIndex(self.containers)


class ContainerIndex:
    """Indexes of one snapshot's containers: by name, by id and by compose
    (project, service). Built once per :class:`WorldState` (``world.index``), so
    resolving every service of a pass is linear in containers plus services,
    never their product.

    Args:
        containers: the snapshot's containers.
    """

    __slots__ = ("by_name", "by_id", "by_compose")

    def __init__(self, containers: tuple[ContainerState, ...]):
        self.by_name: dict[str, ContainerState] = {}
        self.by_id: dict[str, ContainerState] = {}
        self.by_compose: dict[tuple[str, str], list[ContainerState]] = {}
        for c in containers:
            self.by_name[c.name] = c
            self.by_id[c.id] = c
            if c.compose_project and c.compose_service:
                self.by_compose.setdefault((c.compose_project, c.compose_service), []).append(c)

    def get(self, name_or_id: str) -> ContainerState | None:
        """The container with this name (without "/") or full id, else None."""
        key = name_or_id.lstrip("/")
        return self.by_name.get(key) or self.by_id.get(key)


@dataclass(frozen=True)
class EngineEvent:
    """One container event from the Docker engine's ``GET /events`` stream.

    ``action`` is Docker's ``Action`` (``die``, ``oom``, ``kill``, ``stop``,
    ``start``, ``restart``, ``destroy``, ``create``, ``health_status: unhealthy``
    ...), ``attributes`` the actor's attributes (name, image, exitCode, labels).
    """

    action: str
    container_id: str
    name: str
    time: datetime
    attributes: dict[str, str] = field(default_factory=dict)
    received_at: datetime | None = None  # our clock when the stream delivered it

    #: A live event reaches us within milliseconds of the engine's stamp; one
    #: received later than this was replayed (``since=``), or the clocks differ.
    LIVE_SKEW_S = 2.0

    @property
    def at(self) -> datetime:
        """When it happened, on our clock where possible: the receipt time of a
        live event (so our own actions' times compare exactly), else the engine's
        stamp (a replayed event, or an engine clock more than ``LIVE_SKEW_S`` off:
        keep engines on NTP)."""
        if self.received_at is not None and abs((self.received_at - self.time).total_seconds()) <= self.LIVE_SKEW_S:
            return self.received_at
        return self.time

    @property
    def base_action(self) -> str:
        """``health_status: unhealthy`` -> ``health_status``; ``exec_start: sh`` -> ``exec_start``."""
        return self.action.split(":", 1)[0].strip()


# --------------------------------------------------------------------------- desired state


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the desired state.

    Exactly one of ``container`` or ``compose_project`` identifies it; for a
    compose service the container is found by the compose labels
    ``com.docker.compose.project`` / ``com.docker.compose.service``.
    ``source`` is ``inventory`` or ``label``; ``origin`` is the file (or the
    container) it was read from, for error messages.
    """

    name: str
    node: str = "local"
    container: str | None = None
    compose_project: str | None = None
    compose_service: str | None = None
    compose_file: str | None = None
    desired: Intent = Intent.RUNNING
    remediation: Remediation = Remediation.AUTO
    depends_on: tuple[str, ...] = ()
    max_restarts: int | None = None  # restart budget override
    restart_window_s: float | None = None
    stop_timeout_s: float | None = None  # grace period of stop/restart, seconds; None: [guardrails] stop_timeout_s
    source: IntentSource = IntentSource.INVENTORY
    origin: str = ""
    failover_to: tuple[str, ...] = ()  # nodes to run it on while its node is offline (issue 11)
    failover: str = "recommend"  # "recommend" (a person decides) or "auto"

    @property
    def container_name(self) -> str:
        return self.container or self.name


@dataclass(frozen=True)
class NodeConfig:
    """How to reach one node's engine and when it counts as offline
    (``hosts/<node>/node.yaml``; all optional).

    Defaults: Portainer's edge agents check in every 5 s and count as offline
    after ``2 x interval + 20 s`` = 30 s; failover waits 300 s.
    """

    name: str
    docker_host: str | None = None  # unix://, tcp:// (with tls), ssh://; None: DOCKER_HOST / the local socket
    tls_ca_cert: str | None = None
    tls_client_cert: str | None = None
    tls_client_key: str | None = None
    tls_verify: bool = True
    offline_after_s: float = 30.0
    heartbeat_s: float = 5.0
    failover_after_s: float = 300.0


@dataclass(frozen=True)
class DesiredState:
    """All tracked services of one node, keyed by service name."""

    node: str
    services: dict[str, ServiceSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class IntentRecord:
    """A recorded intent for a service (SQLite ``intents`` table)."""

    service: str
    intent: Intent
    source: IntentSource
    recorded_at: datetime
    reason: str = ""


# --------------------------------------------------------------------------- history (input to the pure core)


@dataclass(frozen=True)
class GuardRecord:
    """Per-service guardrail state, the fixed-shape record kept in SQLite
    (kopf ``ProgressRecord`` style, style.md §1 and §4).

    ``attempts`` counts consecutive remediation attempts since the service was
    last stable (drives backoff). ``attempt_times`` are the times of actions in
    the restart-budget window. ``next_attempt`` is the earliest time another
    action is allowed.
    """

    service: str
    attempts: int = 0
    attempt_times: tuple[datetime, ...] = ()
    last_attempt: datetime | None = None
    next_attempt: datetime | None = None
    circuit: CircuitState = CircuitState.CLOSED
    circuit_opened_at: datetime | None = None
    paused: bool = False
    message: str = ""


class ActionBy(enum.StrEnum):
    """Who asked for an action: the daemon's reconcile loop, a CLI command or the API."""

    DAEMON = "daemon"
    CLI = "cli"
    API = "api"


@dataclass(frozen=True)
class ActionRecord:
    """One action as recorded *before* it is carried out (the action protocol,
    ``dockwarden.actions``). ``uid`` is the action id written in every event
    about it (``details.action_id``).

    ``container`` is the real container name (for a compose service, the name
    compose gave it), ``container_id`` its engine id when it exists.
    ``deadline_at`` bounds the action: an action still unfinished then is closed
    as ``interrupted`` and no longer explains any engine event.
    """

    uid: str
    service: str
    container: str
    action: ActionKind
    started_at: datetime
    deadline_at: datetime
    container_id: str | None = None
    drift: DriftKind | None = None
    by: ActionBy = ActionBy.DAEMON
    pid: int | None = None


@dataclass(frozen=True)
class PendingAction:
    """An action taken and not yet judged by an observation (the closed loop).

    ``finished`` is False while the call is still in flight (its thread has not
    returned yet); such an action is not judged until it finishes or its
    ``deadline_at`` passes.
    """

    id: str
    service: str
    container: str
    action: ActionKind
    started_at: datetime
    drift: DriftKind | None = None
    finished: bool = True
    deadline_at: datetime | None = None
    container_id: str | None = None
    by: ActionBy = ActionBy.DAEMON


@dataclass(frozen=True)
class ServiceHistory:
    """What the pure core may know about a service's past."""

    guard: GuardRecord
    pending: PendingAction | None = None
    recorded_spec: dict[str, Any] | None = None  # last seen creation spec, for `recreate`
    last_failure: str | None = None  # reason of the last failed action, if any
    failed_actions_in_row: int = 0


# --------------------------------------------------------------------------- pipeline records


@dataclass(frozen=True)
class Drift:
    """A named difference between desired and actual state.

    ``subject`` is the service name, or ``host`` for host-level drift.
    ``details`` holds the evidence (exit code, health output, percentages...).
    """

    kind: DriftKind
    subject: str
    container: str | None = None
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    tracked: bool = True  # False for containers neither in the inventory nor labelled

    @property
    def key(self) -> tuple[str, str]:
        return (self.subject, self.kind.value)


@dataclass(frozen=True)
class Finding:
    """A drift with a priority."""

    drift: Drift
    priority: Priority

    @property
    def subject(self) -> str:
        return self.drift.subject


@dataclass(frozen=True)
class Recommendation:
    """What should be done about a finding, and why, in words a person can read."""

    type: RecommendationType
    subject: str
    action: ActionKind
    reason: str
    finding: Finding
    container: str | None = None
    advice: tuple[str, ...] = ()  # extra human advice, e.g. "raise the memory limit"
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The guardrails' verdict on a recommendation.

    ``execute`` is True only when the action may run now. ``requeue_after_s`` asks
    for another pass after that many seconds (backoff, delay); ``blocked`` turns
    the recommendation into ``reconcile_blocked``.
    """

    recommendation: Recommendation
    execute: bool
    reason: str
    requeue_after_s: float | None = None
    blocked: bool = False
    open_circuit: bool = False  # the decision trips the circuit breaker now

    @property
    def event_type(self) -> RecommendationType:
        if self.blocked:
            return RecommendationType.BLOCKED
        return self.recommendation.type


ActionResult = Literal["unchanged", "started", "stopped", "restarted", "recreated", "composed", "skipped"]


@dataclass(frozen=True)
class Outcome:
    """What ``execute`` returned for one action. Execution never raises: errors
    become ``ok=False`` with ``error`` set (kopf ``Outcome``, style.md §1).

    ``permanent`` marks errors that retrying cannot fix (configuration errors,
    missing image, exec format errors).
    """

    action: ActionKind
    service: str
    container: str
    ok: bool
    result: ActionResult = "skipped"
    error: str | None = None
    permanent: bool = False
    duration_s: float = 0.0


@dataclass(frozen=True)
class Event:
    """One line of ``events.jsonl`` and one row of the ``events`` table."""

    type: EventType
    ts: datetime
    node: str
    service: str | None = None
    container: str | None = None
    drift: str | None = None
    priority: str | None = None  # "P0".."P4"
    action: str | None = None
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": rfc3339(self.ts),
            "type": self.type.value,
            "node": self.node,
            "service": self.service,
            "container": self.container,
            "drift": self.drift,
            "priority": self.priority,
            "action": self.action,
            "reason": self.reason,
            "details": self.details,
        }


# --------------------------------------------------------------------------- serialisation


_JSON_LEAVES = frozenset({str, int, float, bool, type(None)})
#: Field names per dataclass type, read once (``dataclasses.fields`` is slow at 1 000 containers a pass).
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def to_jsonable(obj: Any) -> Any:
    """Turn model records (dataclasses, enums, datetimes, tuples) into JSON-ready
    values. Datetimes become RFC 3339 UTC strings."""
    t = type(obj)
    if t in _JSON_LEAVES:  # exact types: an enum member (even an IntEnum) is never a leaf here
        return obj
    if isinstance(obj, datetime):
        return rfc3339(obj)
    if isinstance(obj, enum.Enum):
        return obj.name if isinstance(obj, Priority) else obj.value
    names = _FIELD_NAMES.get(t)
    if names is None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _FIELD_NAMES[t] = tuple(f.name for f in dataclasses.fields(obj))
    if names is not None:
        return {n: to_jsonable(getattr(obj, n)) for n in names}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    return obj
