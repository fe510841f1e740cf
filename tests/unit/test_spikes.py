from datetime import datetime, timezone

from dockwarden.config_notify import Spikes
from dockwarden.model import ContainerState, HostStats, WorldState
from dockwarden.reconcile.spikes import SpikeState, memory_percent, update_spikes

T0 = datetime(2026, 11, 21, tzinfo=timezone.utc)
GiB = 1024 ** 3


def world(cpu=0.0, mem=None, limit=None, labels=None, host_cpu=10.0, host_avail=8 * GiB, extra=()):
    cs = [ContainerState(id="1", name="burn", image="i", state="running", cpu_percent=cpu, memory_bytes=mem,
                         memory_limit_bytes=limit, labels=labels or {}), *extra]
    host = HostStats(cpu_percent=host_cpu, cpu_count=2, load1=0, load5=0, load15=0, mem_total_bytes=16 * GiB,
                     mem_available_bytes=host_avail, swap_total_bytes=0, swap_used_bytes=0)
    return WorldState(node="n", observed_at=T0, host=host, containers=tuple(cs))


def run(n, w, cfg=Spikes(), subjects=None):
    st, drifts = SpikeState(), []
    for _ in range(n):
        st, drifts = update_spikes(st, w, cfg, subjects)
    return st, drifts


def test_spike_needs_sustained_samples():
    assert run(2, world(cpu=180.0))[1] == []
    (d,) = run(3, world(cpu=180.0), subjects={"burn": "svc"})[1]
    assert d.subject == "svc" and d.container == "burn" and d.details["metric"] == "cpu"
    assert d.details["samples"] == 3 and "180" in d.reason
    assert d.details["top_consumers"][0].startswith("burn 180")


def test_one_quiet_sample_resets_the_streak():
    st, _ = run(2, world(cpu=180.0))
    st, _ = update_spikes(st, world(cpu=5.0), Spikes())
    st, drifts = update_spikes(st, world(cpu=180.0), Spikes())
    assert drifts == [] and st.streaks[("burn", "cpu")] == 1


def test_label_overrides_threshold_and_bad_label_is_ignored():
    assert run(3, world(cpu=50.0, labels={"dockwarden.cpu_spike": "40"}))[1]
    assert not run(3, world(cpu=50.0, labels={"DockWarden.CPU_Spike": "nope"}))[1]


def test_memory_of_limit_or_host():
    c = ContainerState(id="1", name="m", image="i", state="running", memory_bytes=95, memory_limit_bytes=100)
    assert memory_percent(c, 10_000) == 95
    c2 = ContainerState(id="1", name="m", image="i", state="running", memory_bytes=95)
    assert memory_percent(c2, 1000) == 9.5
    (d,) = run(3, world(mem=95 * 1024 ** 2, limit=100 * 1024 ** 2))[1]
    assert d.details["metric"] == "memory"


def test_host_cpu_and_memory_spikes():
    drifts = run(3, world(host_cpu=97.0, host_avail=GiB))[1]
    assert {d.subject for d in drifts} == {"host:cpu", "host:memory"}


def test_stopped_containers_do_not_spike():
    stopped = ContainerState(id="2", name="x", image="i", state="exited", cpu_percent=500.0)
    assert [d.subject for d in run(3, world(extra=(stopped,)))[1]] == []
