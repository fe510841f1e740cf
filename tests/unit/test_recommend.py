"""recommend, recommend_all, start_order: diagnosis-led recommendations."""

from __future__ import annotations

import pytest
from builders import (
    MB,
    NOW,
    POLICY,
    container,
    desired,
    disk,
    drift,
    finding,
    history,
    host,
    spec,
    world,
)

from dockwarden.model import ActionKind as A
from dockwarden.model import DriftKind as K
from dockwarden.model import RecommendationType as T
from dockwarden.reconcile.assess import assess
from dockwarden.reconcile.drift import detect_drift
from dockwarden.reconcile.recommend import (
    config_error,
    permanent_failure,
    recommend,
    recommend_all,
    start_order,
)


def rec_for(c, kind=K.STOPPED, s=None, h=None, subject="web", **details):
    f = finding(drift(kind, subject, **details))
    return recommend(f, container=c, spec=s or spec(subject), history=h)


# --------------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize("code,text", [
    (127, "exit 127: command not found"),
    (126, "exit 126: command cannot be executed"),
])
def test_exit_126_127_blocked_diagnostics(code, text):
    r = rec_for(container("web", "exited", exit_code=code))
    assert (r.type, r.action) == (T.BLOCKED, A.DIAGNOSTICS)
    assert r.reason.startswith(f"web: {text}")
    assert "`dockwarden resume web`" in r.reason


def test_exit_127_keeps_the_engine_error_text():
    r = rec_for(container("web", "exited", exit_code=127, error='exec: "pg": executable file not found'))
    assert 'exit 127: command not found (exec: "pg": executable file not found)' in r.reason


@pytest.mark.parametrize("error", [
    'exec: "nope": executable file not found in $PATH',
    "open /app/config.yml: no such file or directory",
    "PERMISSION DENIED",
    "invalid mount config for type bind",
    "OCI runtime create failed: runc create failed",
    "starting container process caused: exec format",
])
def test_config_error_texts_block(error):
    r = rec_for(container("web", "created", exit_code=128, error=error))
    assert r.type is T.BLOCKED and error.strip() in r.reason


def test_config_error_helper():
    assert config_error(1, "oops") is None and config_error(0, None) is None
    assert config_error(127, None).startswith("exit 127")


def test_permanent_failure_helper():
    assert permanent_failure("No such image: foo:latest")
    assert permanent_failure("container exited with exit code 127")
    assert not permanent_failure("timeout waiting for engine")
    assert not permanent_failure(None)


# --------------------------------------------------------------------------- stopped


def test_stopped_nonzero_requires_start():
    r = rec_for(container("web", "exited", exit_code=1, error=""))
    assert (r.type, r.action) == (T.REQUIRED, A.START)
    assert "exit code 1" in r.reason and r.container == "web" and r.subject == "web"


def test_stopped_exit_zero_requires_start_and_says_clean():
    r = rec_for(container("web", "exited", exit_code=0))
    assert (r.type, r.action) == (T.REQUIRED, A.START) and "exited cleanly" in r.reason


def test_created_requires_start():
    r = rec_for(container("web", "created"))
    assert (r.type, r.action) == (T.REQUIRED, A.START) and "never started" in r.reason


def test_oom_start_with_limit_advice():
    c = container("web", "exited", exit_code=137, oom_killed=True, memory_limit_bytes=256 * MB)
    r = rec_for(c)
    assert (r.type, r.action) == (T.REQUIRED, A.START)
    assert r.advice == ("raise the memory limit (now 256 MiB)",)


def test_oom_without_limit_says_so():
    r = rec_for(container("web", "exited", exit_code=137, oom_killed=True))
    assert "no memory limit" in r.advice[0]


def test_oom_crash_loop_restarting_is_restart():
    c = container("web", "restarting", exit_code=137, oom_killed=True, memory_limit_bytes=64 * MB)
    r = rec_for(c, K.CRASH_LOOP, source="docker_restart_policy", restart_count=4)
    assert r.action is A.RESTART and r.advice == ("raise the memory limit (now 64 MiB)",)


def test_paused_is_advice_only():
    r = rec_for(container("web", "paused"), paused=True)
    assert (r.type, r.action) == (T.RECOMMENDED, A.DIAGNOSTICS) and "unpause" in r.reason


