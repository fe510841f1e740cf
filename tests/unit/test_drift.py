"""detect_drift, find_container, effective_intent: hand-built states, no engine."""

from __future__ import annotations

import random

import pytest
from builders import (
    GB,
    MB,
    NOW,
    POLICY,
    compose_container,
    container,
    desired,
    disk,
    history,
    host,
    intent,
    spec,
    world,
)

from dockwarden.config import Policy
from dockwarden.model import DriftKind as K
from dockwarden.model import Intent
from dockwarden.reconcile.drift import detect_drift, effective_intent, find_container


def run(d, w, intents=None, histories=None, policy=POLICY):
    return detect_drift(d, w, intents or {}, histories or {}, policy, now=NOW)


def kinds(drifts, subject=None):
    return [d.kind for d in drifts if subject is None or d.subject == subject]


# --------------------------------------------------------------------------- find_container / intent


def test_find_container_by_name_and_container_override():
    w = world(container("web"), container("db-main"))
    assert find_container(spec("web"), w).name == "web"
    assert find_container(spec("db", container="db-main"), w).name == "db-main"
    assert find_container(spec("cache"), w) is None


def test_find_container_by_compose_labels_not_by_name():
    w = world(compose_container("shop", "api"), container("api"))
    s = spec("api", compose_project="shop")
    assert find_container(s, w).name == "shop-api-1"
    s2 = spec("backend", compose_project="shop", compose_service="api")
    assert find_container(s2, w).name == "shop-api-1"
    assert find_container(spec("api", compose_project="other"), w) is None


def test_find_container_scaled_compose_prefers_running_then_name():
    w = world(compose_container("shop", "api", 1, "exited"), compose_container("shop", "api", 3),
              compose_container("shop", "api", 2))
    assert find_container(spec("api", compose_project="shop"), w).name == "shop-api-2"


def test_effective_intent_recorded_wins_both_ways():
    assert effective_intent(spec("web"), None) is Intent.RUNNING
    assert effective_intent(spec("web", desired=Intent.STOPPED), None) is Intent.STOPPED
    assert effective_intent(spec("web"), intent("web", Intent.STOPPED)) is Intent.STOPPED
    assert effective_intent(spec("web", desired=Intent.STOPPED),
                            intent("web", Intent.RUNNING)) is Intent.RUNNING


# --------------------------------------------------------------------------- service drift kinds


@pytest.mark.parametrize("health", [None, "healthy", "starting"])
def test_running_service_has_no_drift(health):
    assert run(desired(spec("web")), world(container("web", health=health))) == []


def test_missing_details():
    d = run(desired(spec("web"), spec("api", compose_project="shop")), world(),
            histories={"web": history(recorded_spec={"Image": "x"})})
    by = {x.subject: x for x in d}
    assert by["web"].kind is K.MISSING and by["web"].details == {
        "compose_project": None, "has_recorded_spec": True}
    assert by["api"].details == {"compose_project": "shop", "has_recorded_spec": False}


def test_exited_is_stopped_with_evidence():
    c = container("web", "exited", exit_code=2, error="boom", oom_killed=False)
    [d] = run(desired(spec("web")), world(c))
    assert d.kind is K.STOPPED and d.container == "web" and d.tracked
    assert d.details["exit_code"] == 2 and d.details["error"] == "boom"
    assert d.details["oom_killed"] is False and d.details["paused"] is False
    assert d.details["finished_at"] == "2026-11-21T09:59:00.000Z"
    assert d.details["down_for_s"] == 60.0


@pytest.mark.parametrize("state", ["exited", "dead", "created"])
def test_down_states_are_stopped(state):
    assert kinds(run(desired(spec("web")), world(container("web", state)))) == [K.STOPPED]


def test_paused_is_stopped_with_paused_flag():
    [d] = run(desired(spec("web")), world(container("web", "paused")))
    assert d.kind is K.STOPPED and d.details["paused"] is True


def test_restarting_is_crash_loop_of_docker_restart_policy():
    [d] = run(desired(spec("web")), world(container("web", "restarting", restart_count=7, exit_code=1)))
    assert d.kind is K.CRASH_LOOP
    assert d.details["source"] == "docker_restart_policy" and d.details["restart_count"] == 7


