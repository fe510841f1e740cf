"""Which containers an observation inspects: the pure planning of
:class:`dockwarden.observe.docker.ContainerObserver` (issue 9: incremental and
sparse observation at 1 000 containers).

A ``GET /containers/json`` entry is reduced to a :func:`list_key`; against the
keys of the last observation, :func:`plan_inspection` names what to inspect
again, and :func:`sparse_split` what a sparse observation (``once``) may build
from the list alone. Between list calls, :func:`stream_complete` says whether
the event stream delivered every event the engine logged, so that a resync may
start from the world the events kept current (a *cached* resync) instead of
listing again. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Container, Iterable
from typing import Any

from dockwarden import model

_PARENS = re.compile(r"\(([^)]*)\)")


def list_key(entry: dict[str, Any]) -> tuple:
    """What a ``GET /containers/json`` entry says that an inspect would show
    changed: the state, the name, and the parenthesised parts of the status text
    (health: ``(healthy)``, ``(health: starting)``; exit code: ``Exited (137)``;
    ``(Paused)``), without the durations (``Up 2 hours``) that change by themselves.

    PURE. Args:
        entry: one list entry (``State``, ``Status``, ``Names``).
    Returns:
        tuple: comparable across list calls.
    """
    names = entry.get("Names") or [""]
    return (entry.get("State"), names[0], tuple(_PARENS.findall(str(entry.get("Status") or ""))))


def plan_inspection(keys: dict[str, tuple], known: dict[str, tuple[tuple | None, model.ContainerState]], *,
                    incremental: bool, named: Collection[str] = ()) -> tuple[dict[str, model.ContainerState],
                                                                             list[str]]:
    """Which containers an observation inspects again, and which keep their last state.

    PURE. A container is inspected again when the observation is not
    incremental, when it was not seen before, when its list key changed, or when
    an engine event named it (by id or by name). The last rule matters: the list
    (``GET /containers/json``) is served from a view the engine updates apart
    from the container itself, and was once seen to show a container still
    running after its ``die`` event had been read; a pass that trusted the list
    then left the crash unseen until the next full inspect (bench/mttr.py
    --chain, a 30 s stall). An inspect reads the container under its lock.

    Args:
        keys: container id -> :func:`list_key` of this list call.
        known: container id -> (list key at the last observation or None, state).
        incremental: reuse states whose list key is unchanged.
        named: ids (full) or names (with or without "/") that events named.
    Returns:
        tuple: (id -> reused state, ids to inspect, in list order).
    """
    wanted = {n.lstrip("/") for n in named}
    reuse: dict[str, model.ContainerState] = {}
    todo: list[str] = []
    for cid, key in keys.items():
        prev = known.get(cid) if incremental else None
        if prev is not None and prev[0] == key and cid not in wanted and prev[1].name not in wanted:
            reuse[cid] = prev[1]
        else:
            todo.append(cid)
    return reuse, todo


def sparse_split(keys: dict[str, tuple], todo: list[str]) -> tuple[list[str], list[str]]:
    """Which of the containers to inspect a sparse observation builds from the list alone.

    PURE. A running container whose status text shows no health trouble (no
    ``(unhealthy)``, no ``(health: starting)``) needs no inspect for any drift
    rule: its list entry says it runs and is healthy or has no healthcheck
    (``observe.inspect.container_state_from_list``). Everything else (exited,
    restarting, paused, created, dead, unhealthy, starting) is inspected: its
    exit code, OOM flag, restart count and health output matter.

    Args:
        keys: container id -> :func:`list_key`.
        todo: ids :func:`plan_inspection` would inspect.
    Returns:
        tuple: (ids built from the list, ids still to inspect), each in ``todo`` order.
    """
    light, rest = [], []
    for cid in todo:
        state, _, parens = keys[cid]
        if state == "running" and "unhealthy" not in parens and "health: starting" not in parens:
            light.append(cid)
        else:
            rest.append(cid)
    return light, rest


#: Events the engine keeps in memory for replay (moby ``daemon/events/events.go``:
#: ``eventsLimit = 256``; the same on Engine 20.10 to 27).
ENGINE_EVENT_BUFFER = 256
#: A replayed window holding this many events (of any type) cannot vouch for the
#: stream: the buffer may have dropped the window's first events (half the buffer,
#: for the events of the settle interval after the window, which share it).
VERIFIABLE_EVENTS = ENGINE_EVENT_BUFFER // 2


def event_key(ev: model.EngineEvent) -> tuple:
    """What identifies one engine event across the live stream and a replay: its
    time (microseconds), container id and action.

    PURE. Returns:
        tuple: hashable.
    """
    return (ev.time, ev.container_id, ev.action)


def stream_complete(total: int, replayed: Iterable[model.EngineEvent], seen: Container[tuple]) -> bool:
    """Whether the event stream delivered every container event the engine
    replays for a window: then the world those events kept current is what a
    list call would show, and a resync may skip the list (issue 9).

    PURE. The stream drops ``exec_*`` events (healthcheck execs), so they are
    not asked for. Moby drops events for a subscriber that falls 1 024 events
    behind (its pubsub buffer), and a half-open connection delivers none: both
    show here as a replayed event never seen.

    Args:
        total: events of any type the engine returned for the window.
        replayed: the container events among them.
        seen: :func:`event_key` of every event the stream delivered (recent ones).
    Returns:
        bool: False when the window holds :data:`VERIFIABLE_EVENTS` or more
        events (the engine's buffer may have lost some of them) or any container
        event (other than ``exec_*``) was never seen.
    """
    if total >= VERIFIABLE_EVENTS:
        return False
    return all(event_key(ev) in seen for ev in replayed if not ev.base_action.startswith("exec_"))
