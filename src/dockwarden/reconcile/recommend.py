"""Recommendation: what should be done about a finding, led by a diagnosis.

Pure: no I/O, no clock. A recommendation is advice with a type
(``reconcile_required``, ``reconcile_recommended``, ``reconcile_blocked``), one
action, and a reason a person can read. Whether the action may run is decided
later by :func:`dockwarden.reconcile.policy.decide`.

Diagnosis first: a container that cannot start because of its configuration
(exit 126/127, OCI runtime errors) is never retried in a loop; it is blocked
until a person fixes it and runs ``dockwarden resume NAME``.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from typing import Any

from dockwarden.model import (
    ActionKind,
    ContainerState,
    DesiredState,
    DriftKind,
    Finding,
    Recommendation,
    RecommendationType,
    ServiceHistory,
    ServiceSpec,
    WorldState,
)
from dockwarden.reconcile.drift import HOST
from dockwarden.reconcile.resolve import COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL, find_container

#: Label compose writes with the project's config files (comma-separated).
COMPOSE_FILES_LABEL = "com.docker.compose.project.config_files"

A, T = ActionKind, RecommendationType

#: Substrings of Docker's ``State.Error`` (lower-cased) that mean the container's
#: configuration is wrong; retrying cannot help. Seen in moby/runc error texts.
CONFIG_ERROR_MARKERS = (
    "executable file not found",
    "no such file or directory",
    "permission denied",
    "invalid",
    "oci runtime create failed",
    "starting container process caused",
)
#: Markers of a failed action's reason that make the failure permanent (config
#: errors, plus images that cannot be had).
PERMANENT_FAILURE_MARKERS = CONFIG_ERROR_MARKERS + (
    "exec format error", "no such image", "pull access denied", "manifest unknown",
    "repository does not exist", "permanent",
)
#: Exit codes of the shell convention (POSIX, bash): 126 found but not executable,
#: 127 not found.
_EXIT_TEXT = {
    126: "exit 126: command cannot be executed (permission denied or not executable)",
    127: "exit 127: command not found",
}
_MiB = 1024 * 1024
_MAX_OUTPUT = 200  # characters of health output quoted in a reason


def config_error(exit_code: int | None, error: str | None) -> str | None:
    """A diagnosis when a stopped container's exit code or error text shows a
    configuration error, else None.

    Args:
        exit_code (int | None): ``State.ExitCode`` (126 and 127 are config errors).
        error (str | None): ``State.Error``, matched case-insensitively against
            :data:`CONFIG_ERROR_MARKERS`.
    Returns:
        str | None: e.g. ``"exit 127: command not found (exec: \"nope\": executable
        file not found in $PATH)"``; the error text is appended when present.
    """
    text = (error or "").strip()
    if exit_code in _EXIT_TEXT:
        return _EXIT_TEXT[exit_code] + (f" ({text})" if text else "")
    low = text.lower()
    if any(m in low for m in CONFIG_ERROR_MARKERS):
        return f"configuration error: {text}"
    return None


def permanent_failure(reason: str | None) -> bool:
    """True when a failed action's recorded reason cannot be fixed by retrying."""
    low = (reason or "").lower()
    return any(m in low for m in PERMANENT_FAILURE_MARKERS) or any(
        f"exit code {c}" in low or f"exit {c}" in low for c in _EXIT_TEXT
    )


def _rec(finding: Finding, type_: RecommendationType, action: ActionKind, reason: str,
         advice: Sequence[str] = (), **details: Any) -> Recommendation:
    d = finding.drift
    return Recommendation(type_, d.subject, action, reason, finding, container=d.container,
                          advice=tuple(advice), details=details)


def _state(finding: Finding, c: ContainerState | None) -> tuple[str | None, int | None, str | None, bool]:
    """(state, exit_code, error, oom_killed) from the container, else the drift details."""
    if c is not None:
        return c.state, c.exit_code, c.error, c.oom_killed
    det = finding.drift.details
    return det.get("state"), det.get("exit_code"), det.get("error"), bool(det.get("oom_killed"))


