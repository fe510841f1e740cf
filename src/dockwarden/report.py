"""The status document: what `dockwarden status --json` prints, what the daemon
writes to ``<state-dir>/status.json`` after its passes, and what the API serves.

One function builds it from an :class:`~dockwarden.pipeline.Evaluation`
(:func:`status_document`), so the CLI, the daemon and the API cannot disagree
about what a service's state is. With a daemon running on the state dir,
``status``/``drift`` read its latest document (:func:`read_fresh`) instead of
observing the engine again (issue 9: answer at once; the daemon already knows).
"""

from __future__ import annotations

from typing import Any

from dockwarden.model import CircuitState, Mode, rfc3339, to_jsonable, utcnow
from dockwarden.pipeline import Evaluation
from dockwarden.reconcile.drift import effective_intent
from dockwarden.reconcile.policy import service_mode
from dockwarden.reconcile.resolve import ServiceIndex, find_container

# Reading and writing the daemon's document is in status_file (light, for the CLI).
from dockwarden.status_file import STATUS_FILE, read_fresh, write_status  # noqa: E402,F401


def status_document(ev: Evaluation, *, daemon_running: bool, mode: Mode | None = None, policy: Any = None,
                    written_by: str = "cli", stale_after_s: float | None = None) -> dict[str, Any]:
    """The status of one node as a JSON-ready dict: what ``status --json`` prints,
    the daemon writes to ``status.json`` and ``GET /api/v1/status`` serves.

    Args:
        ev: one evaluation (a pass's, or a read-only one).
        daemon_running: whether a daemon holds the state dir's lock.
        mode: the global mode in force (``--mode`` or the policy's); None: auto.
        policy: the policy in force (a service's mode narrows the global one).
        written_by: ``cli`` (observed by this command) or ``daemon`` (its last pass).
        stale_after_s: for the daemon's document, how old it may get before
            readers observe for themselves (three resync intervals).
    Returns:
        dict: ``node``, ``observed_at``, ``written_at``, ``source``,
        ``stale_after_s``, ``summary``, ``exit_code``, ``engine_ok``,
        ``engine_error``, ``daemon_running``, ``mode``, ``host``, ``services``
        (each: ``service`` and ``name``, ``node``, ``container``, ``source``,
        ``state``, ``health``, ``exit_code``, ``restart_count``, ``cpu_percent``
        (% of one core), ``memory_bytes``, ``intent``, ``intent_source``,
        ``remediation``, ``mode``, ``depends_on``, ``guard``, ``circuit_open``,
        ``up``), ``untracked``, ``findings``, ``recommendations``,
        ``label_problems``. Sizes in bytes, times RFC 3339.
    """
    mode = mode or Mode.AUTO
    services = []
    opening = {d.recommendation.subject for d in ev.decisions if d.open_circuit}
    node = ev.desired.node
    for name, spec in sorted(ev.desired.services.items()):
        c = find_container(spec, ev.world)
        h = ev.histories.get(name)
        rec_i = ev.intents.get(name)
        guard = h.guard if h else None
        state = c.state if c else "missing"
        services.append({
            "service": name, "name": name, "node": node, "container": c.name if c else spec.container_name,
            "source": spec.source.value, "state": state, "health": c.health if c else None,
            "exit_code": c.exit_code if c else None,
            "restart_count": c.restart_count if c and c.inspected else None,  # None: listed, not inspected
            "cpu_percent": c.cpu_percent if c else None, "memory_bytes": c.memory_bytes if c else None,
            "intent": effective_intent(spec, rec_i).value,
            "intent_source": rec_i.source.value if rec_i else spec.source.value,
            "remediation": spec.remediation.value,
            "mode": (service_mode(mode, spec, policy) if policy is not None else mode).value,
            "depends_on": list(spec.depends_on), "guard": to_jsonable(guard) if guard is not None else None,
            "circuit_open": bool(guard is not None and guard.circuit == CircuitState.OPEN) or name in opening,
            "up": state == "running" and (c is not None and c.health != "unhealthy"),
        })
    claimed = ServiceIndex(ev.desired)
    untracked = [{"container": c.name, "state": c.state, "health": c.health, "exit_code": c.exit_code}
                 for c in ev.world.containers
                 if not claimed.claims(c) and c.labels.get("dockwarden.managed", "").lower() != "true"]
    return {
        "node": node,
        "observed_at": to_jsonable(ev.world.observed_at),
        "written_at": rfc3339(utcnow()),
        "source": written_by,
        "stale_after_s": stale_after_s,
        "summary": ev.summary.value if ev.world.engine_ok else "unknown",
        "exit_code": ev.exit_code,
        "engine_ok": ev.world.engine_ok,
        "engine_error": ev.world.engine_error,
        "daemon_running": daemon_running,
        "mode": mode.value,
        "host": to_jsonable(ev.world.host),
        "services": services,
        "untracked": untracked,
        "findings": [
            {"priority": str(f.priority), "subject": f.subject, "drift": f.drift.kind.value,
             "container": f.drift.container, "tracked": f.drift.tracked, "reason": f.drift.reason,
             "details": to_jsonable(f.drift.details)}
            for f in ev.findings
        ],
        "recommendations": [
            {"subject": d.recommendation.subject, "type": d.event_type.value, "action": d.recommendation.action.value,
             "reason": d.recommendation.reason, "advice": list(d.recommendation.advice), "execute": d.execute,
             "decision": d.reason}
            for d in ev.decisions
        ],
        "label_problems": ev.label_problems,
    }
