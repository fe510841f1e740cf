"""Notification rendering, filtering and delivery; delivery against a real local
HTTP server and a real SMTP server (aiosmtpd)."""

from datetime import datetime, timedelta, timezone

import pytest

from dockwarden.config import Policy
from dockwarden.config_notify import Channel, Notify, expand_env
from dockwarden.model import Event, EventType
from dockwarden.sinks.notify import NotifyWorker, Notifier, Outbox, deliver, redacted, render, wants
from dockwarden.worker import WorkerContext
from tests.support.servers import MailServer, WebhookServer, free_port

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def ev(type_=EventType.INCIDENT_OPENED, prio="P2", **details):
    return Event(type=type_, ts=T0, node="n1", service="web", container="web-1", drift="stopped", priority=prio,
                 reason="web: container web-1 exited with code 137", details=details)


def test_wants_filters_by_type_and_priority():
    ch = Channel(name="c", url="json://x", min_priority="P2")
    assert wants(ch, ev(prio="P1")) and wants(ch, ev(prio="P2"))
    assert not wants(ch, ev(prio="P3"))
    assert not wants(ch, ev(EventType.DRIFT_DETECTED))  # not in the default set
    only = Channel(name="c", url="json://x", events=["drift_detected"], min_priority="P4")
    assert wants(only, ev(EventType.DRIFT_DETECTED)) and not wants(only, ev())


def test_escalation_is_routed_like_an_opening_at_its_new_priority():
    esc = ev(EventType.INCIDENT_ESCALATED, prio="P1", incident_id=3, previous_priority="P3")
    for ch in (Channel(name="c", url="json://x", min_priority="P2"),
               Channel(name="c", url="json://x", min_priority="P2", events=["incident_opened"])):
        assert wants(ch, esc) and not wants(ch, ev(prio="P3"))  # the P3 opening was not sent
    assert not wants(Channel(name="c", url="json://x", events=["incident_resolved"]), esc)
    assert not wants(Channel(name="c", url="json://x", min_priority="P0"), esc)
    title, body = render(esc)
    assert title.startswith("[dockwarden] P1 incident escalated: web")
    assert "Tried: nothing yet" in body and "dockwarden ack 3" in body


def test_render_says_what_where_since_tried_todo():
    title, body = render(ev(incident_id=7, since="2026-11-21T11:59:00Z", tried=["start at 12:00:01Z: failed"],
                            todo="fix the command, then dockwarden resume web"))
    assert "P2" in title and "incident opened" in title and "web" in title
    for needle in ("What: web: container web-1 exited", "Where: node n1 / service web / container web-1",
                   "Since: 2026-11-21T11:59:00Z", "Tried: start at 12:00:01Z: failed",
                   "To do: fix the command", "dockwarden ack 7"):
        assert needle in body


def test_env_secrets_expand_only_when_sending_and_are_redacted():
    assert expand_env("mailtos://u:${PW}@h", {"PW": "s3cret"}) == "mailtos://u:s3cret@h"
    with pytest.raises(KeyError, match="NOPE"):
        expand_env("json://${NOPE}/x", {})
    assert "s3cret" not in redacted("mailtos://user:s3cret@smtp.example.com?to=a@b.c")
    ok, err = deliver(Channel(name="c", url="json://127.0.0.1:1/${MISSING_VAR}"), "t", "b", timeout_s=1, env={})
    assert not ok and "MISSING_VAR" in err


def test_deliver_to_real_webhook_and_smtp():
    with WebhookServer() as hook, MailServer() as mail:
        ok, err = deliver(Channel(name="h", url=f"json://127.0.0.1:{hook.port}/hook"), "T", "B", timeout_s=5)
        assert ok, err
        assert hook.received[0]["title"] == "T" and hook.received[0]["message"] == "B"
        ok, err = deliver(Channel(name="m", url=mail.url()), "Subject line", "Body text", timeout_s=5)
        assert ok, err
        assert mail.subjects() == ["Subject line"]
        texts = [p.get_payload(decode=True).decode() for p in mail.messages[0].walk()
                 if p.get_content_type() == "text/plain"]
        assert any("Body text" in t for t in texts)


def _ctx(tmp_path, pol, sink):
    from dockwarden.config import Settings

    return WorkerContext(settings=Settings.resolve(state_dir=tmp_path), node="n1", policy=lambda: pol,
                         mode=lambda: None, world=lambda: None, emit=sink.append, wake=lambda: None)


def test_queue_retries_with_backoff_and_survives_reopen(tmp_path):
    port = free_port()  # nothing listens here yet
    pol = Policy(notify=Notify(channel=[Channel(name="hook", url=f"json://127.0.0.1:{port}/x")],
                               retry_initial_delay_s=0.05, retry_max_delay_s=0.2, timeout_s=2))
    outbox = Outbox(tmp_path / "db")
    Notifier(outbox, lambda: pol).on_event(ev())
    Notifier(outbox, lambda: pol).on_event(ev(EventType.DRIFT_DETECTED))  # not wanted
    sink: list = []
    w = NotifyWorker(outbox)
    w.ctx = _ctx(tmp_path, pol, sink)
    w.tick()
    (msg,) = outbox.messages()
    assert msg["state"] == "pending" and msg["attempts"] == 1 and msg["last_error"]
    assert [e.type for e in sink] == [EventType.NOTIFICATION_FAILED]
    # a new Outbox on the same file (a daemon restart) still has the message
    outbox2 = Outbox(tmp_path / "db")
    with WebhookServer(port) as hook:
        import time

        time.sleep(0.1)
        w2 = NotifyWorker(outbox2)
        w2.ctx = _ctx(tmp_path, pol, sink)
        w2.tick()
        assert len(hook.received) == 1 and "incident opened" in hook.received[0]["title"]
    assert outbox2.messages()[0]["state"] == "delivered"


def test_rate_limit_holds_messages_back(tmp_path):
    with WebhookServer() as hook:
        pol = Policy(notify=Notify(channel=[Channel(name="h", url=f"json://127.0.0.1:{hook.port}/x", max_per_hour=2)]))
        outbox = Outbox(tmp_path / "db")
        n = Notifier(outbox, lambda: pol)
        for _ in range(4):
            n.on_event(ev())
        w = NotifyWorker(outbox)
        w.ctx = _ctx(tmp_path, pol, [])
        w.tick()
        assert len(hook.received) == 2
        states = sorted(m["state"] for m in outbox.messages())
        assert states == ["delivered", "delivered", "pending", "pending"]


def test_give_up_after_limit(tmp_path):
    pol = Policy(notify=Notify(channel=[Channel(name="h", url="json://127.0.0.1:1/x")], give_up_after_s=1))
    outbox = Outbox(tmp_path / "db")
    from dockwarden.model import utcnow

    outbox.enqueue("h", ev(), "t", "b", utcnow() - timedelta(hours=1))
    sink: list = []
    w = NotifyWorker(outbox)
    w.ctx = _ctx(tmp_path, pol, sink)
    w.tick()
    assert outbox.messages()[0]["state"] == "dropped"
    assert [e.type for e in sink] == [EventType.NOTIFICATION_DROPPED]
