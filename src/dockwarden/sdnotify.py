"""systemd's notification protocol (sd_notify(3)): readiness, watchdog, status.

Under a unit with ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a unix
datagram socket; a leading ``@`` names one in the abstract namespace) and, with
``WatchdogSec=``, ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``). The daemon sends:

- ``READY=1`` once every node has had its first pass (:meth:`SystemdReporter.tick`);
- ``WATCHDOG=1`` every ``WATCHDOG_USEC / 2`` from the daemon's main loop, and only
  while every node loop goes round (its last round or pass younger than
  :data:`STALE_RESYNCS` resync intervals, the same bound as ``/healthz``): a
  wedged loop stops the pings and systemd restarts the service
  (``Restart=on-failure``; a watchdog timeout counts as a failure);
- ``STATUS=`` with the summary state whenever it changes;
- ``STOPPING=1`` when it begins to shut down.

No library: ``sdnotify`` on PyPI (0.3.2) has had no release since 2017 and
``systemd-python`` needs libsystemd's headers and a compiler to install; the
protocol is one ``sendto`` of ``KEY=VALUE`` lines (sd_notify(3), "Notes").
Without ``NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Mapping

log = logging.getLogger(__name__)

#: A node loop whose last round (or pass) is older than this many resync
#: intervals is wedged: the watchdog is not pinged (``/healthz``'s bound, issue 10).
STALE_RESYNCS = 3.0


def socket_address(raw: str) -> str | bytes:
    """The address to ``sendto`` for a ``NOTIFY_SOCKET`` value.

    Args:
        raw: a filesystem path (``/run/systemd/notify``) or ``@name`` for the
            abstract namespace.
    Returns:
        str | bytes: the path, or ``b"\\0name"`` for an abstract socket.
    Raises:
        ValueError: ``raw`` is neither (empty, or relative).
    Source: sd_notify(3): "If the first character of $NOTIFY_SOCKET is "@",
    the string is understood as Linux abstract namespace socket."
    """
    if raw.startswith("@") and len(raw) > 1:
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    raise ValueError(f"NOTIFY_SOCKET={raw!r}: expected an absolute path or @abstract-name")


def watchdog_interval_s(env: Mapping[str, str], pid: int) -> float | None:
    """How often to send ``WATCHDOG=1``: half of ``WATCHDOG_USEC``, seconds.

    Args:
        env: the environment (``WATCHDOG_USEC``, ``WATCHDOG_PID``).
        pid: this process's id; a ``WATCHDOG_PID`` naming another process
            means the watchdog is not ours (sd_watchdog_enabled(3)).
    Returns:
        float | None: seconds between pings, or None when no watchdog is asked for.
    """
    raw = env.get("WATCHDOG_USEC", "").strip()
    owner = env.get("WATCHDOG_PID", "").strip()
    if not raw or (owner and owner != str(pid)):
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; no watchdog pings", raw)
        return None
    return usec / 2e6 if usec > 0 else None


class SdNotify:
    """A client of systemd's notification socket.

    Args:
        address: ``NOTIFY_SOCKET``'s value, or None (every send does nothing).
    """

    def __init__(self, address: str | None):
        self.address: str | bytes | None = None
        self._sock: socket.socket | None = None
        if address:
            try:
                self.address = socket_address(address)
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            except (ValueError, OSError) as e:
                log.warning("sd_notify off: %s", e)
                self.address = None

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: Any) -> bool:
        """Send one notification of ``KEY=VALUE`` lines (``send(READY=1, STATUS="...")``).

        Returns:
            bool: True when sent; False when off or the socket refused it
            (logged; a notification is never worth failing the daemon for).
        """
        if self._sock is None or self.address is None:
            return False
        msg = "\n".join(f"{k}={str(v).replace(chr(10), ' ')}" for k, v in fields.items())
        try:
            self._sock.sendto(msg.encode(), self.address)
            return True
        except OSError as e:
            log.warning("sd_notify %s: %s", ",".join(fields), e)
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status_text(loops: Mapping[str, Any]) -> str:
    """``STATUS=``: the summary state of each node (and its services and findings)."""
    parts = []
    for name, lp in loops.items():
        doc = getattr(lp, "status_doc", None) or {}
        state = getattr(getattr(lp, "health", None), "state", None)
        summary = "offline" if getattr(state, "value", None) == "offline" else doc.get("summary", "starting")
        detail = (f"{len(doc.get('services') or [])} services, {len(doc.get('findings') or [])} findings"
                  if doc else "first pass pending")
        parts.append((name, summary, detail))
    if len(parts) == 1:
        _, summary, detail = parts[0]
        return f"{summary}: {detail}"
    return "; ".join(f"{n} {s} ({d})" for n, s, d in parts)


def _first_pass_done(lp: Any) -> bool:
    """A node is ready for systemd after its first pass (``daemon_ready``), or
    once it is offline (its offline pass records that): one dead engine of a
    fleet does not hold the start up until systemd's start timeout."""
    state = getattr(getattr(lp, "health", None), "state", None)
    return bool(getattr(lp, "ready", False)) or getattr(state, "value", None) == "offline"