def test_stopped_without_container_uses_drift_details():
    r = rec_for(None, state="exited", exit_code=127)
    assert r.type is T.BLOCKED


# --------------------------------------------------------------------------- unhealthy, crash loop, failed deployment


def test_unhealthy_restart_with_streak_and_output():
    r = rec_for(container("web", health="unhealthy"), K.UNHEALTHY, health_failing_streak=5,
                health_last_output="curl: (7) refused\n")
    assert (r.type, r.action) == (T.REQUIRED, A.RESTART)
    assert "5 failing checks" in r.reason and "curl: (7) refused" in r.reason


def test_unhealthy_long_output_truncated():
    r = rec_for(container("web", health="unhealthy"), K.UNHEALTHY, health_failing_streak=3,
                health_last_output="x" * 5000)
    assert len(r.reason) < 400


@pytest.mark.parametrize("state,action", [("restarting", A.RESTART), ("running", A.RESTART),
                                          ("exited", A.START), ("dead", A.START)])
def test_crash_loop_action_by_state(state, action):
    r = rec_for(container("web", state, exit_code=1), K.CRASH_LOOP, source="history", attempts=3)
    assert (r.type, r.action) == (T.REQUIRED, action)


def test_crash_loop_of_bad_command_is_blocked():
    r = rec_for(container("web", "restarting", exit_code=127), K.CRASH_LOOP,
                source="docker_restart_policy")
    assert r.type is T.BLOCKED


def test_crash_loop_missing_container_uses_missing_rule():
    r = rec_for(None, K.CRASH_LOOP, s=spec("web", compose_project="shop", compose_file="/srv/shop/compose.yml"), source="history", attempts=3)
    assert r.action is A.COMPOSE_UP


def test_failed_deployment_permanent_blocks():
    h = history(failed_actions_in_row=1, last_failure="404 Client Error: No such image: web:2")
    r = rec_for(container("web", "exited"), K.FAILED_DEPLOYMENT, h=h)
    assert (r.type, r.action) == (T.BLOCKED, A.DIAGNOSTICS) and "No such image" in r.reason


@pytest.mark.parametrize("state,action", [("exited", A.START), ("running", A.RESTART)])
def test_failed_deployment_transient_repeats_action(state, action):
    h = history(failed_actions_in_row=1, last_failure="timeout")
    c = container("web", state, health="unhealthy" if state == "running" else None)
    r = rec_for(c, K.FAILED_DEPLOYMENT, h=h)
    assert (r.type, r.action) == (T.REQUIRED, action)


# --------------------------------------------------------------------------- dependencies, missing


def test_dependency_down_delays_and_names_it():
    r = rec_for(container("web", "exited"), K.DEPENDENCY_UNAVAILABLE, dependencies=["db"],
                unknown=[], stopped_by_intent=[], dependant_running=False)
    assert (r.type, r.action) == (T.REQUIRED, A.DELAY)
    assert "waiting for db to be running and healthy" in r.reason


def test_dependency_with_running_dependant_is_diagnostics():
    r = rec_for(container("web"), K.DEPENDENCY_UNAVAILABLE, dependencies=["db"], unknown=["db"],
                dependant_running=True)
    assert (r.type, r.action) == (T.RECOMMENDED, A.DIAGNOSTICS)
    assert any("not a tracked service" in a for a in r.advice)


def test_missing_compose_recreate_blocked():
    assert rec_for(None, K.MISSING, s=spec("web", compose_project="p", compose_file="/srv/p/c.yml")).action is A.COMPOSE_UP
    r = rec_for(None, K.MISSING, h=history(recorded_spec={"Image": "x"}))
    assert (r.type, r.action) == (T.REQUIRED, A.RECREATE)
    r = rec_for(None, K.MISSING, h=history())
    assert (r.type, r.action) == (T.BLOCKED, A.DIAGNOSTICS) and "no recorded spec" in r.reason


def test_missing_prefers_compose_over_recorded_spec():
    r = rec_for(None, K.MISSING, s=spec("web", compose_project="p", compose_file="/srv/p/c.yml"),
                h=history(recorded_spec={"a": 1}))
    assert r.action is A.COMPOSE_UP


