"""``adopt``: observed containers -> inventory entries (pure), and the YAML it renders
reads back through the inventory loader."""

from __future__ import annotations

from pathlib import Path

import yaml

from dockwarden.adopt import adopt, parse_depends_on, render
from dockwarden.inventory import parse_services_file
from dockwarden.model import Intent
from tests.unit.builders import NOW, compose_container, container

V1 = {"com.docker.compose.version": "1.29.2", "com.docker.compose.project.config_files": "docker-compose.yml",
      "com.docker.compose.project.working_dir": "/srv/shop"}
V2 = {"com.docker.compose.version": "2.24.0",
      "com.docker.compose.project.config_files": "/srv/shop/compose.yaml,/srv/shop/compose.override.yaml",
      "com.docker.compose.project.working_dir": "/srv/shop"}


def _by_name(result):
    return {e.name: e.fields for e in result.entries}


def test_depends_on_label_parsing():
    assert parse_depends_on("db:service_healthy:false,cache:service_started:true") == ["db", "cache"]
    assert parse_depends_on("db:service_started") == ["db"]
    assert parse_depends_on("db, db ,") == ["db"]
    assert parse_depends_on("") == [] and parse_depends_on(None) == []


def test_compose_v1_project_one_entry_per_service_file_joined_to_working_dir_no_depends_on():
    cs = [compose_container("shop", "web", labels={**V1}, n=1), compose_container("shop", "web", labels={**V1}, n=2),
          compose_container("shop", "db", labels={**V1})]
    r = adopt(cs)
    e = _by_name(r)
    assert set(e) == {"web", "db"}
    assert e["web"] == {"name": "web", "compose_project": "shop",
                        "compose_file": "/srv/shop/docker-compose.yml", "desired": "running"}
    assert [x.containers for x in r.entries if x.name == "web"] == [("shop-web-1", "shop-web-2")]
    assert "depends_on" not in e["web"]
    note = next(n for n in r.notes if "depends_on" in n)
    assert "shop" in note and "1.29.2" in note and "docker-compose v1" in note and "by hand" in note


def test_compose_v2_depends_on_mapped_to_entry_names_and_first_file_noted():
    dep = "com.docker.compose.depends_on"
    cs = [compose_container("shop", "web", labels={**V2, dep: "api:service_started:false"}),
          compose_container("shop", "api", labels={**V2, dep: "db:service_healthy:false,gone:service_started:false"}),
          compose_container("shop", "db", labels={**V2, dep: ""})]
    r = adopt(cs)
    e = _by_name(r)
    assert e["web"]["depends_on"] == ["api"] and e["api"]["depends_on"] == ["db"] and "depends_on" not in e["db"]
    assert e["api"]["compose_file"] == "/srv/shop/compose.yaml"
    assert any("2 files" in n and "first" in n for n in r.notes)
    assert any("shop/gone" in n and "not adopted" in n for n in r.notes)
    assert not any("no com.docker.compose.depends_on" in n for n in r.notes)


def test_desired_follows_what_runs_now():
    cs = [container("up"), container("down", "exited", exit_code=137), container("made", "created"),
          container("paused", "paused"), container("looping", "restarting"),
          compose_container("p", "half", 1, "exited", labels=V1), compose_container("p", "half", 2, labels=V1),
          compose_container("p", "off", labels=V1, state="exited")]
    e = _by_name(adopt(cs))
    assert {n: f["desired"] for n, f in e.items()} == {
        "up": "running", "down": "stopped", "made": "stopped", "paused": "stopped", "looping": "running",
        "half": "running", "off": "stopped"}


def test_running_only_skips_the_rest_with_a_reason():
    r = adopt([container("up"), container("down", "exited")], include_stopped=False)
    assert set(_by_name(r)) == {"up"}
    assert [(s.container, "--running" in s.reason) for s in r.skipped] == [("down", True)]


