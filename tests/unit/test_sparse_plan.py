"""issue 9, `once`: which running containers a sparse observation inspects all the
same (cli_status._must_inspect), against a real store."""

from __future__ import annotations

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