def _blocked(finding: Finding, diagnosis: str) -> Recommendation:
    name = finding.subject
    return _rec(finding, T.BLOCKED, A.DIAGNOSTICS,
                f"{name}: {diagnosis} — the container's command, entrypoint or configuration is wrong; "
                f"fix the image or command, then `dockwarden resume {name}`",
                diagnosis=diagnosis)


def _oom_advice(c: ContainerState | None) -> list[str]:
    limit = c.memory_limit_bytes if c else None
    if limit:
        return [f"raise the memory limit (now {limit // _MiB} MiB)"]
    return ["it was OOM-killed with no memory limit: the host ran out of memory; "
            "set a limit and look for the process that grew"]


def compose_command_text(project: str, service: str, files: Sequence[str]) -> str:
    """The ``docker compose ... up -d --no-deps SERVICE`` command a person can run."""
    fs = "".join(f" -f {f}" for f in files)
    return f"docker compose -p {project}{fs} up -d --no-deps {service}"


def _missing(finding: Finding, spec: ServiceSpec | None, history: ServiceHistory | None) -> Recommendation:
    name = finding.subject
    labels = ((history.recorded_spec or {}).get("labels") or {}) if history is not None else {}
    if spec is not None and spec.compose_project:
        service = spec.compose_service or spec.name
        if spec.compose_file:
            return _rec(finding, T.REQUIRED, A.COMPOSE_UP,
                        f"{name}: container missing; bring it up with compose project {spec.compose_project!r}")
        files = [f for f in (labels.get(COMPOSE_FILES_LABEL) or "").split(",") if f]
        return _rec(finding, T.RECOMMENDED, A.DIAGNOSTICS,
                    f"{name}: container missing; dockwarden runs compose only with a compose_file from the "
                    f"inventory: run `{compose_command_text(spec.compose_project, service, files)}`, "
                    f"or add compose_file to {name}'s inventory entry",
                    ["the file named by the container's labels is not trusted: whoever creates a container "
                     "chooses its labels"])
    if spec is not None and spec.source.value == "label" and labels.get(COMPOSE_PROJECT_LABEL):
        project, service = labels[COMPOSE_PROJECT_LABEL], labels.get(COMPOSE_SERVICE_LABEL) or name
        files = [f for f in (labels.get(COMPOSE_FILES_LABEL) or "").split(",") if f]
        return _rec(finding, T.RECOMMENDED, A.DIAGNOSTICS,
                    f"{name}: compose container removed; bring it back with compose: "
                    f"`{compose_command_text(project, service, files)}`")
    if history is not None and history.recorded_spec:
        return _rec(finding, T.REQUIRED, A.RECREATE,
                    f"{name}: container missing; recreate it from its recorded spec")
    return _rec(finding, T.BLOCKED, A.DIAGNOSTICS,
                f"{name}: container missing and no recorded spec; create it once by hand "
                f"or add compose_project, then `dockwarden resume {name}`")


def _start_or_restart(finding: Finding, c: ContainerState | None, spec: ServiceSpec | None,
                      history: ServiceHistory | None, why: str) -> Recommendation:
    """Bring a down service back: missing -> compose_up/recreate, running or
    restarting -> restart, otherwise start; OOM adds memory advice."""
    if c is None and finding.drift.details.get("state") is None:
        return _missing(finding, spec, history)
    state, _, _, oom = _state(finding, c)
    action = A.RESTART if state in ("running", "restarting") else A.START
    return _rec(finding, T.REQUIRED, action, f"{finding.subject}: {why}; {action.value} it",
                _oom_advice(c) if oom else ())