def loop_age_s(lp: Any, now_m: float) -> float:
    """Seconds since a node loop last went round: its last pass, or its
    heartbeat (``heartbeat_monotonic``, set each round of ``NodeLoop._loop``)."""
    seen = max(getattr(lp, "last_pass_monotonic", 0.0) or 0.0, getattr(lp, "heartbeat_monotonic", 0.0) or 0.0)
    return now_m - seen


class SystemdReporter:
    """What the daemon tells systemd, driven by the daemon's main loop.

    Args:
        notify: the socket client.
        resync_s: the daemon's resync interval (a loop is wedged after
            :data:`STALE_RESYNCS` of them without a round).
        watchdog_s: seconds between ``WATCHDOG=1`` (None: no watchdog).
        clock: monotonic clock (tests).
    """

    def __init__(self, notify: SdNotify, *, resync_s: float, watchdog_s: float | None,
                 clock: Any = time.monotonic):
        self.notify = notify
        self.resync_s = resync_s
        self.watchdog_s = watchdog_s if notify.enabled else None
        self.clock = clock
        self.ready_sent = False
        self._status: str | None = None
        self._last_ping = float("-inf")
        self._wedged_logged = False

    @classmethod
    def from_env(cls, *, resync_s: float, env: Mapping[str, str] | None = None) -> "SystemdReporter":
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``; from
        ``os.environ`` they are also removed, so child processes (``docker-compose``)
        do not inherit them (sd_notify(3)'s ``unset_environment``)."""
        src = os.environ if env is None else env
        notify = SdNotify(src.get("NOTIFY_SOCKET") or None)
        reporter = cls(notify, resync_s=resync_s, watchdog_s=watchdog_interval_s(src, os.getpid()))
        if env is None:
            for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(k, None)
        return reporter

    def tick_s(self, default_s: float) -> float:
        """How long the daemon's loop may sleep between ticks: ``default_s``, or
        less when the watchdog wants pings more often."""
        return min(default_s, self.watchdog_s) if self.watchdog_s else default_s

    def tick(self, loops: Mapping[str, Any]) -> None:
        """One round of the daemon's main loop: READY once, STATUS on change,
        WATCHDOG when due and every node loop is fresh. Never raises."""
        if not self.notify.enabled:
            return
        try:
            self._tick(loops)
        except Exception:  # telling systemd must never stop supervision
            log.exception("sd_notify: tick failed")

    def _tick(self, loops: Mapping[str, Any]) -> None:
        now = self.clock()
        status = _status_text(loops) if loops else "starting"
        if not self.ready_sent and loops and all(_first_pass_done(lp) for lp in loops.values()):
            self.ready_sent = self.notify.send(READY=1, STATUS=status)
            self._status = status
        elif status != self._status:
            self.notify.send(STATUS=status)
            self._status = status
        if self.watchdog_s is None or now - self._last_ping < self.watchdog_s * 0.95:
            return
        limit = STALE_RESYNCS * self.resync_s
        stale = {n: loop_age_s(lp, now) for n, lp in loops.items() if loop_age_s(lp, now) > limit}
        if stale:
            if not self._wedged_logged:
                log.error("watchdog: not pinging systemd: node loop(s) wedged: %s",
                          ", ".join(f"{n} ({a:.0f} s)" for n, a in stale.items()))
                self._wedged_logged = True
            return
        self._wedged_logged = False
        if self.notify.send(WATCHDOG=1):
            self._last_ping = now

    def stopping(self) -> None:
        """``STOPPING=1`` (the daemon began to shut down)."""
        self.notify.send(STOPPING=1, STATUS="stopping")

    def close(self) -> None:
        self.notify.close()
