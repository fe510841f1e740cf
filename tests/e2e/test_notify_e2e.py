"""Issue 4 checks: incidents and notifications against real SMTP and HTTP
servers on 127.0.0.1, with a real daemon and a real engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from dockwarden.model import utcnow
from conftest import FAST_POLICY, REPO, wait_for, write_inventory, write_policy
from tests.support.servers import MailServer, WebhookServer, free_port

# Host-wide spikes off: a busy CI machine must not add incidents of its own.
QUIET_HOST = """
[spikes]
host_cpu_percent = 100
host_memory_percent = 100
"""


def _channel(name: str, url: str, extra: str = "") -> str:
    return f'\n[[notify.channel]]\nname = "{name}"\nurl = "{url}"\nmin_priority = "P3"\n{extra}'


def _kill(containers, short: str) -> None:
    containers.kill_process(short)


def test_crash_mails_incident_opened_and_resolved_and_nothing_more(tmp_path, containers, daemon_factory):
    containers.run("web", ["sleep", "3600"])
    inv = write_inventory(tmp_path / "inv", [{"name": "web", "container": containers.name("web")}])
    with MailServer() as mail:
        pol = write_policy(tmp_path / "p.toml", FAST_POLICY + QUIET_HOST + _channel("mail", mail.url()))
        d = daemon_factory(inv, pol).start(resync=1)
        time.sleep(1)
        _kill(containers, "web")
        d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == "web", timeout=20)
        wait_for(lambda: len(mail.messages) >= 2, 20, what="two mails")
        time.sleep(4)  # several more passes: no repeats
        subjects = mail.subjects()
        assert len(subjects) == 2, subjects
        assert "incident opened" in subjects[0] and "web" in subjects[0] and "P2" in subjects[0]
        assert "resolved" in subjects[1]
        body = [p for p in mail.messages[0].walk() if p.get_content_type() == "text/plain"][0]
        text = body.get_payload(decode=True).decode()
        assert "Where: node testnode / service web" in text and "dockwarden ack" in text
    inc = json.loads(d.cli("incidents", "--all", "--json", check=True).stdout)
    assert [(i["subject"], i["kind"], i["state"]) for i in inc] == [("web", "stopped", "resolved")]


def test_webhook_receives_json(tmp_path, containers, daemon_factory):
    containers.run("api", ["sleep", "3600"])
    inv = write_inventory(tmp_path / "inv", [{"name": "api", "container": containers.name("api")}])
    with WebhookServer() as hook:
        pol = write_policy(tmp_path / "p.toml", FAST_POLICY + QUIET_HOST
                           + _channel("hook", f"json://127.0.0.1:{hook.port}/dockwarden"))
        d = daemon_factory(inv, pol).start(resync=1)
        time.sleep(1)
        _kill(containers, "api")
        wait_for(lambda: len(hook.received) >= 2, 20, what="two webhook posts")
        first = hook.received[0]
        assert {"version", "title", "message", "type"} <= set(first)
        assert "incident opened" in first["title"] and "api" in first["title"]
        assert "What: incident #" in first["message"] and "api: container" in first["message"]
        assert "resolved" in hook.received[1]["title"]
        d.wait_event(lambda e: e["type"] == "notification_delivered", timeout=5)


def test_down_channel_gets_its_messages_later_and_they_survive_a_restart(tmp_path, containers, daemon_factory):
    containers.run("svc", ["sleep", "3600"])
    inv = write_inventory(tmp_path / "inv", [{"name": "svc", "container": containers.name("svc")}])
    port = free_port()  # nothing listens: the channel is down
    pol = write_policy(tmp_path / "p.toml", FAST_POLICY + QUIET_HOST
                       + "[notify]\nretry_initial_delay_s = 0.2\nretry_max_delay_s = 1.0\ntimeout_s = 2\n"
                       + _channel("late", f"json://127.0.0.1:{port}/x"))
    d = daemon_factory(inv, pol).start(resync=1)
    time.sleep(1)
    _kill(containers, "svc")
    d.wait_event(lambda e: e["type"] == "notification_failed", timeout=20)
    d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == "svc", timeout=20)
    # Supervision goes on while the channel is down: a second crash is healed too.
    n = len(d.events())
    _kill(containers, "svc")
    d.wait_event(lambda e: e["type"] == "recovered" and e["service"] == "svc", timeout=20, after=n)
    assert d.stop() == 0
    # The second crash came within the flap window: the same incident reopened quietly.
    assert [e for e in d.events() if e["type"] == "incident_reopened" and e["service"] == "svc"]
    with WebhookServer(port) as hook:
        d.start(resync=1)
        wait_for(lambda: len(hook.received) >= 2, 30, what="queued messages delivered after restart")
        time.sleep(2)
        titles = [m["title"] for m in hook.received]
        assert sum("incident opened" in t for t in titles) == 1, titles
        assert sum("resolved" in t for t in titles) == 1, titles
        assert len(titles) == 2, titles


def test_cpu_spike_is_one_incident_and_one_message(tmp_path, containers, daemon_factory):
    containers.run("burn", ["sh", "-c", "while :; do :; done"], stop_signal="SIGKILL")
    inv = write_inventory(tmp_path / "inv", [{"name": "burn", "container": containers.name("burn")}])
    with WebhookServer() as hook:
        pol = write_policy(tmp_path / "p.toml", FAST_POLICY + QUIET_HOST.replace("[spikes]", "[spikes]\n"
                           "container_cpu_percent = 15\nsustained_samples = 3")
                           + _channel("hook", f"json://127.0.0.1:{hook.port}/x"))
        d = daemon_factory(inv, pol).start(resync=1)
        e = d.wait_event(lambda e: e["type"] == "incident_opened" and e["drift"] == "resource_spike", timeout=30)
        assert e["service"] == "burn" and e["priority"] == "P3"
        assert any(c.startswith(containers.name("burn")) for c in e["details"]["top_consumers"])
        wait_for(lambda: [m for m in hook.received if "resource_spike" in m["title"]], 30, what="the spike message")
        d.wait_full_passes(4, after=utcnow())  # more passes: still one incident, one message
        opened = [x for x in d.events() if x["type"] == "incident_opened" and x["drift"] == "resource_spike"]
        assert len(opened) == 1
        spike_msgs = [m for m in hook.received if "resource_spike" in m["title"]]
        assert len(spike_msgs) == 1 and "Top consumers:" in spike_msgs[0]["message"], [m["title"] for m in spike_msgs]
        containers.get("burn").stop(timeout=1)
        d.wait_event(lambda e: e["type"] == "incident_resolved" and e["drift"] == "resource_spike", timeout=20)


def test_notify_test_reports_live_and_dead_channels(tmp_path):
    with WebhookServer() as hook:
        pol = write_policy(tmp_path / "p.toml", _channel("live", f"json://127.0.0.1:{hook.port}/x")
                           + _channel("dead", f"json://127.0.0.1:{free_port()}/x"))
        cmd = [sys.executable, "-m", "dockwarden", "notify", "test", "--policy", str(pol),
               "--state-dir", str(tmp_path / "s"), "--json"]
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 1, r.stderr
        res = {x["channel"]: x for x in json.loads(r.stdout)}
        assert res["live"]["delivered"] is True and res["dead"]["delivered"] is False
        assert len(hook.received) == 1 and "test message" in hook.received[0]["title"]
        r = subprocess.run(cmd + ["--channel", "live"], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