def test_unhealthy_details():
    c = container("web", health="unhealthy", health_failing_streak=4, health_last_output="503")
    [d] = run(desired(spec("web")), world(c))
    assert d.kind is K.UNHEALTHY
    assert d.details == {"health_failing_streak": 4, "health_last_output": "503"}


def test_removing_container_gives_no_drift_this_pass():
    assert run(desired(spec("web")), world(container("web", "removing"))) == []


# --------------------------------------------------------------------------- intent stopped


@pytest.mark.parametrize("how", ["spec", "recorded"])
def test_intent_stopped_produces_nothing(how):
    s = spec("web", desired=Intent.STOPPED, depends_on=("db",)) if how == "spec" else spec(
        "web", depends_on=("db",))
    intents = {"web": intent("web", Intent.STOPPED)} if how == "recorded" else {}
    hist = {"web": history(attempts=9, failed_actions_in_row=3, last_failure="x")}
    for w in (world(), world(container("web", "exited")), world(container("web", "restarting"))):
        assert run(desired(s), w, intents, hist) == []


def test_recorded_running_overrides_spec_stopped():
    d = run(desired(spec("web", desired=Intent.STOPPED)), world(container("web", "exited")),
            {"web": intent("web", Intent.RUNNING)})
    assert kinds(d) == [K.STOPPED]


# --------------------------------------------------------------------------- history-based drift


def test_crash_loop_from_history_at_min_failures():
    w = world(container("web", "exited"))
    assert kinds(run(desired(spec("web")), w, histories={"web": history(attempts=2)})) == [K.STOPPED]
    d = run(desired(spec("web")), w, histories={"web": history(attempts=3)})
    assert kinds(d) == [K.STOPPED, K.CRASH_LOOP]
    assert d[1].details == {"source": "history", "attempts": 3}


def test_crash_loop_from_history_respects_policy():
    pol = Policy(crash_loop={"min_failures": 5})
    w = world(container("web", "exited"))
    assert kinds(run(desired(spec("web")), w, histories={"web": history(attempts=4)}, policy=pol)) == [
        K.STOPPED]


def test_crash_loop_history_merged_into_restarting_one_key():
    d = run(desired(spec("web")), world(container("web", "restarting")),
            histories={"web": history(attempts=5)})
    assert kinds(d) == [K.CRASH_LOOP]
    assert d[0].details["attempts"] == 5 and d[0].details["source"] == "docker_restart_policy"


def test_history_alone_gives_no_drift_when_service_is_fine():
    h = {"web": history(attempts=9, failed_actions_in_row=2, last_failure="x")}
    assert run(desired(spec("web")), world(container("web")), histories=h) == []


def test_failed_deployment_when_still_down():
    h = {"web": history(failed_actions_in_row=1, last_failure="start failed: port in use")}
    d = run(desired(spec("web")), world(container("web", health="unhealthy")), histories=h)
    assert kinds(d) == [K.UNHEALTHY, K.FAILED_DEPLOYMENT]
    assert d[1].details["last_failure"] == "start failed: port in use"


# --------------------------------------------------------------------------- dependencies


def test_dependency_down_and_service_down():
    d = run(desired(spec("web", depends_on=("db",)), spec("db")),
            world(container("web", "exited"), container("db", "exited")))
    web = [x for x in d if x.subject == "web"]
    assert kinds(web) == [K.STOPPED, K.DEPENDENCY_UNAVAILABLE]
    dep = web[1].details
    assert dep["dependencies"] == ["db"] and dep["unknown"] == [] and dep["dependant_running"] is False


def test_dependency_unavailable_only_when_service_runs():
    d = run(desired(spec("web", depends_on=("db",)), spec("db")),
            world(container("web"), container("db", health="starting")))
    assert kinds(d, "web") == [K.DEPENDENCY_UNAVAILABLE]
    assert d[0].details["dependant_running"] is True


@pytest.mark.parametrize("health", [None, "healthy"])
def test_available_dependency_gives_nothing(health):
    d = run(desired(spec("web", depends_on=("db",)), spec("db")),
            world(container("web", "exited"), container("db", health=health)))
    assert kinds(d, "web") == [K.STOPPED]


def test_unknown_and_operator_stopped_dependencies():
    d = run(desired(spec("web", depends_on=("db", "ghost")), spec("db")),
            world(container("web")), {"db": intent("db", Intent.STOPPED)})
    [x] = [x for x in d if x.subject == "web"]
    assert x.details["dependencies"] == ["db", "ghost"]
    assert x.details["unknown"] == ["ghost"] and x.details["stopped_by_intent"] == ["db"]


