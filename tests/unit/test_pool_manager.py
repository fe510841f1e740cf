"""The Pool API and the daemon's pool worker over an in-memory engine.

``MemoryEngine`` has the interface of ``pool.engine.PoolEngine`` and keeps
containers in a dict, so the rules above the engine (labels, secrets as
mounts, replacement, min, cleanup, dispatch outcomes, events) are checked
without Docker; the e2e tests check the same against the real engine.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dockwarden.config import Policy, Settings
from dockwarden.config_pool import PoolSettings
from dockwarden.model import Mode
from dockwarden.pool.engine import EngineContainer, SpawnSpec
from dockwarden.pool.errors import PoolInputError, PoolRefused
from dockwarden.pool.manager import Pool
from dockwarden.pool.worker import PoolWorker
from dockwarden.worker import WorkerContext


class MemoryEngine:
    """Containers in a dict; ``exec_codes`` gives the exit code per container name."""

    def __init__(self) -> None:
        self.containers: dict[str, EngineContainer] = {}
        self.specs: dict[str, SpawnSpec] = {}
        self.execs: list[tuple[str, list[str]]] = []
        self.fail_create = False
        self.die_on_start = False
        self.probe_ok = True
        self.n = 0

    def list(self):
        return dict(self.containers)

    def names_in_use(self, prefix):
        return {n for n in self.containers if n.startswith(prefix)}

    def create_and_start(self, spec: SpawnSpec) -> str:
        if self.fail_create:
            raise PoolInputError(f"image: {spec.image!r} is not on this engine")
        self.n += 1
        cid = f"{self.n:064x}"
        state, code = ("exited", 0) if self.die_on_start else ("running", None)
        self.containers[spec.name] = EngineContainer(cid, spec.name, state, None, code, "10.0.0.2")
        self.specs[spec.name] = spec
        return cid

    def remove(self, name):
        return self.containers.pop(name, None) is not None

    def kill(self, name, code=137):
        c = self.containers[name]
        self.containers[name] = EngineContainer(c.id, name, "exited", None, code, None)

    def exec_stream(self, name, argv, on_stdout, on_stderr):
        self.execs.append((name, argv))
        on_stdout(b"out\n")
        return int(argv[-1]) if argv[-1].lstrip("-").isdigit() else 0

    def probe_command(self, name, argv, timeout_s):
        return (True, "ok") if self.probe_ok else (False, "health command exited 1")

    @staticmethod
    def probe_http(ip, port, path, timeout_s):
        return True, "ok"

    def close(self):
        pass


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


SETTINGS = PoolSettings(image="img:1", command=["sleep", "3600"], prefix="w", max=3,
                        labels={"team": "a"}, env={"MODE": "worker"})


@pytest.fixture
def env(tmp_path: Path):
    engine, clock, events = MemoryEngine(), Clock(), []
    pool = Pool(tmp_path, SETTINGS, node="n1", emit=lambda e: events.append(e) or True, engine=engine, clock=clock)
    yield pool, engine, clock, events
    pool.close()


def types(events) -> list[str]:
    return [e.type.value for e in events]


def test_spawn_labels_and_secrets_as_read_only_files(env, tmp_path: Path, monkeypatch) -> None:
    pool, engine, _, events = env
    monkeypatch.setenv("TOKEN_VAR", "s3cret-value")
    c = pool.spawn(settings=SETTINGS.model_copy(update={"secrets": {"token": "TOKEN_VAR"}}))
    spec = engine.specs[c.name]
    assert c.name == "w-1" and c.status == "healthy"
    assert spec.labels == {"team": "a", "dockwarden.pool": "w", "dockwarden.managed": "true"}
    assert spec.env == {"MODE": "worker"}
    assert "s3cret-value" not in repr(spec)  # only the file path goes to the engine
    (src, target, ro), = spec.mounts
    assert target == "/run/secrets/token" and ro and Path(src).read_text() == "s3cret-value"
    assert types(events) == ["pool_spawned"]


def test_spawn_refuses_beyond_max_and_without_image(env) -> None:
    pool, engine, _, _ = env
    for _ in range(3):
        pool.spawn()
    with pytest.raises(PoolRefused, match="pool is full: 3 of max 3"):
        pool.spawn()
    assert len(engine.containers) == 3
    with pytest.raises(PoolInputError, match="^image: the pool has no image"):
        pool.spawn(settings=PoolSettings())
    with pytest.raises(PoolInputError, match="^name: expected"):
        pool.spawn("bad name")


def test_failed_spawn_releases_its_slot(env) -> None:
    pool, engine, _, events = env
    engine.fail_create = True
    with pytest.raises(PoolInputError):
        pool.spawn()
    assert pool.list() == [] and types(events) == ["pool_spawn_failed"]
    engine.fail_create = False
    assert pool.spawn().name == "w-1"


def test_killed_container_is_unhealthy_its_dispatch_closed_and_replaced(env) -> None:
    pool, engine, _, events = env
    pool.spawn(), pool.spawn()
    c, d = pool.select()
    engine.kill(c.name)
    results = {r.name: r for r in pool.health()}
    assert results[c.name].status == "unhealthy" and "exited, exit code 137" in results[c.name].reason
    assert pool.db.dispatch(d.id).outcome == "failed"  # it cannot finish in a dead container
    pairs = pool.replace_dead()
    assert [(old.name, new.name) for old, new in pairs] == [(c.name, c.name)]
    assert engine.containers[c.name].state == "running" and engine.containers[c.name].id != c.docker_id
    assert types(events)[-4:] == ["pool_unhealthy", "pool_destroyed", "pool_spawned", "pool_replaced"]
    assert pool.status()["live"] == 2


def test_a_running_container_failing_its_probe_is_replaced_after_three_intervals(env) -> None:
    pool, engine, clock, _ = env
    pool.settings = SETTINGS.model_copy(update={"health_command": ["check"], "health_interval_s": 10})
    c = pool.spawn()
    engine.probe_ok = False
    clock.advance(11)  # past the starting grace
    assert pool.health()[0].status == "unhealthy"
    assert pool.replace_dead() == []  # running: its probe may recover
    clock.advance(29)
    pool.health()
    assert pool.replace_dead() == []
    clock.advance(1)  # 3 intervals unhealthy (kubelet: liveness failureThreshold 3)
    pool.health()
    engine.probe_ok = True
    assert [old.name for old, _ in pool.replace_dead()] == [c.name]


def test_a_spawn_in_progress_is_not_taken_for_vanished(env) -> None:
    pool, _, clock, _ = env
    row = pool.db.reserve(name=None, prefix="w", image="img:1", host="n1", max_n=3, taken=set(), now=clock())
    assert pool.health() == []  # another process is creating it
    clock.advance(121)  # that spawn died long ago
    assert [(r.name, r.status) for r in pool.health()] == [(row.name, "failed")]


def test_destroyed_while_being_spawned(env, monkeypatch) -> None:
    pool, engine, _, _ = env
    real = engine.create_and_start

    def create_then_destroyed(spec):
        cid = real(spec)
        pool.destroy(spec.name)  # e.g. `pool destroy` from another process, mid-spawn
        engine.containers[spec.name] = engine.containers.get(spec.name) or EngineContainer(
            cid, spec.name, "running", None, None, None)  # the engine created it after the remove
        return cid

    monkeypatch.setattr(engine, "create_and_start", create_then_destroyed)
    with pytest.raises(PoolRefused, match="destroyed while it was being spawned"):
        pool.spawn()
    assert engine.containers == {}


def test_vanished_container_becomes_failed(env) -> None:
    pool, engine, _, events = env
    c = pool.spawn()
    engine.containers.pop(c.name)
    assert pool.health()[0].status == "failed"
    assert types(events)[-1] == "pool_unhealthy"
    assert pool.health()[0].status == "failed" and types(events).count("pool_unhealthy") == 1  # on change only


def test_ensure_min_and_cleanup_keep_min(env) -> None:
    pool, engine, clock, events = env
    pool.settings = SETTINGS.model_copy(update={"min": 2, "idle_timeout": 60})
    assert [c.name for c in pool.ensure_min()] == ["w-1", "w-2"]
    assert pool.ensure_min() == []
    pool.spawn()
    clock.advance(61)
    assert [c.name for c in pool.cleanup(dry_run=True)] == ["w-1"]
    assert len(engine.containers) == 3  # dry run changed nothing
    assert [c.name for c in pool.cleanup()] == ["w-1"]
    assert sorted(engine.containers) == ["w-2", "w-3"] and types(events)[-1] == "pool_destroyed"


def test_dispatch_uses_the_selected_container_and_records_the_exit_code(env) -> None:
    pool, engine, _, _ = env
    pool.spawn(), pool.spawn()
    out = bytearray()
    d = pool.dispatch(["sh", "-c", "exit 3", "3"], task_id="t1", on_stdout=out.extend, on_stderr=out.extend)
    assert engine.execs == [(d.container, ["sh", "-c", "exit 3", "3"])]
    assert (d.outcome, d.exit_code, d.task_id, bytes(out)) == ("failed", 3, "t1", b"out\n")
    assert d.completed_at is not None
    d2 = pool.dispatch(["true", "0"], on_stdout=out.extend, on_stderr=out.extend)
    assert d2.container != d.container and d2.outcome == "ok"  # least recently dispatched first
    d3 = pool.dispatch(["x", "42"], on_stdout=out.extend, on_stderr=out.extend, rate_limited_exit=42)
    assert d3.outcome == "rate_limited" and pool.db.by_id(d3.container_id).status == "rate_limited"


@pytest.mark.parametrize("bad", ["abc", "0", "-5", "1.5", "", " "])
def test_rate_limit_seconds_are_validated_and_nothing_changes(env, bad: str) -> None:
    pool, _, _, events = env
    c = pool.spawn()
    before = pool.list()
    with pytest.raises(PoolInputError) as e:
        pool.rate_limit(c.name, "set", bad)
    assert str(e.value) == f"seconds: expected a positive integer, got {bad!r}"
    assert pool.list() == before and types(events) == ["pool_spawned"]


def test_rate_limit_by_name_and_complete_validation(env) -> None:
    pool, _, clock, _ = env
    c = pool.spawn()
    assert pool.rate_limit(c.name, "set", "30").rate_limit_until == clock.now + timedelta(seconds=30)
    assert pool.rate_limit(c.name, "clear").status == "healthy"
    with pytest.raises(PoolInputError, match="^action: expected set or clear"):
        pool.rate_limit(c.name, "sett")
    with pytest.raises(PoolInputError, match="^outcome: expected one of OK, failed, rate_limited, got 'meh'"):
        pool.complete(1, "meh")
    _, d = pool.select()
    assert pool.complete(str(d.id), "OK").outcome == "ok"


def _ctx(tmp_path: Path, policy: Policy, events: list) -> WorkerContext:
    return WorkerContext(settings=Settings(state_dir=tmp_path, inventory=None, policy_path=None, node="n1"),
                         node="n1", policy=lambda: policy, mode=lambda: Mode.AUTO, world=lambda: None,
                         emit=lambda e: events.append(e) or True, wake=lambda: None)


def test_worker_keeps_min_and_replaces_a_killed_container(tmp_path: Path) -> None:
    events: list = []
    policy = Policy(pool=SETTINGS.model_copy(update={"min": 2}))
    engine = MemoryEngine()
    w = PoolWorker()
    w.ctx = _ctx(tmp_path, policy, events)
    w.pool = Pool(tmp_path, policy.pool, node="n1", emit=w.ctx.emit, engine=engine)
    w.tick()
    assert sorted(engine.containers) == ["w-1", "w-2"]
    engine.kill("w-1")
    w.tick()
    assert engine.containers["w-1"].state == "running" and "pool_replaced" in types(events)
    assert w.interval_s() == 30.0
    w.stop()


def test_worker_backs_off_when_replacements_keep_dying(tmp_path: Path) -> None:
    events: list = []
    policy = Policy(pool=SETTINGS.model_copy(update={"min": 1}))
    engine = MemoryEngine()
    engine.die_on_start = True  # an image whose command exits at once
    w = PoolWorker()
    w.ctx = _ctx(tmp_path, policy, events)
    w.pool = Pool(tmp_path, policy.pool, node="n1", emit=w.ctx.emit, engine=engine)
    for _ in range(5):
        w.tick()
    # Spawned at tick 1, replaced at ticks 2 and 3; dead again after its replacement: back off (30 s, 60 s ...).
    assert types(events).count("pool_replaced") == 2
    assert w._spawn_failures == 1
    w.stop()


def test_worker_idles_without_an_image(tmp_path: Path) -> None:
    w = PoolWorker()
    w.ctx = _ctx(tmp_path, Policy(), [])
    w.tick()
    assert w.pool is None and not (tmp_path / "dockwarden.db").exists()
