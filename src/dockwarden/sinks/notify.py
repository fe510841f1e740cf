"""Notifications: events -> messages -> a delivery queue in SQLite -> apprise.

- :class:`Notifier` subscribes to the event log. An event whose type a channel
  wants (default: incident opened/escalated/resolved/reminder,
  ``reconcile_blocked``, ``recovery_completed``) and whose priority is at least
  the channel's ``min_priority`` becomes one queued message per channel. An
  ``incident_escalated`` event is routed like an ``incident_opened`` one (a
  channel that lists ``incident_opened`` gets it too) at its new priority, so a
  P3 -> P1 escalation reaches a ``min_priority = "P2"`` channel that never saw
  the P3 opening.
- :class:`NotifyWorker` delivers queued messages on its own thread with apprise.
  A failed delivery is retried with backoff (``retry_initial_delay_s`` doubling
  to ``retry_max_delay_s``) and dropped after ``give_up_after_s``; the queue is a
  table, so it survives a daemon restart; a per-channel ``max_per_hour`` holds
  the rest back. Nothing here can block or crash the daemon (style.md §9).
- Channel URLs may name ``${ENV}`` secrets; only apprise's redacted form of a
  URL (``url(privacy=True)``) is ever logged or recorded, and apprise's own log
  is scrubbed (:mod:`dockwarden.sinks.apprise_log`).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dockwarden.config import Policy
from dockwarden.config_notify import Channel, env_names, expand_env
from dockwarden.model import Event, EventType, parse_time, rfc3339, utcnow
from dockwarden.db import FeatureDB
from dockwarden.sinks.apprise_log import install as scrub_apprise_log, scrubbing
from dockwarden.worker import PeriodicWorker

log = logging.getLogger(__name__)
scrub_apprise_log()  # apprise's own log lines pass through dockwarden.sinks.apprise_log

#: Event types sent when a channel names none.
DEFAULT_EVENTS = frozenset({
    EventType.INCIDENT_OPENED.value, EventType.INCIDENT_ESCALATED.value, EventType.INCIDENT_RESOLVED.value,
    EventType.INCIDENT_REMINDER.value, EventType.RECONCILE_BLOCKED.value, EventType.RECOVERY_COMPLETED.value,
    EventType.NOTIFY_TEST.value,
})

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            channel TEXT NOT NULL,
            event_type TEXT NOT NULL,
            priority TEXT,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending','delivered','dropped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            delivered_at TEXT,
            last_error TEXT
        )""",
        "CREATE INDEX outbox_due ON outbox (state, next_attempt_at)",
        "CREATE INDEX outbox_sent ON outbox (channel, delivered_at)",
    ),
}


def _pval(p: str | None) -> int:
    return int(p[1]) if p and len(p) == 2 and p[0].upper() == "P" and p[1] in "01234" else 2


def wants(channel: Channel, event: Event) -> bool:
    """Does this channel want this event? (type filter, then priority; an event
    without a priority counts as P2; ``incident_escalated`` passes the type
    filter of a channel that wants ``incident_opened``: an escalation is the
    opening of a worse problem)."""
    types = set(channel.events) or DEFAULT_EVENTS
    if event.type.value not in types and not (event.type is EventType.INCIDENT_ESCALATED
                                              and EventType.INCIDENT_OPENED.value in types):
        return False
    return _pval(event.priority) <= _pval(channel.min_priority)


def render(event: Event) -> tuple[str, str]:
    """Title and body of a message: what, where, since when, what was tried, what to do."""
    d = event.details or {}
    where = " / ".join(x for x in (f"node {event.node}", event.service and f"service {event.service}",
                                   event.container and f"container {event.container}") if x)
    head = {
        "incident_opened": "incident opened", "incident_escalated": "incident escalated",
        "incident_resolved": "resolved", "incident_reminder": "still open",
        "reconcile_blocked": "needs a person", "recovery_completed": "recovery after restart",
        "notify_test": "test message",
    }.get(event.type.value, event.type.value)
    prio = f"{event.priority} " if event.priority else ""
    title = f"[dockwarden] {prio}{head}: {event.service or event.node}" + (f" ({event.drift})" if event.drift else "")
    lines = [f"What: {event.reason}", f"Where: {where}"]
    if d.get("since"):
        lines.append(f"Since: {d['since']}")
    if d.get("duration_s") is not None:
        lines.append(f"Lasted: {d['duration_s']:.0f} s")
    tried = d.get("tried")
    if tried:
        lines.append("Tried: " + "; ".join(tried))
    elif event.type.value in ("incident_opened", "incident_escalated", "incident_reminder", "reconcile_blocked"):
        lines.append("Tried: nothing yet")
    for key, label in (("brought_back", "Brought back"), ("left_stopped", "Left stopped on purpose"),
                       ("failed", "Failed to come back")):
        if key in d:
            items = d[key]
            text = ", ".join(i if isinstance(i, str) else f"{i.get('service')} ({i.get('seconds', '?')} s)"
                             for i in items) or "none"
            lines.append(f"{label}: {text}")
    if d.get("top_consumers"):
        lines.append("Top consumers: " + ", ".join(d["top_consumers"]))
    todo = d.get("todo")
    if todo:
        lines.append(f"To do: {todo}")
    if d.get("incident_id") and event.type.value != "incident_resolved":
        lines.append(f"Acknowledge: dockwarden ack {d['incident_id']}")
    lines.append(f"At: {rfc3339(event.ts)}")
    return title, "\n".join(lines)