# --------------------------------------------------------------------------- host and untracked


def test_memory_pressure_lists_top_consumers():
    f = finding(drift(K.RESOURCE_PRESSURE, "host:memory", resource="memory"))
    r = recommend(f, container=None, spec=None, history=None,
                  top_consumers=[("big", 900 * MB), ("small", 10 * MB)])
    assert (r.type, r.action) == (T.RECOMMENDED, A.DIAGNOSTICS)
    assert r.advice == ("top memory consumers:", "big: 900 MiB", "small: 10 MiB")


@pytest.mark.parametrize("level", ["warn", "critical"])
def test_disk_pressure_recommends_prune(level):
    f = finding(drift(K.RESOURCE_PRESSURE, "host:disk:/", resource="disk", level=level, path="/"))
    r = recommend(f, container=None, spec=None, history=None)
    assert (r.type, r.action) == (T.RECOMMENDED, A.PRUNE)


def test_untracked_never_required_nor_blocked():
    f = finding(drift(K.STOPPED, "stray", tracked=False))
    r = recommend(f, container=container("stray", "exited"), spec=None, history=None)
    assert (r.type, r.action) == (T.RECOMMENDED, A.START)
    r = recommend(f, container=container("stray", "exited", exit_code=127), spec=None, history=None)
    assert (r.type, r.action) == (T.RECOMMENDED, A.DIAGNOSTICS)
    f = finding(drift(K.UNHEALTHY, "stray", tracked=False, health_failing_streak=3))
    r = recommend(f, container=container("stray", health="unhealthy"), spec=None, history=None)
    assert (r.type, r.action) == (T.RECOMMENDED, A.RESTART)


# --------------------------------------------------------------------------- recommend_all


def all_for(d, w, hist=None):
    findings = assess(detect_drift(d, w, {}, hist or {}, POLICY, now=NOW), POLICY)
    return recommend_all(findings, world=w, desired=d, histories=hist or {})


def test_one_per_subject_delay_beats_crash_loop_and_stopped():
    d = desired(spec("web", depends_on=("db",)), spec("db"))
    w = world(container("web", "exited"), container("db", "exited"))
    recs = all_for(d, w, {"web": history(attempts=5)})
    assert [(r.subject, r.action, r.finding.drift.kind) for r in recs] == [
        ("db", A.START, K.STOPPED), ("web", A.DELAY, K.DEPENDENCY_UNAVAILABLE)]


def test_blocked_beats_delay():
    d = desired(spec("web", depends_on=("db",)), spec("db"))
    w = world(container("web", "exited", exit_code=127), container("db", "exited"))
    [_, web] = all_for(d, w)
    assert (web.type, web.action, web.finding.drift.kind) == (T.BLOCKED, A.DIAGNOSTICS, K.STOPPED)


def test_crash_loop_and_failed_deployment_beat_stopped_and_missing():
    d = desired(spec("web"), spec("api", compose_project="p", compose_file="/srv/p/c.yml"))
    w = world(container("web", "exited"))
    h = {"web": history(attempts=3), "api": history("api", failed_actions_in_row=1, last_failure="busy")}
    by = {r.subject: r for r in all_for(d, w, h)}
    assert by["web"].finding.drift.kind is K.CRASH_LOOP and by["web"].action is A.START
    assert by["api"].finding.drift.kind is K.FAILED_DEPLOYMENT and by["api"].action is A.COMPOSE_UP


def test_stopped_beats_unhealthy_hand_built():
    d = desired(spec("web"))
    w = world(container("web", "exited"))
    fs = [finding(drift(K.UNHEALTHY, health_failing_streak=1)), finding(drift(K.STOPPED))]
    [r] = recommend_all(fs, world=w, desired=d, histories={})
    assert r.finding.drift.kind is K.STOPPED


def test_missing_beats_stopped_hand_built():
    d = desired(spec("web", compose_project="p", compose_file="/srv/p/c.yml"))
    fs = [finding(drift(K.STOPPED, state="exited", exit_code=1)), finding(drift(K.MISSING))]
    [r] = recommend_all(fs, world=world(), desired=d, histories={})
    assert r.action is A.COMPOSE_UP


