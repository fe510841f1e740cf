from pathlib import Path

import pytest

from dockwarden.config import ConfigError
from dockwarden.inventory import label_enabled, load_inventory, merge_labelled
from dockwarden.model import ContainerState, Intent, IntentSource, Remediation


def _write(tmp: Path, text: str, node: str = "n1") -> Path:
    d = tmp / "hosts" / node
    d.mkdir(parents=True, exist_ok=True)
    f = d / "services.yaml"
    f.write_text(text)
    return f


def test_loads_services_with_defaults(tmp_path):
    _write(tmp_path, """
services:
  - name: web
    depends_on: [db]
  - name: db
    container: postgres-1
    desired: stopped
    remediation: recommend
    max_restarts: 2
  - name: api
    compose_project: shop
""")
    ds = load_inventory(tmp_path)
    assert ds.node == "n1"
    web, db, api = ds.services["web"], ds.services["db"], ds.services["api"]
    assert web.container_name == "web" and web.desired == Intent.RUNNING and web.depends_on == ("db",)
    assert db.container_name == "postgres-1" and db.desired == Intent.STOPPED
    assert db.remediation == Remediation.RECOMMEND and db.max_restarts == 2
    assert api.compose_project == "shop" and api.compose_service == "api" and api.container is None


@pytest.mark.parametrize("text,needle", [
    ("services:\n  - name: web\n    desired: sometimes\n", "services[0].desired"),
    ("services:\n  - name: web\n    remediation: yes\n", "services[0].remediation"),
    ("services:\n  - name: web\n  - name: api\n    depends_on: [nope]\n", "services[1].depends_on[0]"),
    ("services:\n  - name: web\n    colour: blue\n", "services[0].colour"),
    ("services:\n  - container: x\n", "services[0].name"),
    ("services:\n  - name: a\n  - name: a\n", "duplicate service name"),
    ("services:\n  - name: a\n    container: c\n    compose_project: p\n", "not both"),
    ("services: [\n", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ("services:\n  - name: web\n    max_restarts: 0\n", "services[0].max_restarts"),
])
def test_errors_name_file_and_field(tmp_path, text, needle):
    f = _write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_inventory(tmp_path)
    msg = str(ei.value)
    assert str(f) in msg
    assert needle in msg


def test_node_selection(tmp_path):
    _write(tmp_path, "services:\n  - name: a\n", node="n1")
    _write(tmp_path, "services:\n  - name: b\n", node="n2")
    assert set(load_inventory(tmp_path, "n2").services) == {"b"}
    with pytest.raises(ConfigError, match="nodes in the inventory"):
        load_inventory(tmp_path, "n3")


def test_single_file_and_missing_path(tmp_path):
    f = _write(tmp_path, "services:\n  - name: a\n")
    assert load_inventory(f).node == "n1"
    with pytest.raises(ConfigError, match="not found"):
        load_inventory(tmp_path / "nope")


@pytest.mark.parametrize("value,expected", [("true", True), ("TRUE", True), ("False", False), ("0", False), ("maybe", None)])
def test_enable_label_is_case_insensitive(value, expected):
    assert label_enabled({"DockWarden.Enable": value}) is expected


def test_labelled_containers_are_tracked_inventory_wins(tmp_path):
    _write(tmp_path, "services:\n  - name: web\n")
    ds = load_inventory(tmp_path)
    cs = [
        ContainerState(id="1", name="web", image="i", state="running", labels={"dockwarden.enable": "true",
                                                                              "dockwarden.desired": "stopped"}),
        ContainerState(id="2", name="side", image="i", state="running",
                       labels={"dockwarden.enable": "True", "dockwarden.remediation": "OFF"}),
        ContainerState(id="3", name="bad", image="i", state="running",
                       labels={"dockwarden.enable": "true", "dockwarden.desired": "later"}),
        ContainerState(id="4", name="other", image="i", state="running", labels={}),
    ]
    merged, problems = merge_labelled(ds, cs)
    assert merged.services["web"].source == IntentSource.INVENTORY
    assert merged.services["web"].desired == Intent.RUNNING
    assert merged.services["side"].remediation == Remediation.OFF
    assert merged.services["side"].source == IntentSource.LABEL
    assert "other" not in merged.services
    assert merged.services["bad"].desired == Intent.RUNNING
    assert any("dockwarden.desired" in p and "bad" in p for p in problems)