def redacted(url: str) -> str:
    """apprise's privacy form of a channel URL (secrets masked), for logs."""
    import apprise  # here, not at the top: 0.17 s that `once` and the daemon's start need not pay

    try:
        plugin = apprise.Apprise.instantiate(url)
        if plugin:
            return plugin.url(privacy=True)
    except Exception as e:  # an unparseable URL must not leak through an error message either
        log.debug("cannot redact a channel URL: %s", type(e).__name__)
    return url.split("://", 1)[0] + "://***"


def deliver(channel: Channel, title: str, body: str, *, timeout_s: float, env: dict[str, str] | None = None
            ) -> tuple[bool, str | None]:
    """Send one message to one channel with apprise. Never raises.

    Returns:
        (delivered, error text without secrets).
    """
    import apprise  # here, not at the top: 0.17 s that `once` and the daemon's start need not pay

    environ = dict(os.environ) if env is None else env
    try:
        url = expand_env(channel.url, environ)
    except KeyError as e:
        return False, str(e.args[0])
    sep = "&" if "?" in url else "?"
    if "cto=" not in url:
        url += f"{sep}cto={timeout_s:g}&rto={timeout_s:g}"
    # apprise logs the URL it sends to: mask what ${NAME} expanded to, and the URL itself.
    with scrubbing([url, *(environ[n] for n in env_names(channel.url))]):
        ap = apprise.Apprise()
        if not ap.add(url):
            return False, f"channel {channel.name}: not a URL apprise understands ({redacted(channel.url)})"
        try:
            ok = ap.notify(title=title, body=body)
        except Exception as e:  # apprise plugins should not raise; be sure
            return False, f"channel {channel.name}: {type(e).__name__}"
        return bool(ok), None if ok else f"channel {channel.name}: delivery to {redacted(channel.url)} failed"


def send_test_messages(channels: list[Channel], *, node: str, timeout_s: float) -> list[dict[str, Any]]:
    """Send a test message (a P0 ``notify_test`` event, rendered like any other)
    to each channel now, bypassing the queue: ``dockwarden notify test`` and
    ``dockwarden doctor --send``.

    Args:
        channels: the channels to try.
        node: the node named in the message.
        timeout_s: connect/read timeout per channel, seconds.
    Returns:
        list[dict]: per channel ``{"channel", "url" (redacted), "delivered", "error"}``.
    """
    ev = Event(type=EventType.NOTIFY_TEST, ts=utcnow(), node=node,
               reason="dockwarden test message: if you read this, the channel works", priority="P0")
    title, body = render(ev)
    results = []
    for c in channels:
        ok, error = deliver(c, title, body, timeout_s=timeout_s)
        results.append({"channel": c.name, "url": redacted(c.url), "delivered": ok, "error": error})
    return results


class Outbox(FeatureDB):
    """The delivery queue (table ``outbox`` in ``dockwarden.db``, component ``notify``)."""

    COMPONENT = "notify"
    MIGRATIONS = _MIGRATIONS

    def enqueue(self, channel: str, event: Event, title: str, body: str, now: datetime) -> int | None:
        """Queue one message; None when the write is held in memory (disk full:
        it is queued once the state dir can be written again)."""
        return self._w(
            "INSERT INTO outbox (channel, event_type, priority, title, body, created_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (channel, event.type.value, event.priority, title, body, rfc3339(now), rfc3339(now)),
        )

    def due(self, now: datetime, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT ?",
                (rfc3339(now), int(limit)),
            ).fetchall()
        return [dict(r) for r in rows]

    def pending_summary(self) -> tuple[int, datetime | None]:
        """(messages waiting for delivery, when the oldest of them was queued), for
        the ``dockwarden_notifications_*`` metrics. Uses the ``outbox_due`` index."""
        with self._lock:
            n, oldest = self._db.execute(
                "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE state = 'pending'").fetchone()
        return int(n or 0), parse_time(oldest) if oldest else None

    def sent_within(self, channel: str, since: datetime) -> int:
        with self._lock:
            return self._db.execute(
                "SELECT COUNT(*) FROM outbox WHERE channel = ? AND state = 'delivered' AND delivered_at >= ?",
                (channel, rfc3339(since)),
            ).fetchone()[0]

    def mark(self, msg_id: int, *, state: str, now: datetime, attempts: int, next_attempt: datetime | None = None,
             error: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET state = ?, attempts = ?, next_attempt_at = COALESCE(?, next_attempt_at), "
                "delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END, last_error = ? WHERE id = ?",
                (state, attempts, rfc3339(next_attempt), state, rfc3339(now), error, msg_id),
            )

    def messages(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._db.execute("SELECT * FROM outbox ORDER BY id DESC LIMIT ?", (int(limit),))]


