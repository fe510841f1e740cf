"""Which containers an observation inspects: the pure planning of
:class:`dockwarden.observe.docker.ContainerObserver` (issue 9: incremental and
sparse observation at 1 000 containers).

A ``GET /containers/json`` entry is reduced to a :func:`list_key`; against the
keys of the last observation, :func:`plan_inspection` names what to inspect
again, and :func:`sparse_split` what a sparse observation (``once``) may build
from the list alone. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Collection
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
