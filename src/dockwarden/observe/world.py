"""Assemble, update and write the world state of one node.

``observe_world`` is the one call a reconcile pass makes to read the world: host
resources (psutil) plus every container (engine). ``world.json`` in the state dir
is its JSON form (design.md: filesystem-first, inspectable with ``jq``).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from pathlib import Path

from dockwarden import jsonfile, model
from dockwarden.observe.docker import ENGINE_ERRORS, ContainerObserver
from dockwarden.observe.host import HostSampler
from dockwarden.redact import public_spec


def observe_world(observer: ContainerObserver, sampler: HostSampler | None, *, node: str, now: datetime,
                  with_stats: bool = True, docker_root_dir: str | None = None,
                  incremental: bool = False, named: Collection[str] = (),
                  sparse: Callable[[list[model.ContainerState]], Collection[str]] | None = None) -> model.WorldState:
    """Observe the host and all containers of its engine.

    Args:
        observer: the engine's container observer.
        sampler: the host sampler (keeps the CPU baseline between passes); None
            for a remote engine, whose host this process cannot measure (``host`` None).
        node: node name written into the snapshot.
        now: the observation time (aware UTC), becomes ``observed_at``.
        with_stats: read fresh per-container CPU/memory (see
            ``ContainerObserver.observe``).
        docker_root_dir: the engine's root dir; None asks the engine once
            (``ContainerObserver.root_dir``, cached).
        incremental: inspect only containers the list call shows changed
            (``ContainerObserver.observe``).
        named: ids or names engine events named since the last pass: always
            inspected (``observe.docker.plan_inspection``).
        sparse: running containers with nothing wrong in their status are built
            from the list, except those this names (``ContainerObserver.observe``).
    Returns:
        model.WorldState: host stats over ``["/", docker_root_dir]`` and the
        containers sorted by name. If the engine is unreachable (any of
        ``ENGINE_ERRORS``), ``engine_ok`` is False, ``engine_error`` says why
        and ``containers`` is empty; host stats are still filled.
    Raises:
        Nothing from the engine; psutil errors only on a broken /proc.
    """
    root = docker_root_dir or observer.root_dir()
    host = sampler.sample(["/", root]) if sampler is not None else None
    try:
        containers = observer.observe(with_stats=with_stats, incremental=incremental, named=named, sparse=sparse)
    except ENGINE_ERRORS as e:
        return model.WorldState(node=node, observed_at=now, host=host, containers=(),
                                engine_ok=False, engine_error=f"{type(e).__name__}: {e}",
                                docker_root_dir=root)
    return model.WorldState(node=node, observed_at=now, host=host, containers=tuple(containers),
                            engine_ok=True, engine_error=None, docker_root_dir=root)


def resample(world: model.WorldState, observer: ContainerObserver, sampler: HostSampler | None, *,
             now: datetime) -> model.WorldState:
    """The same observation with fresh host and container figures: CPU % over the
    interval since ``world`` was observed (its counters were the first sample).

    No list and no inspect: ``once`` reads the counters twice, 0.25 s apart,
    instead of observing twice (issue 9).

    Args:
        world: an observation made with stats (its engine reachable).
        observer: the observer that made it.
        sampler: the host sampler that made it, or None (remote engine).
        now: becomes ``observed_at``.
    Returns:
        model.WorldState: a copy; ``engine_ok`` False with the error when the stats
        API (a remote engine) fails meanwhile.
    """
    host = sampler.sample(["/", world.docker_root_dir]) if sampler is not None else world.host
    try:
        containers = tuple(observer.restat(world.containers))
    except ENGINE_ERRORS as e:
        return dataclasses.replace(world, observed_at=now, host=host, containers=(), engine_ok=False,
                                   engine_error=f"{type(e).__name__}: {e}")
    return dataclasses.replace(world, observed_at=now, host=host, containers=containers)


#: A caller-owned memo for :func:`world_document`: container id -> (the container's
#: fields other than its usage figures, its document). A container not inspected
#: again keeps those fields from pass to pass; only its CPU/memory figures change, so
#: its document is built once (issue 9: 1 000 container documents a resync).
ContainerDocs = dict[str, tuple[tuple, dict]]


def world_document(world: model.WorldState, docs: ContainerDocs | None = None) -> dict:
    """The JSON form of a world state as it may leave the database (``world.json``).

    PURE (``docs`` is a memo: the result is the same with or without it).
    ``model.to_jsonable(world)`` with each container's ``spec`` passed through
    :func:`dockwarden.redact.public_spec`: environment values (``docker run -e
    SECRET=...``) are dropped, their names kept as ``environment_keys``. The full
    spec is kept only in the database's ``specs`` table, for ``recreate``.

    Args:
        world: the snapshot.
        docs: optional memo, reused across calls for the same node; a container's
            entry is used when its fields other than
            ``model.ContainerState.USAGE_FIELDS`` are equal (the same objects, for
            a container not inspected again); entries of containers no longer in
            ``world`` are dropped.
    Returns:
        dict: node, observed_at (RFC 3339 UTC), host, containers, engine_ok, ...
    """
    doc = model.to_jsonable(dataclasses.replace(world, containers=()))
    names, settled_of = _container_fields()
    usage = model.ContainerState.USAGE_FIELDS
    containers = []
    for c in world.containers:
        settled = settled_of(c)
        memo = docs.get(c.id) if docs is not None else None
        if memo is not None and memo[0] == settled:
            d = dict(memo[1])
        else:
            d = {n: model.to_jsonable(public_spec(c.spec) if n == "spec" else getattr(c, n)) for n in names}
            if docs is not None:
                docs[c.id] = (settled, d)
        for n in usage:
            d[n] = model.to_jsonable(getattr(c, n))
        containers.append(d)
    doc["containers"] = containers
    if docs is not None and len(docs) > len(world.containers):
        present = {c.id for c in world.containers}
        for cid in [k for k in docs if k not in present]:
            del docs[cid]
    return doc


@functools.cache
def _container_fields() -> tuple[tuple[str, ...], Callable[[model.ContainerState], tuple]]:
    """(every field name in order, a getter of the fields other than the usage figures)."""
    names = tuple(f.name for f in dataclasses.fields(model.ContainerState))
    return names, operator.attrgetter(*(n for n in names if n not in model.ContainerState.USAGE_FIELDS))


def write_world(world: model.WorldState, path: Path, *, docs: ContainerDocs | None = None) -> None:
    """Write a world state as JSON, atomically.

    :func:`dockwarden.jsonfile.write_atomic`: readers see the old
    or the new file, never half; the file is private (0600) whatever the umask.

    Args:
        world: the snapshot, written as :func:`world_document` (no environment
            values; datetimes RFC 3339 UTC).
        path: destination, e.g. ``<state dir>/world.json``; its directory must exist.
        docs: the memo of :func:`world_document` (a daemon keeps one per node).
    Raises:
        OSError: the directory is missing or not writable, or the disk is full
            (the temporary file is removed).
    """
    jsonfile.write_atomic(path, world_document(world, docs))


def replace_containers(world: model.WorldState, updated: Iterable[model.ContainerState],
                       removed: Iterable[str] = ()) -> model.WorldState:
    """A copy of ``world`` with some containers replaced, added or dropped.

    PURE. For event-driven passes: after ``inspect_one`` of the containers an
    event named, patch the cached snapshot instead of observing everything.

    Args:
        world: the cached snapshot.
        updated: fresh container states. Each replaces the container with the
            same id *or* the same name (a recreated container has a new id but
            its old name), or is added.
        removed: ids (full) or names of containers that no longer exist.
    Returns:
        model.WorldState: same node, host and ``observed_at``; containers sorted
        by name.
    """
    upd = list(updated)
    gone = set(removed)
    upd_ids = {c.id for c in upd}
    upd_names = {c.name for c in upd}
    kept = [c for c in world.containers
            if c.id not in gone and c.name not in gone
            and c.id not in upd_ids and c.name not in upd_names]
    fresh = [c for c in upd if c.id not in gone]
    merged = sorted(kept + fresh, key=lambda c: (c.name, c.id))
    return dataclasses.replace(world, containers=tuple(merged))


def unreported_changes(before: model.WorldState, after: model.WorldState, reported: set[str], *,
                       settle_s: float) -> list[str]:
    """Containers that changed between two full observations with no engine
    event about them: evidence that the event stream went silent.

    PURE. A container counts when its state or start time changed (or it was
    created after ``before``), no event named it (``reported``: container ids
    seen on the stream since ``before``), and the change is older than
    ``settle_s`` seconds at ``after.observed_at`` (an event about a very recent
    change may still be on its way).

    Args:
        before: the previous full observation.
        after: this full observation.
        reported: ids of containers the stream reported since ``before``.
        settle_s: how old an unreported change must be, seconds.
    Returns:
        list[str]: container names, sorted.
    """
    old = before.index.by_id
    cutoff = after.observed_at.timestamp() - settle_s
    missed = []
    for c in after.containers:
        if c.id in reported:
            continue
        prev = old.get(c.id)
        changed_at = max((t.timestamp() for t in (c.started_at, c.finished_at, c.created_at) if t), default=0.0)
        if prev is None:
            changed = c.created_at is not None and c.created_at > before.observed_at
        else:
            changed = prev.state != c.state or prev.started_at != c.started_at
        if changed and changed_at < cutoff:
            missed.append(c.name)
    return sorted(missed)
