"""Is a node's engine there? The node state machine: online -> suspect -> offline -> online.

Pure: no I/O, no clock (``now`` is a parameter). The node's loop feeds it the
heartbeat results (a ``/_ping`` on its own connection every ``heartbeat_s``,
``observe.liveness.EngineWatch``) and ticks it on a timer; it answers with the
node's state and the transition to report.

* ``online``: the last heartbeat answered.
* ``suspect``: a heartbeat failed, but the engine answered less than
  ``offline_after_s`` ago. Nothing is reported yet (a blip, a slow engine); no
  action is attempted on the node meanwhile.
* ``offline``: no answer for ``offline_after_s`` (default 30 s: Portainer's edge
  agents count as offline after ``2 x interval + 20 s`` with a 5 s interval). The
  node's drift ``node_offline`` (P1) stands, its services' own drifts are folded
  into it, and nothing is attempted on it.
* back to ``online`` from ``offline``: ``node_online`` (the node's recovery runs);
  from ``suspect``: quietly.

Detection takes at most ``offline_after_s + heartbeat_s``: the threshold, plus
the time to the heartbeat (or tick) that notices it.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime


class NodeState(enum.StrEnum):
    ONLINE = "online"
    SUSPECT = "suspect"
    OFFLINE = "offline"


@dataclass(frozen=True)
class NodeHealth:
    """One node's state.

    Attributes:
        state: online, suspect or offline.
        since: when the state began (UTC).
        last_ok_at: the last time the engine answered (UTC), None if never.
        error: why the last heartbeat failed.
    """

    state: NodeState = NodeState.ONLINE
    since: datetime | None = None
    last_ok_at: datetime | None = None
    error: str | None = None


def step(h: NodeHealth, *, now: datetime, offline_after_s: float, ok: bool | None = None,
         error: str | None = None) -> tuple[NodeHealth, str | None]:
    """Advance the state machine by one heartbeat result (``ok`` True/False) or a
    timer tick (``ok`` None).

    Args:
        h: the state before.
        now: aware UTC time of the heartbeat or tick.
        offline_after_s: seconds without an answer before the node is offline.
        ok: the heartbeat answered (True), failed (False); None for a tick.
        error: why it failed.
    Returns:
        (NodeHealth, transition): transition is ``"offline"`` (report
        ``node_offline``), ``"online"`` (report ``node_online``: it was offline),
        ``"suspect"`` or ``"recovered"`` (quiet: suspect -> online), or None.
    """
    if ok is True:
        if h.state is NodeState.ONLINE:
            return dataclasses.replace(h, last_ok_at=now, error=None), None
        was = h.state
        h2 = NodeHealth(NodeState.ONLINE, since=now, last_ok_at=now)
        return h2, ("online" if was is NodeState.OFFLINE else "recovered")
    if ok is False and h.state is NodeState.ONLINE:
        h = NodeHealth(NodeState.SUSPECT, since=now, last_ok_at=h.last_ok_at, error=error)
        transition: str | None = "suspect"
    else:
        transition = None
        if ok is False:
            h = dataclasses.replace(h, error=error or h.error)
    if h.state is NodeState.SUSPECT:
        ref = h.last_ok_at or h.since or now
        if (now - ref).total_seconds() >= offline_after_s:
            return NodeHealth(NodeState.OFFLINE, since=now, last_ok_at=h.last_ok_at, error=h.error), "offline"
    return h, transition


def next_check_s(h: NodeHealth, *, now: datetime, offline_after_s: float) -> float | None:
    """Seconds until a tick could turn a suspect node offline (None otherwise):
    the loop sleeps no longer than this."""
    if h.state is not NodeState.SUSPECT:
        return None
    ref = h.last_ok_at or h.since or now
    return max(0.0, offline_after_s - (now - ref).total_seconds())