def _service(finding: Finding, c: ContainerState | None, spec: ServiceSpec | None,
             history: ServiceHistory | None) -> Recommendation | None:
    d, name = finding.drift, finding.subject
    det = d.details
    state, code, error, oom = _state(finding, c)
    if d.kind is DriftKind.DEPENDENCY_UNAVAILABLE:
        deps = list(det.get("dependencies", ()))
        notes = [f"{x} is not a tracked service (check depends_on)" for x in det.get("unknown", ())]
        notes += [f"{x} was stopped by the operator" for x in det.get("stopped_by_intent", ())]
        if det.get("dependant_running"):
            return _rec(finding, T.RECOMMENDED, A.DIAGNOSTICS,
                        f"{name} runs but {', '.join(deps)} is not running and healthy; check it",
                        notes, dependencies=deps)
        return _rec(finding, T.REQUIRED, A.DELAY,
                    f"{name}: waiting for {', '.join(deps)} to be running and healthy",
                    notes, dependencies=deps)
    if d.kind is DriftKind.RUNNING_AGAINST_INTENT:
        if det.get("intent_source") == "cli":
            return _rec(finding, T.REQUIRED, A.STOP,
                        f"{name}: runs though the operator stopped it with `dockwarden stop`; stop it again",
                        ["`dockwarden start " + name + "` records that it should run"])
        return _rec(finding, T.RECOMMENDED, A.DIAGNOSTICS,
                    f"{name}: runs though its intent is stopped ({det.get('intent_source')}); "
                    f"`dockwarden stop {name}` to stop it, or `dockwarden start {name}` if it should run")
    if d.kind is DriftKind.MISSING:
        return _missing(finding, spec, history)
    if state not in ("running", "paused") and d.kind in (
        DriftKind.STOPPED, DriftKind.CRASH_LOOP, DriftKind.FAILED_DEPLOYMENT
    ):
        diagnosis = config_error(code, error)
        if diagnosis:
            return _blocked(finding, diagnosis)
    if d.kind is DriftKind.STOPPED:
        if state == "paused" or det.get("paused"):
            return _rec(finding, T.RECOMMENDED, A.DIAGNOSTICS,
                        f"{name}: container is paused; `docker unpause {d.container}` if that was not meant")
        if oom:
            why = "was OOM-killed"
        elif state == "created":
            why = "was created but never started"
        elif code == 0:
            why = "exited cleanly (exit 0) but its intent is running"
        else:
            why = f"{state or 'stopped'} with exit code {code}" + (f" ({error})" if error else "")
        return _start_or_restart(finding, c, spec, history, why)
    if d.kind is DriftKind.UNHEALTHY:
        out = (det.get("health_last_output") or "").strip()
        if len(out) > _MAX_OUTPUT:
            out = out[:_MAX_OUTPUT] + "…"
        return _rec(finding, T.REQUIRED, A.RESTART,
                    f"{name}: unhealthy, {det.get('health_failing_streak', 0)} failing checks in a row"
                    + (f"; last output: {out}" if out else "") + "; restart it")
    if d.kind is DriftKind.CRASH_LOOP:
        if det.get("source") == "docker_restart_policy":
            why = f"crash loop: Docker restarted it {det.get('restart_count', 0)} times"
        else:
            why = f"crash loop: still down after {det.get('attempts', 0)} attempts"
        return _start_or_restart(finding, c, spec, history, why)
    if d.kind is DriftKind.FAILED_DEPLOYMENT:
        last = history.last_failure if history else det.get("last_failure")
        if permanent_failure(last):
            return _rec(finding, T.BLOCKED, A.DIAGNOSTICS,
                        f"{name}: the last action failed permanently ({last}); fix it, "
                        f"then `dockwarden resume {name}`", last_failure=last)
        return _start_or_restart(finding, c, spec, history, f"the last action failed ({last})")
    return None