# --------------------------------------------------------------------------- host thresholds (disinto)


def host_subjects(h):
    return [(d.subject, d.details.get("level")) for d in run(desired(), world(host_stats=h))]


def test_memory_crisis_boundary_500mb():
    assert host_subjects(host(available=500 * MB)) == []
    [d] = run(desired(), world(host_stats=host(available=500 * MB - 1)))
    assert d.subject == "host:memory" and d.kind is K.RESOURCE_PRESSURE
    assert d.details["resource"] == "memory" and d.details["mem_available_bytes"] == 500 * MB - 1


def test_swap_crisis_needs_both_conditions():
    low = 2000 * MB - 1
    assert host_subjects(host(swap_used=3 * GB, available=low)) == []
    assert host_subjects(host(swap_used=3 * GB + 1, available=2000 * MB)) == []
    [d] = run(desired(), world(host_stats=host(swap_used=3 * GB + 1, available=low)))
    assert d.subject == "host:swap" and d.details["resource"] == "swap"
    assert d.details["swap_used_bytes"] == 3 * GB + 1


def test_memory_and_swap_both_reported():
    assert [s for s, _ in host_subjects(host(available=100 * MB, swap_used=4 * GB))] == [
        "host:memory", "host:swap"]


@pytest.mark.parametrize("percent,level", [
    (69.9, None), (70.0, None), (70.1, "warn"), (80.0, "warn"), (80.1, "critical"), (100.0, "critical"),
])
def test_disk_levels_around_70_and_80_percent(percent, level):
    got = host_subjects(host(disks=(disk("/var/lib/docker", percent),)))
    assert got == ([] if level is None else [("host:disk:/var/lib/docker", level)])


def test_disk_details_and_one_drift_per_path():
    d = run(desired(), world(host_stats=host(disks=(disk("/", 85.0), disk("/data", 75.0)))))
    assert [x.subject for x in d] == ["host:disk:/", "host:disk:/data"]
    assert d[0].details["resource"] == "disk" and d[0].details["path"] == "/"
    assert d[0].details["percent"] == 85.0 and d[1].details["level"] == "warn"
    assert len({x.key for x in d}) == 2


def test_no_host_stats_no_host_drift():
    w = world(container("web", "exited"))
    w = type(w)(node=w.node, observed_at=w.observed_at, host=None, containers=w.containers)
    assert [d.subject for d in run(desired(spec("web")), w)] == ["web"]


def test_engine_down_only_host_drifts():
    w = world(host_stats=host(available=1), engine_ok=False)
    d = run(desired(spec("web"), spec("db")), w)
    assert [x.subject for x in d] == ["host:memory"]


# --------------------------------------------------------------------------- untracked containers


@pytest.mark.parametrize("code,oom,expected", [
    (1, False, True), (0, False, False), (137, False, False), (143, False, False), (137, True, True),
    (2, True, True),
])
def test_untracked_exited(code, oom, expected):
    d = run(desired(), world(container("stray", "exited", exit_code=code, oom_killed=oom)))
    assert kinds(d) == ([K.STOPPED] if expected else [])
    if expected:
        assert d[0].tracked is False and d[0].subject == "stray" and d[0].container == "stray"


def test_untracked_unhealthy_and_running_fine():
    d = run(desired(), world(container("u", health="unhealthy"), container("ok")))
    assert [(x.subject, x.kind, x.tracked) for x in d] == [("u", K.UNHEALTHY, False)]


@pytest.mark.parametrize("value", ["false", "FALSE", " False "])
def test_enable_false_label_ignored(value):
    c = container("stray", "exited", labels={"dockwarden.enable": value})
    assert run(desired(), world(c)) == []


def test_containers_of_tracked_services_are_not_untracked():
    w = world(container("web", "exited"), compose_container("shop", "api", 1, "exited"),
              compose_container("shop", "api", 2, "exited"))
    s = (spec("web", desired=Intent.STOPPED), spec("api", compose_project="shop", desired=Intent.STOPPED))
    assert run(desired(*s), w) == []


# --------------------------------------------------------------------------- order and determinism