def test_order_host_then_dependency_order_then_untracked():
    d = desired(spec("a-web", depends_on=("m-api",)), spec("m-api", depends_on=("z-db",)), spec("z-db"))
    w = world(container("a-web", "exited"), container("m-api", "exited"), container("z-db", "exited"),
              container("b-stray", "exited"), container("a-stray", "exited"),
              host_stats=host(available=MB, disks=(disk("/", 99.0),)))
    fs = [finding(drift(K.STOPPED, n)) for n in ("a-web", "m-api", "z-db")]
    fs += [finding(drift(K.STOPPED, n, tracked=False)) for n in ("b-stray", "a-stray")]
    fs += [finding(drift(K.RESOURCE_PRESSURE, "host:disk:/", resource="disk", level="critical")),
           finding(drift(K.RESOURCE_PRESSURE, "host:memory", resource="memory"))]
    recs = recommend_all(fs, world=w, desired=d, histories={})
    assert [r.subject for r in recs] == [
        "host:memory", "host:disk:/", "z-db", "m-api", "a-web", "a-stray", "b-stray"]


def test_recommend_all_memory_advice_from_world():
    w = world(container("a", memory_bytes=100 * MB), container("b", memory_bytes=700 * MB),
              container("c"), host_stats=host(available=MB))
    [r] = all_for(desired(spec("a"), spec("b"), spec("c")), w)
    assert r.advice == ("top memory consumers:", "b: 700 MiB", "a: 100 MiB")


def test_start_order_topological_ties_by_name():
    d = desired(spec("web", depends_on=("api", "cache")), spec("api", depends_on=("db",)),
                spec("db"), spec("cache"), spec("alone"))
    assert start_order(d) == ["alone", "cache", "db", "api", "web"]


def test_start_order_cycles_broken_deterministically():
    d = desired(spec("b", depends_on=("a",)), spec("a", depends_on=("b",)),
                spec("c", depends_on=("a",)), spec("self", depends_on=("self", "ghost")))
    order = start_order(d)
    assert order == ["self", "a", "b", "c"]
    assert start_order(desired(*reversed(list(d.services.values())))) == order


def test_start_order_big_cycle_each_once():
    names = [f"s{i:02d}" for i in range(20)]
    d = desired(*(spec(n, depends_on=(names[(i + 1) % 20],)) for i, n in enumerate(names)))
    order = start_order(d)
    assert sorted(order) == names and len(order) == 20


def recommend_all_example():
    """Recommendations for several subjects and a host finding (run in other
    interpreters by hashseed)."""
    d = desired(spec("web", depends_on=("db",)), spec("db"), spec("api", compose_project="p"))
    w = world(container("web", "exited"), container("db", "exited", exit_code=127),
              container("x", health="unhealthy"), host_stats=host(available=MB))
    return all_for(d, w, {"web": history(attempts=4)})


def test_recommend_all_deterministic():
    from hashseed import assert_same_across_hash_seeds

    recs = recommend_all_example()
    assert len({r.subject for r in recs}) >= 4, recs  # several subjects: their order is what is compared
    assert_same_across_hash_seeds("test_recommend", "recommend_all_example")


def test_missing_compose_without_inventory_file_recommends_the_command_only():
    """Compose files come from the inventory only: a container's labels are chosen
    by whoever creates it, so without compose_file dockwarden does not run compose."""
    labels = {"com.docker.compose.project.config_files": "/tmp/evil.yml"}
    r = rec_for(None, K.MISSING, s=spec("web", compose_project="p"), h=history(recorded_spec={"labels": labels}))
    assert r.action is A.DIAGNOSTICS and r.type is T.RECOMMENDED
    assert "docker compose -p p -f /tmp/evil.yml up -d --no-deps web" in r.reason
    assert "compose_file" in r.reason


def test_running_against_intent_stops_only_for_the_operators_dockwarden_stop():
    cli = rec_for(container("web"), K.RUNNING_AGAINST_INTENT, intent_source="cli")
    assert cli.action is A.STOP and cli.type is T.REQUIRED
    inv = rec_for(container("web"), K.RUNNING_AGAINST_INTENT, intent_source="inventory")
    assert inv.action is A.DIAGNOSTICS and inv.type is T.RECOMMENDED
