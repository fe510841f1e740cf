"""issue 9, `once`: which running containers a sparse observation inspects all the
same (cli_status._must_inspect), against a real store."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from builders import ago, container, desired, spec

from dockwarden.cli_status import _must_inspect
from dockwarden.config import Policy
from dockwarden.model import ActionKind, ActionRecord
from dockwarden.store import Store


def test_tracked_containers_without_a_spec_recorded_since_their_creation_are_inspected(tmp_path):
    store = Store(tmp_path / "db", "local")
    inv = desired(spec("old", container="old"), spec("new", container="new"), spec("never", container="never"),
                  spec("busy", container="busy"))
    light = [container("old", created_at=ago(3600)), container("new", created_at=ago(10)),
             container("never", created_at=ago(3600)), container("busy", created_at=ago(3600)),
             container("stray", created_at=ago(10))]  # untracked: never needs its spec
    for name in ("old", "new", "busy"):
        store.put_spec(name, name, {"image": "i", "name": name}, ago(600))  # recorded 10 minutes ago
    store.begin_action(ActionRecord(uid="a-1", service="busy", container="busy", container_id="id-busy",
                                    action=ActionKind.RESTART, started_at=ago(1), deadline_at=ago(-60)))
    plan = _must_inspect(inv, Policy(), store)
    # old: spec recorded after it was created -> listed only; new: created after the
    # recording (a recreate) -> inspected; never: no spec -> inspected; busy: a verdict pending.
    assert sorted(plan(light)) == ["id-busy", "id-never", "id-new"]


def test_a_recreate_with_the_same_spec_is_inspected_once_then_listed_only(tmp_path):
    """A container recreated with the same options has the recorded spec: once a pass
    has inspected it, the record stands for it too (Store.touch_spec) and the next
    sparse `once` lists it only. Before, the unchanged spec was never written again,
    so every `once` inspected that container for ever."""
    from builders import NOW, world

    from dockwarden.model import Mode
    from dockwarden.pipeline import Reconciler

    store = Store(tmp_path / "db", "local")
    the_spec = {"image": "i", "name": "web"}
    store.put_spec("web", "web", dict(the_spec), ago(600))
    inv = desired(spec("web", container="web"))
    recreated = container("web", id="id-web-2", created_at=ago(10), spec=dict(the_spec))
    plan = _must_inspect(inv, Policy(), store)
    assert plan([dataclasses.replace(recreated, spec=None)]) == ["id-web-2"]  # created after the record
    rec = Reconciler(store=store, events=None, executor=None, policy=Policy(), desired=inv, mode=Mode.OBSERVE)
    rec.run_pass(world(recreated), now=NOW)  # the pass that inspected it
    assert store.spec_times()["web"] >= recreated.created_at
    assert store.specs()["web"] == the_spec
    assert _must_inspect(inv, Policy(), store)([dataclasses.replace(recreated, spec=None)]) == []
    # and a spec that did change is recorded as before
    changed = dataclasses.replace(recreated, id="id-web-3", created_at=NOW + timedelta(seconds=5),
                                  spec={"image": "i:2", "name": "web"})
    rec.run_pass(world(changed), now=NOW + timedelta(seconds=6))
    assert store.specs()["web"] == {"image": "i:2", "name": "web"}
