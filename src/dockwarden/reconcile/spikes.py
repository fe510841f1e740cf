"""Resource spikes: sustained high CPU or memory, per container and for the host.

A sample over its threshold extends a streak; a spike is reported only after
``[spikes] sustained_samples`` consecutive samples (default 3) so one busy
second does not flap an incident (flatrun agent proposal, seed 003). Container
thresholds come from the policy or the labels ``dockwarden.cpu_spike`` /
``dockwarden.mem_spike`` (percent). Pure: the caller feeds one world state per
fresh stats sample and keeps the returned :class:`SpikeState`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from dockwarden.config_notify import Spikes
from dockwarden.model import ContainerState, Drift, DriftKind, WorldState

LABEL_CPU = "dockwarden.cpu_spike"
LABEL_MEM = "dockwarden.mem_spike"


@dataclass(frozen=True)
class SpikeState:
    """Consecutive over-threshold samples per (subject, metric)."""

    streaks: Mapping[tuple[str, str], int] = field(default_factory=dict)


def _label_pct(labels: Mapping[str, str], key: str) -> float | None:
    for k, v in labels.items():
        if k.lower() == key:
            try:
                f = float(v.strip().rstrip("%"))
            except ValueError:
                return None
            return f if f > 0 else None
    return None


def memory_percent(c: ContainerState, host_total_bytes: int | None) -> float | None:
    """Memory use as % of the container's limit, or of host RAM when it has none."""
    if c.memory_bytes is None:
        return None
    limit = c.memory_limit_bytes or host_total_bytes
    if not limit:
        return None
    return 100.0 * c.memory_bytes / limit


def update_spikes(state: SpikeState, world: WorldState, cfg: Spikes,
                  subjects: Mapping[str, str] | None = None) -> tuple[SpikeState, list[Drift]]:
    """Advance the streaks by one sample and report sustained spikes.

    Args:
        state: streaks after the previous sample.
        world: a world state with fresh stats (CPU % needs two samples).
        cfg: the ``[spikes]`` policy.
        subjects: container name -> subject (service name for tracked containers);
            others use the container name.
    Returns:
        (new state, ``resource_spike`` drifts for streaks >= ``sustained_samples``).
        Host subjects are ``host:cpu`` and ``host:memory``.
    """
    subjects = subjects or {}
    host_total = world.host.mem_total_bytes if world.host else None
    over: dict[tuple[str, str], dict] = {}
    usage: list[tuple[str, float, float | None]] = []
    for c in world.containers:
        if not c.running:
            continue
        subj = subjects.get(c.name, c.name)
        mem = memory_percent(c, host_total)
        usage.append((c.name, c.cpu_percent or 0.0, mem))
        cpu_t = _label_pct(c.labels, LABEL_CPU) or cfg.container_cpu_percent
        mem_t = _label_pct(c.labels, LABEL_MEM) or cfg.container_memory_percent
        if c.cpu_percent is not None and c.cpu_percent > cpu_t:
            over[(subj, "cpu")] = {"container": c.name, "value": c.cpu_percent, "threshold": cpu_t,
                                   "unit": "% of one core"}
        if mem is not None and mem > mem_t:
            over[(subj, "memory")] = {"container": c.name, "value": mem, "threshold": mem_t,
                                      "unit": "% of limit" if c.memory_limit_bytes else "% of host RAM"}
    h = world.host
    if h is not None:
        if h.cpu_percent is not None and h.cpu_percent > cfg.host_cpu_percent:
            over[("host:cpu", "cpu")] = {"container": None, "value": h.cpu_percent,
                                         "threshold": cfg.host_cpu_percent, "unit": "% of all cores"}
        if h.mem_total_bytes:
            used = 100.0 * (h.mem_total_bytes - h.mem_available_bytes) / h.mem_total_bytes
            if used > cfg.host_memory_percent:
                over[("host:memory", "memory")] = {"container": None, "value": used,
                                                   "threshold": cfg.host_memory_percent, "unit": "% of RAM"}
    streaks = {k: state.streaks.get(k, 0) + 1 for k in over}
    drifts = []
    for (subj, metric), info in sorted(over.items()):
        n = streaks[(subj, metric)]
        if n < cfg.sustained_samples:
            continue
        idx = 1 if metric == "cpu" else 2
        top = sorted((u for u in usage if u[idx] is not None), key=lambda u: -(u[idx] or 0))[: cfg.top_consumers]
        top_s = [f"{name} {vals[idx - 1]:.0f}%" for name, *vals in top]
        drifts.append(Drift(
            kind=DriftKind.RESOURCE_SPIKE, subject=subj, container=info["container"],
            reason=(f"{subj}: {metric} {info['value']:.0f} {info['unit']} for {n} samples "
                    f"(threshold {info['threshold']:g})"),
            details={"metric": metric, "value": round(info["value"], 1), "threshold": info["threshold"],
                     "samples": n, "top_consumers": top_s},
        ))
    return SpikeState(streaks=streaks), drifts
