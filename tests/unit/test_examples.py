"""The files a new user runs as is (examples/) load, and document every key.

``examples/policy.toml`` must name every field of :class:`dockwarden.config.Policy`
(recursively through its tables) and hold the built-in defaults, since it says it
does. The maintenance window is a commented-out example: it is checked by
uncommenting it. ``examples/inventory`` must load with the inventory loader and
mention every field of a service entry.
"""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from dockwarden.config import Policy, load_policy

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "examples" / "policy.toml"
INVENTORY = REPO / "examples" / "inventory"
SERVICES = INVENTORY / "hosts" / "demo" / "services.yaml"

#: Policy fields that are not keys of the file: ``extra`` collects the tables of
#: later features (storage, notify, pool...) as read.
NOT_KEYS = {("extra",)}

#: Commented-out example blocks: "# [[guardrails.maintenance]]", "# [[notify.channel]]"
#: ... and the "# key = value" lines right after each.
_EXAMPLE_HEADER = re.compile(r"^#\s?(\[\[[a-z_]+\.[a-z_]+\]\])\s*$")
_EXAMPLE_LINE = re.compile(r"^#\s?([a-z_]+\s*=.*)$")


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(model class, is_list) if the annotation is a model or a list of models."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if typing.get_origin(annotation) is list:
        (arg,) = typing.get_args(annotation)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, True
    return None, False


def _missing_keys(model: type[BaseModel], data: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Dotted paths of the model's fields that are not keys of ``data``."""
    missing = []
    for name, field in model.model_fields.items():
        here = (*path, name)
        if here in NOT_KEYS:
            continue
        if not isinstance(data, dict) or name not in data:
            missing.append(".".join(here))
            continue
        sub, is_list = _model_of(field.annotation)
        if sub is None:
            continue
        value = data[name]
        if is_list:
            if not value:
                missing.append(".".join(here) + "[] (needs an example entry)")
            for item in value:
                missing += _missing_keys(sub, item, here)
        else:
            missing += _missing_keys(sub, value, here)
    return missing


def _uncommented_example(text: str) -> str:
    """The policy file with its commented-out maintenance example uncommented."""
    out, in_block, found = [], False, False
    for line in text.splitlines():
        m = _EXAMPLE_HEADER.match(line)
        if m:
            in_block = found = True
            out.append(m.group(1))
            continue
        if in_block:
            m = _EXAMPLE_LINE.match(line)
            if m:
                out.append(m.group(1))
                continue
            in_block = False
        out.append(line)
    assert found, "examples/policy.toml: no commented-out '# [[guardrails.maintenance]]' example"
    return "\n".join(out) + "\n"


def test_policy_example_loads_and_holds_the_defaults() -> None:
    policy = load_policy(POLICY)
    assert policy == Policy(), "examples/policy.toml says it holds the defaults; it differs from Policy()"


def test_policy_example_names_every_key() -> None:
    data = tomllib.loads(_uncommented_example(POLICY.read_text(encoding="utf-8")))
    missing = _missing_keys(Policy, data)
    assert not missing, f"examples/policy.toml does not document: {', '.join(missing)}"


def test_policy_example_keys_are_commented() -> None:
    """Every key line has a comment above it (default, unit, source)."""
    lines = POLICY.read_text(encoding="utf-8").splitlines()
    bare = []
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+\s*=", line):
            above = lines[i - 1] if i else ""
            if not above.startswith("#"):
                bare.append(line.split("=")[0].strip())
    assert not bare, f"keys without a comment above them: {bare}"


def test_policy_maintenance_example_is_valid(tmp_path: Path) -> None:
    uncommented = tmp_path / "policy.toml"
    uncommented.write_text(_uncommented_example(POLICY.read_text(encoding="utf-8")), encoding="utf-8")
    policy = load_policy(uncommented)
    assert len(policy.guardrails.maintenance) == 1
    assert policy.guardrails.maintenance[0].days


def test_inventory_example_loads() -> None:
    inventory = pytest.importorskip("dockwarden.inventory")
    desired = inventory.load_inventory(INVENTORY)
    assert desired.node == "demo"
    assert set(desired.services) == {"demo-db", "demo-web", "demo-worker", "demo-flaky"}
    assert desired.services["demo-web"].depends_on == ("demo-db",)
    flaky = desired.services["demo-flaky"]
    assert (flaky.max_restarts, flaky.restart_window_s) == (5, 600)


def test_inventory_example_mentions_every_field() -> None:
    inventory = pytest.importorskip("dockwarden.inventory")
    text = SERVICES.read_text(encoding="utf-8")
    fields = list(inventory.ServiceEntry.model_fields)
    missing = [f for f in fields if not re.search(rf"^\s*#?\s*-?\s*{re.escape(f)}\b", text, re.M)]
    assert not missing, f"{SERVICES.relative_to(REPO)} does not document: {missing}"