def test_skips_pool_one_offs_dockwarden_and_opted_out_with_reasons():
    cs = [container("worker-1", labels={"dockwarden.managed": "true", "dockwarden.pool": "worker"}),
          container("job", "exited", auto_remove=True),
          compose_container("shop", "migrate", labels={**V1, "com.docker.compose.oneoff": "True"}),
          container("dw", spec={"command": ["dockwarden", "run", "--resync", "30"]}),
          container("dw2", spec={"entrypoint": ["/usr/bin/python3", "-m", "dockwarden"], "command": ["run"]}),
          container("dw3", labels={"dockwarden.supervisor": "true"}),
          container("me", id="c" * 64),
          container("quiet", labels={"DockWarden.Enable": "FALSE"}),
          container("kept")]
    r = adopt(cs, own_ids=frozenset({"c" * 64}))
    assert set(_by_name(r)) == {"kept"}
    why = {s.container: s.reason for s in r.skipped}
    assert "pool" in why["worker-1"] and "--rm" in why["job"] and "compose one-off" in why["shop-migrate-1"]
    assert why["dw"] == why["dw2"] == why["dw3"] == why["me"] == "dockwarden itself"
    assert "dockwarden.enable=false" in why["quiet"]


def test_names_collide_then_project_prefixed_and_the_result_validates(tmp_path: Path):
    cs = [compose_container("shop", "web", labels=V1), compose_container("blog", "web", labels=V1),
          compose_container("blog", "db", labels=V1), container("db")]
    r = adopt(cs)
    e = _by_name(r)
    assert set(e) == {"shop-web", "blog-web", "blog-db", "db"}
    assert e["blog-db"]["compose_service"] == "db" and e["db"] == {"name": "db", "desired": "running"}
    f = tmp_path / "services.yaml"
    f.write_text(render(r, node="n1", generated_at=NOW, engine="unix:///var/run/docker.sock"))
    specs = {s.name: s for s in parse_services_file(f, "n1")}
    assert specs["blog-web"].compose_service == "web" and specs["blog-web"].compose_project == "blog"
    assert specs["db"].desired is Intent.RUNNING


def test_relative_file_without_working_dir_and_no_files_are_left_to_the_person():
    r = adopt([compose_container("a", "x", labels={"com.docker.compose.project.config_files": "c.yml"}),
               compose_container("b", "y", labels={})])
    e = _by_name(r)
    assert "compose_file" not in e["x"] and "compose_file" not in e["y"]
    assert any("relative" in n and "a" in n for n in r.notes)
    assert any("compose project b" in n and "no compose file" in n for n in r.notes)


def test_invalid_project_name_is_skipped_not_written():
    r = adopt([compose_container("Shop.Prod", "web", labels=V1)])
    assert not r.entries
    assert "compose_project" in r.skipped[0].reason


def test_autoheal_stop_timeout_and_fighting_restart_policy():
    r = adopt([container("web", labels={"autoheal": "true", "autoheal.stop.timeout": "20"}, restart_policy="always"),
               container("bad", labels={"autoheal.stop.timeout": "soon"})])
    e = _by_name(r)
    assert e["web"]["stop_timeout_s"] == 20 and "stop_timeout_s" not in e["bad"]
    assert any("docker update --restart=no web" in n for n in r.notes)
    assert any("bad" in n and "autoheal.stop.timeout" in n for n in r.notes)


def test_label_filter():
    r = adopt([container("a", labels={"team": "x"}), container("b", labels={"team": "y"}), container("c")],
              match_labels={"team": "x"})
    assert set(_by_name(r)) == {"a"} and r.filtered_out == 2
    assert set(_by_name(adopt([container("a", labels={"team": "x"}), container("c")],
                              match_labels={"team": None}))) == {"a"}


def test_render_comments_and_header_say_the_compose_file_is_to_be_confirmed():
    r = adopt([compose_container("shop", "web", labels=V1), container("down", "exited")])
    text = render(r, node="n1", generated_at=NOW, engine="unix:///var/run/docker.sock")
    assert "only" in text and "source of compose paths" in text and "2026-11-21T10:00:00.000Z" in text
    assert "confirm it" in text and "desired: stopped" in text
    assert yaml.safe_load(text) == r.document()
    assert yaml.safe_load(render(adopt([]), node="n1", generated_at=NOW, engine="x")) == {"services": []}


def test_same_input_same_output():
    cs = [compose_container("shop", "web", labels=V1), container("b"), container("a", "exited")]
    one = render(adopt(cs), node="n", generated_at=NOW, engine="e")
    assert one == render(adopt(list(reversed(cs))), node="n", generated_at=NOW, engine="e")
