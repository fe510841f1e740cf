"""Determinism across processes, for the pure core's "same inputs, same output" tests.

Calling a function twice in one process and comparing the results cannot catch
an output order that depends on how Python hashes strings (iterating a ``set``
or ``frozenset`` of names): both calls share the process's hash seed, so both
see the same order (issue 8: "same-process hash comparisons"). Here the function
runs in fresh interpreters with different ``PYTHONHASHSEED`` values, and the
canonical JSON of their results must be equal.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

UNIT = Path(__file__).resolve().parent
SRC = UNIT.parents[1] / "src"
#: Fixed seeds, so the test is itself deterministic. "0" turns hash
#: randomisation off; with the others, the iteration order of a set of a few
#: service names differs from seed 0 (checked by test_hashseed.py).
SEEDS = ("0", "1", "2", "3")


def canonical(obj: Any) -> Any:
    """JSON-ready form where only meaningful order remains: lists and tuples keep
    their order (the output order is part of the contract), sets are sorted (their
    order means nothing), dataclasses and dicts keep their field/key order."""
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return f"{type(obj).__name__}.{obj.name}"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        return sorted((canonical(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def canonical_json(obj: Any) -> str:
    return json.dumps(canonical(obj))


def outputs_across_hash_seeds(module: str, function: str) -> list[str]:
    """``canonical_json(module.function())`` computed in one fresh interpreter per
    seed in :data:`SEEDS` (``module`` is a module of tests/unit, e.g. a test file
    whose ``function`` builds a scenario and returns the pure core's output).

    Raises:
        AssertionError: an interpreter failed (its stderr is in the message).
    """
    code = (f"import {module} as m, hashseed\n"
            f"print(hashseed.canonical_json(m.{function}()))")
    path = os.pathsep.join([str(SRC), str(UNIT), os.environ.get("PYTHONPATH", "")])
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=UNIT, env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": path})
             for seed in SEEDS]  # concurrently: each one mostly waits on imports
    outs = []
    try:
        for seed, p in zip(SEEDS, procs):
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, f"{module}.{function} with PYTHONHASHSEED={seed} failed:\n{err}"
            outs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return outs


def assert_same_across_hash_seeds(module: str, function: str) -> str:
    """Fail unless ``module.function()`` gives one non-empty canonical output under
    every seed; returns that output (JSON)."""
    outs = outputs_across_hash_seeds(module, function)
    assert outs[0].strip() not in ("", "null", "[]", "{}"), f"{module}.{function} returned nothing to compare"
    differing = [seed for seed, out in zip(SEEDS, outs) if out != outs[0]]
    assert not differing, (f"{module}.{function}: the output depends on the hash seed (PYTHONHASHSEED "
                           f"{', '.join(differing)} differ from {SEEDS[0]}):\n{outs[0][:3000]}\n--- vs ---\n"
                           f"{outs[SEEDS.index(differing[0])][:3000]}")
    return outs[0]


def set_order_probe() -> list[str]:
    """What a regression would look like: names in a set's iteration order."""
    return list({"web", "db", "api", "cache", "worker"})
