"""docker-autoheal's labels as desired state (``[labels]``, ``inventory.spec_from_labels``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockwarden.config import ConfigError, load_policy
from dockwarden.config_labels import LabelsPolicy
from dockwarden.inventory import has_healthcheck, merge_labelled, spec_from_labels
from dockwarden.model import DesiredState, DriftKind, Intent, IntentSource, ServiceSpec
from dockwarden.reconcile.drift import detect_drift
from dockwarden.reconcile.recommend import recommend_all
from dockwarden.reconcile.assess import assess
from tests.unit.builders import NOW, POLICY, compose_container, container, desired, world

HC = {"healthcheck": {"test": ["CMD", "true"], "interval": 1_000_000_000}}
ALL = LabelsPolicy(autoheal_compat="all")
OFF = LabelsPolicy(autoheal_compat="off")


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "1", "yes"])
def test_autoheal_true_tracks_the_container_case_insensitively(value):
    spec, problem = spec_from_labels(container("web", labels={"AutoHeal": value}), "n1")
    assert problem is None and spec is not None
    assert (spec.name, spec.container, spec.desired, spec.source) == ("web", "web", Intent.RUNNING, IntentSource.LABEL)
    assert "autoheal=true" in spec.origin and spec.stop_timeout_s is None


def test_stop_timeout_label_and_its_bad_values():
    spec, problem = spec_from_labels(container("web", labels={"autoheal": "true", "autoheal.stop.timeout": "20"}), "n")
    assert spec.stop_timeout_s == 20.0 and problem is None
    for bad in ("soon", "-1", "nan", "1e9"):
        spec, problem = spec_from_labels(container("web", labels={"autoheal": "true",
                                                                  "autoheal.stop.timeout": bad}), "n")
        assert spec is not None and spec.stop_timeout_s is None
        assert "autoheal.stop.timeout" in problem and "expected seconds" in problem
    # dockwarden's own opt-in honours the timeout label too
    spec, _ = spec_from_labels(container("x", labels={"dockwarden.enable": "true", "autoheal.stop.timeout": "3"}), "n")
    assert spec.stop_timeout_s == 3.0


def test_modes_label_all_off():
    plain, checked = container("plain"), container("checked", health="healthy")
    stopped_checked = container("sc", "exited", spec=HC)
    assert spec_from_labels(plain, "n")[0] is None
    assert spec_from_labels(checked, "n")[0] is None  # "label" mode needs the label
    assert spec_from_labels(checked, "n", ALL)[0] is not None
    assert spec_from_labels(stopped_checked, "n", ALL)[0] is not None
    assert spec_from_labels(plain, "n", ALL)[0] is None  # no healthcheck: autoheal could never act on it
    assert spec_from_labels(container("x", labels={"autoheal": "true"}), "n", OFF)[0] is None
    assert "autoheal_compat = all" in spec_from_labels(checked, "n", ALL)[0].origin


def test_all_mode_opt_outs_and_things_that_are_never_services():
    for c in (container("a", health="healthy", labels={"autoheal": "False"}),
              container("b", health="healthy", labels={"dockwarden.enable": "false"}),
              container("c", health="healthy", labels={"dockwarden.managed": "true"}),
              container("d", health="healthy", auto_remove=True),
              compose_container("p", "run", health="healthy", labels={"com.docker.compose.oneoff": "True"}),
              container("e", health="healthy", spec={**HC, "command": ["dockwarden", "run"]})):
        assert spec_from_labels(c, "n", ALL)[0] is None, c.name
    # dockwarden.enable=false wins over autoheal=true in any mode
    assert spec_from_labels(container("f", labels={"autoheal": "true", "dockwarden.enable": "no"}), "n")[0] is None


def test_custom_label_name():
    rules = LabelsPolicy(autoheal_label="heal-me")
    assert spec_from_labels(container("a", labels={"Heal-Me": "true"}), "n", rules)[0] is not None
    assert spec_from_labels(container("b", labels={"autoheal": "true"}), "n", rules)[0] is None


def test_disabled_image_healthcheck_is_none():
    assert not has_healthcheck(container("a", "exited", spec={"healthcheck": {"test": ["NONE"]}}))
    assert has_healthcheck(container("b", "exited", spec=HC))
    assert not has_healthcheck(container("c"))


def test_inventory_wins_and_a_compose_container_it_claims_is_not_added_again():
    inv = desired(ServiceSpec(name="api", compose_project="shop", compose_service="api"))
    cs = [compose_container("shop", "api", labels={"autoheal": "true"}), container("side", labels={"autoheal": "true"})]
    merged, problems = merge_labelled(inv, cs)
    assert set(merged.services) == {"api", "side"} and not problems
    assert merged.services["api"].source is IntentSource.INVENTORY


def test_an_unhealthy_autoheal_container_gets_a_restart_and_an_exited_one_a_start():
    """autoheal restarts unhealthy containers; dockwarden also starts crashed ones
    (it is a tracked service with intent running; a `docker stop` is recorded as
    intent by the daemon and then there is no drift)."""
    sick = container("sick", health="unhealthy", health_failing_streak=3, labels={"autoheal": "true"})
    dead = container("dead", "exited", exit_code=1, labels={"autoheal": "true"})
    w = world(sick, dead)
    merged, _ = merge_labelled(desired(), w.containers)
    drifts = detect_drift(merged, w, {}, {}, POLICY, now=NOW)
    assert {(d.subject, d.kind) for d in drifts} == {("sick", DriftKind.UNHEALTHY), ("dead", DriftKind.STOPPED)}
    recs = {r.subject: r for r in recommend_all(assess(drifts, POLICY), world=w, desired=merged, histories={})}
    assert recs["sick"].action.value == "restart" and recs["dead"].action.value == "start"
    assert recs["sick"].type.value == "reconcile_required"


def test_labels_policy_table(tmp_path: Path):
    p = tmp_path / "policy.toml"
    p.write_text('[labels]\nautoheal_compat = "all"\nautoheal_label = "heal"\n')
    pol = load_policy(p)
    assert pol.labels == LabelsPolicy(autoheal_compat="all", autoheal_label="heal")
    p.write_text('[labels]\nautoheal_compat = "sometimes"\n')
    with pytest.raises(ConfigError, match=r"labels\.autoheal_compat"):
        load_policy(p)


def test_the_memo_never_changes_what_merge_labelled_answers():
    """merge_labelled's memo (a daemon keeps one across passes, issue 9): each step
    changes one thing it reads, under the same container id; the answer with the memo
    is the answer without it, and entries of containers gone are dropped."""
    memo: dict = {}
    web = container("web", labels={"autoheal": "true"})
    steps = [
        ("first sight", desired(), [web, container("side")], None),
        ("nothing changed", desired(), [web, container("side")], None),
        ("a label changes", desired(), [container("web", labels={"autoheal": "true", "dockwarden.desired": "stopped"})],
         None),
        ("a bad label", desired(), [container("web", labels={"autoheal": "true", "dockwarden.desired": "later"})], None),
        ("opted out", desired(), [container("web", labels={"autoheal": "true", "dockwarden.enable": "false"})], None),
        ("no health status yet", desired(), [container("web")], ALL),
        ("a health status appears", desired(), [container("web", health="healthy")], ALL),
        ("the rules change", desired(), [container("web", health="healthy")], OFF),
        ("renamed", desired(), [container("web2", id="id-web", labels={"autoheal": "true"})], None),
        ("now --rm", desired(), [container("web2", id="id-web", labels={"autoheal": "true"}, auto_remove=True)], None),
        ("another node", DesiredState(node="other", services={}), [web], None),
    ]
    for what, inv, cs, rules in steps:
        assert merge_labelled(inv, cs, rules, memo) == merge_labelled(inv, cs, rules), what
        assert set(memo) <= {c.id for c in cs}, what