class Notifier:
    """Turns events into queued messages (subscribe :meth:`on_event` to the event log).

    Args:
        outbox: the delivery queue.
        policy: returns the policy in force (channels may change on reload).
        wake: called after enqueueing, to let the delivery worker run at once.
    """

    def __init__(self, outbox: Outbox, policy, wake=None):
        self.outbox = outbox
        self.policy = policy
        self.wake = wake

    def on_event(self, event: Event) -> None:
        pol: Policy = self.policy()
        queued = False
        for ch in pol.notify.channel:
            if wants(ch, event):
                title, body = render(event)
                self.outbox.enqueue(ch.name, event, title, body, utcnow())
                queued = True
        if queued and self.wake is not None:
            self.wake()


@dataclass
class _Attempt:
    id: int
    attempts: int


class NotifyWorker(PeriodicWorker):
    """Delivers the outbox on its own thread: retries with backoff, rate limits,
    gives up after ``give_up_after_s``. Records ``notification_delivered`` /
    ``notification_failed`` (first failure) / ``notification_dropped`` events."""

    name = "notify"

    def __init__(self, outbox: Outbox, interval_s: float = 1.0):
        super().__init__()
        self.outbox = outbox
        self._interval = interval_s
        self._kick = threading.Event()

    def interval_s(self) -> float:
        return self._interval

    def kick(self) -> None:
        self._kick.set()

    def tick(self) -> None:
        assert self.ctx is not None
        pol = self.ctx.policy()
        cfg = pol.notify
        channels = {c.name: c for c in pol.notify.channel}
        now = utcnow()
        for msg in self.outbox.due(now):
            ch = channels.get(msg["channel"])
            n = msg["attempts"] + 1
            created = datetime.fromisoformat(msg["created_at"].replace("Z", "+00:00"))
            if ch is None or now - created > timedelta(seconds=cfg.give_up_after_s):
                why = "channel removed from the policy" if ch is None else f"undelivered after {cfg.give_up_after_s:g} s"
                self.outbox.mark(msg["id"], state="dropped", now=now, attempts=msg["attempts"], error=why)
                self._event(EventType.NOTIFICATION_DROPPED, msg, f"message {msg['id']} to {msg['channel']} dropped: {why}")
                continue
            if self.outbox.sent_within(ch.name, now - timedelta(hours=1)) >= ch.max_per_hour:
                self.outbox.mark(msg["id"], state="pending", now=now, attempts=msg["attempts"],
                                 next_attempt=now + timedelta(seconds=60), error="rate limited (max_per_hour)")
                continue
            ok, error = deliver(ch, msg["title"], msg["body"], timeout_s=cfg.timeout_s)
            if ok:
                self.outbox.mark(msg["id"], state="delivered", now=now, attempts=n)
                self._event(EventType.NOTIFICATION_DELIVERED, msg,
                            f"{msg['event_type']} delivered to {ch.name}" + (f" after {n} attempts" if n > 1 else ""))
            else:
                delay = min(cfg.retry_initial_delay_s * 2 ** (n - 1), cfg.retry_max_delay_s)
                self.outbox.mark(msg["id"], state="pending", now=now, attempts=n,
                                 next_attempt=now + timedelta(seconds=delay), error=error)
                log.warning("notify %s: attempt %d failed (%s); retry in %.0f s", ch.name, n, error, delay)
                if n == 1:
                    self._event(EventType.NOTIFICATION_FAILED, msg,
                                f"{msg['event_type']} to {ch.name} failed ({error}); retrying with backoff")

    def _event(self, type_: EventType, msg: dict[str, Any], reason: str) -> None:
        if self.ctx is None:
            return
        self.ctx.emit(Event(type=type_, ts=utcnow(), node=self.ctx.node, reason=reason,
                            details={"message_id": msg["id"], "channel": msg["channel"],
                                     "event_type": msg["event_type"], "attempts": msg["attempts"]}))

    def _loop(self) -> None:  # wake early when kicked (a message was queued)
        while not self._stop.is_set():
            try:
                self.tick()
                self.ticks += 1
            except Exception:
                self.failures += 1
                log.exception("notify: tick failed (failure %d)", self.failures)
            self._kick.wait(self.interval_s())
            self._kick.clear()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