def _host(finding: Finding, top_consumers: Sequence[tuple[str, int]]) -> Recommendation | None:
    d = finding.drift
    det = d.details
    if d.kind is DriftKind.RESOURCE_PRESSURE and det.get("resource") in ("memory", "swap"):
        advice = [f"{n}: {b // _MiB} MiB" for n, b in top_consumers]
        if advice:
            advice.insert(0, "top memory consumers:")
        return _rec(finding, T.RECOMMENDED, A.DIAGNOSTICS,
                    f"{d.reason}; find what uses the memory", advice)
    if d.kind is DriftKind.RESOURCE_PRESSURE and det.get("resource") == "disk":
        return _rec(finding, T.RECOMMENDED, A.PRUNE, f"{d.reason}; free space",
                    ["`docker system prune -f`, re-check, then `docker system prune -a -f` "
                     "if still above the critical level (disinto recipe)"], path=det.get("path"))
    if d.kind is DriftKind.OFFLINE_NODE:
        return _rec(finding, T.RECOMMENDED, A.FAILOVER_REVIEW, d.reason or f"{d.subject} is offline")
    if d.kind is DriftKind.RESOURCE_SPIKE:
        advice = [f"top consumers: {', '.join(det.get('top_consumers', []))}"] if det.get("top_consumers") else []
        return _rec(finding, T.RECOMMENDED, A.DIAGNOSTICS, f"{d.reason}; find out what it is doing", advice)
    return _rec(finding, T.RECOMMENDED, A.DIAGNOSTICS, d.reason or f"{d.subject}: {d.kind.value}")


def recommend(finding: Finding, *, container: ContainerState | None, spec: ServiceSpec | None,
              history: ServiceHistory | None,
              top_consumers: Sequence[tuple[str, int]] = ()) -> Recommendation | None:
    """Diagnose one finding and propose one action.

    Rules (issue text; restart of unhealthy from docker-autoheal; prune recipe
    from disinto, seed 000):

    * not running with exit 126/127 or a configuration error text -> BLOCKED
      DIAGNOSTICS (no retry loop; ``dockwarden resume NAME`` after the fix).
    * ``stopped``: OOM-killed -> REQUIRED START (RESTART if running) with advice to
      raise the memory limit; paused -> RECOMMENDED DIAGNOSTICS (unpause);
      otherwise (any exit code, including 0, or created) -> REQUIRED START.
    * ``unhealthy`` -> REQUIRED RESTART, quoting the failing streak and output.
    * ``crash_loop`` -> REQUIRED RESTART when running/restarting, else START.
    * ``failed_deployment`` -> BLOCKED DIAGNOSTICS when ``history.last_failure``
      is permanent (:func:`permanent_failure`), else like ``crash_loop``.
    * ``dependency_unavailable`` -> REQUIRED DELAY when the dependant is down,
      RECOMMENDED DIAGNOSTICS when it runs.
    * ``missing`` -> REQUIRED COMPOSE_UP (compose service), REQUIRED RECREATE
      (recorded spec), else BLOCKED DIAGNOSTICS.
    * host memory/swap -> RECOMMENDED DIAGNOSTICS listing ``top_consumers``;
      disk (warn or critical) -> RECOMMENDED PRUNE; offline node -> RECOMMENDED
      FAILOVER_REVIEW; anything else -> RECOMMENDED DIAGNOSTICS.
    * Untracked containers get the same diagnosis, always as RECOMMENDED.

    Args:
        finding (Finding): One finding.
        container (ContainerState | None): The subject's container, if any.
        spec (ServiceSpec | None): The service, None for host and untracked subjects.
        history (ServiceHistory | None): The service's history, if any.
        top_consumers (Sequence[tuple[str, int]]): (container name, memory bytes),
            largest first, for memory advice.
    Returns:
        Recommendation | None: None when there is nothing to propose.
    """
    d = finding.drift
    if d.subject.startswith(f"{HOST}:") or d.kind in (
        DriftKind.RESOURCE_PRESSURE, DriftKind.RESOURCE_SPIKE,
        DriftKind.HOUSEKEEPING, DriftKind.OFFLINE_NODE, DriftKind.UNRESOLVED_INCIDENT,
    ):
        return _host(finding, top_consumers)
    rec = _service(finding, container, spec, history)
    if rec is not None and not d.tracked and rec.type is not T.RECOMMENDED:
        rec = Recommendation(T.RECOMMENDED, rec.subject, rec.action, rec.reason, rec.finding,
                             rec.container, rec.advice, {**rec.details, "untracked": True})
    return rec