def scenario():
    d = desired(spec("web", depends_on=("db",)), spec("db"), spec("api", compose_project="shop"),
                spec("cache"))
    w = world(container("zz-stray", "exited"), container("web", "exited"), container("db", "dead"),
              container("cache", health="unhealthy"), container("aa-stray", health="unhealthy"),
              host_stats=host(available=100 * MB, disks=(disk("/", 90.0),)))
    return d, w, {"db": history("db", attempts=4, failed_actions_in_row=1, last_failure="x")}


def test_order_host_then_services_by_name_then_untracked():
    d, w, h = scenario()
    got = [(x.subject, x.kind.value) for x in run(d, w, histories=h)]
    assert got == [
        ("host:memory", "resource_pressure"), ("host:disk:/", "resource_pressure"),
        ("api", "missing"), ("cache", "unhealthy"),
        ("db", "stopped"), ("db", "crash_loop"), ("db", "failed_deployment"),
        ("web", "stopped"), ("web", "dependency_unavailable"),
        ("aa-stray", "unhealthy"), ("zz-stray", "stopped"),
    ]
    assert len({x.key for x in run(d, w, histories=h)}) == len(got)


def scenario_drifts():
    """The drifts of :func:`scenario` (run in other interpreters by hashseed)."""
    d, w, h = scenario()
    return run(d, w, histories=h)


def test_deterministic_across_processes_and_independent_of_container_order():
    from hashseed import assert_same_across_hash_seeds

    d, w, h = scenario()
    first = run(d, w, histories=h)
    # Same inputs, same drifts in the same order, whatever the interpreter's hash seed.
    assert_same_across_hash_seeds("test_drift", "scenario_drifts")
    shuffled = list(w.containers)
    random.Random(4).shuffle(shuffled)
    w2 = type(w)(node=w.node, observed_at=w.observed_at, host=w.host, containers=tuple(shuffled))
    assert run(d, w2, histories=h) == first


def test_pool_managed_containers_are_not_untracked_drift():
    from datetime import datetime, timezone

    from dockwarden.config import Policy
    from dockwarden.model import ContainerState, DesiredState, WorldState
    from dockwarden.reconcile.drift import detect_drift

    now = datetime(2026, 11, 21, tzinfo=timezone.utc)
    dead = dict(image="i", state="exited", exit_code=1)
    world = WorldState(node="n", observed_at=now, host=None, containers=(
        ContainerState(id="1", name="pool-1", labels={"dockwarden.managed": "true", "dockwarden.pool": "pool"}, **dead),
        ContainerState(id="2", name="stray", **dead),
    ))
    drifts = detect_drift(DesiredState(node="n"), world, {}, {}, Policy(), now=now)
    assert [d.subject for d in drifts] == ["stray"]


def test_one_disk_finding_per_filesystem_and_storage_breakdown_supersedes_it():
    from datetime import datetime, timezone

    from dockwarden.config import Policy
    from dockwarden.model import DesiredState, DiskUsage, Drift, DriftKind, HostStats, WorldState
    from dockwarden.reconcile.drift import detect_drift, merge_disk_drifts

    now = datetime(2026, 11, 21, tzinfo=timezone.utc)
    full = dict(total_bytes=100, used_bytes=95, free_bytes=5, percent=95.0, mountpoint="/")
    host = HostStats(cpu_percent=1, cpu_count=2, load1=0, load5=0, load15=0, mem_total_bytes=10 ** 10,
                     mem_available_bytes=10 ** 10, swap_total_bytes=0, swap_used_bytes=0,
                     disks=(DiskUsage(path="/", **full), DiskUsage(path="/var/lib/docker", **full)))
    world = WorldState(node="n", observed_at=now, host=host)
    drifts = detect_drift(DesiredState(node="n"), world, {}, {}, Policy(), now=now)
    assert [d.subject for d in drifts] == ["host:disk:/"]
    storage = Drift(DriftKind.RESOURCE_PRESSURE, "host:storage:/var/lib/docker",
                    details={"resource": "disk", "level": "critical", "path": "/"})
    assert [d.subject for d in merge_disk_drifts(drifts + [storage])] == ["host:storage:/var/lib/docker"]
    other_fs = Drift(DriftKind.RESOURCE_PRESSURE, "host:storage:/srv/docker",
                     details={"resource": "disk", "level": "critical", "path": "/srv"})
    assert len(merge_disk_drifts(drifts + [other_fs])) == 2
