"""The dashboard in a real headless browser (Debian's Chromium, driven by
selenium through chromedriver; issue 10): it shows the services, a kill -9
appears in the live event feed without a reload, and ack works with the token
(asked once, kept in sessionStorage, never in a URL or cookie). Screenshots are
written under the test's tmp dir and to ``bench/out/`` (gitignored) for a
person to look at.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import FAST_POLICY, REPO, wait_for, write_inventory, write_policy

from tests.support.http import call

CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-extensions", "--disable-default-apps")
OUT = REPO / "bench" / "out"


def _browser(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("chromium and chromedriver are needed: `make test` installs them (scripts/ensure-docker.sh)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in CHROMIUM_ARGS:
        opts.add_argument(a)
    opts.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service(driver), options=opts)


def _find(b, css: str):
    from selenium.webdriver.common.by import By

    return b.find_elements(By.CSS_SELECTOR, css)


def _click(b, css: str) -> bool:
    """Click the element ``css`` names; False when it is not there or was replaced
    between finding and clicking (the page re-renders its lists on every live
    update: a stale element reference, seen once in a full run)."""
    from selenium.common.exceptions import StaleElementReferenceException

    found = _find(b, css)
    if not found:
        return False
    try:
        found[0].click()
    except StaleElementReferenceException:
        return False
    return True


def _shot(b, tmp_path: Path, name: str) -> Path:
    p = tmp_path / name
    assert b.save_screenshot(str(p)), name
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copy(p, OUT / name)
    return p


def test_dashboard_shows_services_live_events_and_acks_with_the_token(tmp_path, containers, daemon_factory):
    busy = "while true; do i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; sleep 1; done"
    containers.run("web", ["sh", "-c", busy])
    containers.run("db", ["sleep", "100000"])
    containers.run("batch", ["sh", "-c", "exit 3"])  # exits at once; remediation "recommend": it stays down
    inv = write_inventory(tmp_path / "inv", [
        {"name": "web", "container": containers.name("web"), "depends_on": ["db"]},
        {"name": "db", "container": containers.name("db")},
        {"name": "batch", "container": containers.name("batch"), "remediation": "recommend"},
    ])
    d = daemon_factory(inv, write_policy(tmp_path / "p.toml", FAST_POLICY)).start(resync=1)
    url, token = d.api_url(), d.api_token()
    inc = wait_for(lambda: [i for i in call(url, path="/api/v1/incidents").json()["incidents"]
                            if i["subject"] == "batch"], 20, what="an incident for batch")[0]
    # Sparklines need a few samples (one per 10 s from full observations).
    wait_for(lambda: len(call(url, path="/api/v1/samples").json()["samples"].get("web", [])) >= 3, 60,
             interval=1, what="three samples of web")

    b = _browser(1280, 1500)
    try:
        b.get(url + "/")
        wait_for(lambda: len(_find(b, ".svc[data-service]")) == 3, 15, what="three services on the page")
        names = {e.get_attribute("data-service") for e in _find(b, ".svc[data-service]")}
        assert names == {"web", "db", "batch"}
        assert _find(b, "#summary")[0].text.lower() in ("degraded", "unstable", "reconciling", "nominal")
        wait_for(lambda: _find(b, "#live.on"), 10, what="the live feed connected")
        wait_for(lambda: _find(b, '.svc[data-service="web"] svg path.spark-cpu'), 15, what="a CPU sparkline")

        # kill -9 of web's process: the drift shows up in the feed without a reload.
        marker = b.execute_script("window.__no_reload = 1; return window.__no_reload")
        containers.kill_process("web")
        wait_for(lambda: _find(b, '#feed li[data-type="drift_detected"][data-service="web"]'), 10,
                 what="drift_detected for web in the feed")
        wait_for(lambda: _find(b, '#feed li[data-type="recovered"][data-service="web"]'), 20,
                 what="recovered for web in the feed")
        assert b.execute_script("return window.__no_reload") == marker, "the page was reloaded"

        # Ack: the token is asked once, kept in sessionStorage, sent as a bearer header.
        wait_for(lambda: _click(b, f'button.ack[data-id="{inc["id"]}"]'), 10, what="the ack button clicked")
        wait_for(lambda: _find(b, "#token-dialog[open]"), 5, what="the token dialog")
        _find(b, "#token-input")[0].send_keys(token)
        _find(b, "#token-save")[0].click()
        wait_for(lambda: _find(b, f'li[data-incident="{inc["id"]}"][data-state="acknowledged"]'), 10,
                 what="the incident acknowledged on the page")
        assert call(url, path="/api/v1/incidents").json()["incidents"][0]["state"] in ("acknowledged", "open")
        acked = [i for i in call(url, path="/api/v1/incidents").json()["incidents"] if i["id"] == inc["id"]][0]
        assert acked["state"] == "acknowledged"
        assert b.execute_script("return sessionStorage.getItem('dockwarden.token')") == token
        assert b.execute_script("return document.cookie") == "" and b.get_cookies() == []
        assert token not in b.current_url
        ev = d.wait_event(lambda e: e["type"] == "incident_acknowledged" and e["details"].get("incident_id") == inc["id"])
        assert ev["details"]["by"] == "api"
        wait_for(lambda: _find(b, '#storage .bar span') or _find(b, "#storage .empty"), 10, what="storage rendered")
        b.execute_script("window.scrollTo(0, 0)")
        _shot(b, tmp_path, "dashboard.png")
    finally:
        b.quit()

    # Phone width: one column, still usable (device metrics: headless Chrome's
    # window cannot be narrower than 500 px).
    p = _browser(800, 1800)
    try:
        p.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                          {"width": 390, "height": 1800, "deviceScaleFactor": 1, "mobile": True})
        p.get(url + "/")
        wait_for(lambda: len(_find(p, ".svc[data-service]")) == 3, 15, what="services at phone width")
        width = p.execute_script("return document.documentElement.scrollWidth")
        assert width <= 400, f"the page scrolls sideways at phone width ({width} px)"
        _shot(p, tmp_path, "dashboard-phone.png")
    finally:
        p.quit()
