"""The shipped Prometheus and Alertmanager examples, checked and run for real
(issue 10): ``promtool check rules``; a real Prometheus (Debian's) scrapes a
real daemon and a real Alertmanager delivers the "circuit open" alert to a
webhook on 127.0.0.1 when a service crash-loops into its circuit breaker.

Everything listens on loopback ports picked by the test, with its own storage
dirs, and is stopped by the test. The scrape/evaluation intervals and
``group_wait`` are shortened; the rules file is the example's, as shipped.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, wait_for, write_inventory, write_policy

from tests.support.http import call
from tests.support.servers import WebhookServer, free_port

EXAMPLES = REPO / "examples" / "prometheus"


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} not found: `make test` installs it (scripts/ensure-docker.sh)")
    return path


def test_promtool_checks_the_shipped_rules_and_configs():
    promtool = _need("promtool")
    r = subprocess.run([promtool, "check", "rules", str(EXAMPLES / "rules.yml")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6 rules found" in r.stdout + r.stderr
    r = subprocess.run([promtool, "check", "config", str(EXAMPLES / "prometheus.yml")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    amtool = _need("amtool")
    r = subprocess.run([amtool, "check-config", str(EXAMPLES / "alertmanager.yml")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    names = {r["alert"] for g in yaml.safe_load((EXAMPLES / "rules.yml").read_text())["groups"] for r in g["rules"]}
    assert names == {"DockwardenServiceDown", "DockwardenCircuitOpen", "DockwardenSummaryUnstable",
                     "DockwardenDiskFullSoon", "DockwardenStale", "DockwardenNotificationQueueStuck"}


class _Proc:
    """A server process of the test; stopped (its own pid) at the end."""

    def __init__(self, argv: list[str], log: Path):
        self.log = log
        self._f = open(log, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._f, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._f.close()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def test_prometheus_scrapes_and_alertmanager_delivers_circuit_open(tmp_path, containers, daemon_factory):
    prometheus, alertmanager = _need("prometheus"), _need("prometheus-alertmanager")
    containers.run("flaky", ["sh", "-c", "sleep 1; exit 1"])
    inv = write_inventory(tmp_path / "inv", [{"name": "flaky", "container": containers.name("flaky"),
                                              "max_restarts": 2, "restart_window_s": 600}])
    policy = write_policy(tmp_path / "p.toml", """
[backoff]
initial_delay_s = 0.5
max_delay_s = 1
[guardrails]
stop_timeout_s = 1
""")
    d = daemon_factory(inv, policy).start(resync=1)
    url = d.api_url()
    target = url.removeprefix("http://")

    with WebhookServer() as hook:
        am_port, prom_port = free_port(), free_port()
        am_conf = yaml.safe_load((EXAMPLES / "alertmanager.yml").read_text())
        am_conf["route"].update(group_wait="1s", group_interval="1s")
        for r in am_conf["route"].get("routes", []):
            r["group_wait"] = "1s"
        am_conf["receivers"][0]["webhook_configs"][0]["url"] = f"http://127.0.0.1:{hook.port}/alerts"
        (tmp_path / "am.yml").write_text(yaml.safe_dump(am_conf))
        prom_conf = yaml.safe_load((EXAMPLES / "prometheus.yml").read_text())
        prom_conf["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        prom_conf["rule_files"] = [str(EXAMPLES / "rules.yml")]
        prom_conf["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{am_port}"]
        prom_conf["scrape_configs"][0]["static_configs"][0]["targets"] = [target]
        (tmp_path / "prom.yml").write_text(yaml.safe_dump(prom_conf))

        am = _Proc([alertmanager, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="], tmp_path / "am.log")
        prom = _Proc([prometheus, f"--config.file={tmp_path / 'prom.yml'}",
                      f"--storage.tsdb.path={tmp_path / 'prom-data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                     tmp_path / "prom.log")
        try:
            prom_url = f"http://127.0.0.1:{prom_port}"

            def scraped():
                try:
                    r = call(prom_url, path="/api/v1/targets", timeout=5)
                except OSError:
                    return None
                ts = r.json()["data"]["activeTargets"] if r.status == 200 else []
                return ts if ts and ts[0]["health"] == "up" else None

            wait_for(scraped, 60, what=f"Prometheus scraping {target} (prometheus log: {prom.log})")
            r = call(prom_url, path="/api/v1/query?query=dockwarden_build_info", timeout=5)
            assert r.json()["data"]["result"], r.json()

            # The service crash-loops into its circuit breaker ...
            d.wait_event(lambda e: e["type"] == "reconcile_blocked" and e["service"] == "flaky", timeout=60)
            # ... and Alertmanager delivers DockwardenCircuitOpen to the webhook.
            def delivered():
                for body in hook.received:
                    for a in body.get("alerts", []):
                        lab = a.get("labels", {})
                        if (lab.get("alertname") == "DockwardenCircuitOpen" and lab.get("service") == "flaky"
                                and a.get("status") == "firing"):
                            return a
                return None

            try:
                alert = wait_for(delivered, 60, what="the circuit-open alert at the webhook")
            except AssertionError:
                raise AssertionError(f"webhook got {hook.received}\nprometheus:\n{prom.tail()}\n"
                                     f"alertmanager:\n{am.tail()}") from None
            assert alert["labels"]["node"] == "testnode" and alert["labels"]["severity"] == "page"
            assert "dockwarden resume flaky" in alert["annotations"]["description"]
            # The same figure straight from the daemon.
            m = call(url, path="/metrics").body.decode()
            assert 'dockwarden_circuit_open{node="testnode",service="flaky"} 1.0' in m
        finally:
            prom.stop()
            am.stop()