def _precedence(rec: Recommendation) -> tuple[int, int, str]:
    """Lower wins: BLOCKED > dependency DELAY > failed_deployment/crash_loop >
    missing > stopped > unhealthy > anything else."""
    kind = rec.finding.drift.kind
    if rec.type is T.BLOCKED:
        rank = 0
    elif rec.action is A.DELAY:
        rank = 1
    else:
        rank = {DriftKind.FAILED_DEPLOYMENT: 2, DriftKind.CRASH_LOOP: 2, DriftKind.MISSING: 3,
                DriftKind.STOPPED: 4, DriftKind.UNHEALTHY: 5}.get(kind, 6)
    return rank, int(rec.finding.priority), kind.value


def start_order(desired: DesiredState) -> list[str]:
    """Service names with every dependency before its dependants (Kahn's
    algorithm), ties broken by name. Dependencies outside ``desired`` are
    ignored. A cycle is broken by taking the smallest remaining name, so the
    order is total and deterministic.

    Returns:
        list[str]: Each name of ``desired.services`` exactly once.
    """
    services = desired.services
    deps = {n: {d for d in s.depends_on if d in services and d != n} for n, s in services.items()}
    dependants: dict[str, list[str]] = {n: [] for n in services}
    for n, ds in deps.items():
        for d in ds:
            dependants[d].append(n)
    indeg = {n: len(ds) for n, ds in deps.items()}
    ready = [n for n, k in indeg.items() if k == 0]
    heapq.heapify(ready)
    done: set[str] = set()
    order: list[str] = []
    while len(order) < len(services):
        if ready:
            n = heapq.heappop(ready)
            if n in done:
                continue
        else:  # only cycles remain
            n = min(x for x in services if x not in done)
        done.add(n)
        order.append(n)
        for m in dependants[n]:
            indeg[m] -= 1
            if indeg[m] == 0 and m not in done:
                heapq.heappush(ready, m)
    return order


def top_consumers(world: WorldState, n: int = 5) -> list[tuple[str, int]]:
    """The ``n`` containers using the most memory: (name, bytes), largest first."""
    seen = [(c.name, c.memory_bytes) for c in world.containers if c.memory_bytes is not None]
    return sorted(seen, key=lambda x: (-x[1], x[0]))[:n]


def recommend_all(findings: Sequence[Finding], *, world: WorldState, desired: DesiredState,
                  histories: Mapping[str, ServiceHistory]) -> list[Recommendation]:
    """At most one recommendation per subject, in the order to act on them.

    Per subject the winner is chosen by :func:`_precedence`: BLOCKED diagnostics >
    dependency DELAY > failed_deployment/crash_loop > missing > stopped > unhealthy.
    Order of the result: host subjects (by priority, then subject), then tracked
    services in :func:`start_order` (dependencies first), then untracked
    containers by name.

    Args:
        findings (Sequence[Finding]): Findings of one pass (any order).
        world (WorldState): For containers and memory consumers.
        desired (DesiredState): For specs and dependency order.
        histories (Mapping[str, ServiceHistory]): By service name.
    Returns:
        list[Recommendation]: Unique by subject.
    """
    by_name = world.by_name()
    consumers = top_consumers(world)
    best: dict[str, Recommendation] = {}
    for f in findings:
        d = f.drift
        spec = desired.services.get(d.subject) if d.tracked else None
        if spec is not None:
            container = find_container(spec, world)
        elif not d.tracked:
            container = by_name.get(d.container or d.subject)
        else:
            container = None
        rec = recommend(f, container=container, spec=spec, history=histories.get(d.subject),
                        top_consumers=consumers)
        if rec is None:
            continue
        cur = best.get(rec.subject)
        if cur is None or _precedence(rec) < _precedence(cur):
            best[rec.subject] = rec
    rank = {n: i for i, n in enumerate(start_order(desired))}

    def order(r: Recommendation) -> tuple[int, int, str]:
        if r.subject.startswith(f"{HOST}:"):
            return 0, int(r.finding.priority), r.subject
        if r.finding.drift.tracked and r.subject in rank:
            return 1, rank[r.subject], r.subject
        return 2, 0, r.subject

    return sorted(best.values(), key=order)
