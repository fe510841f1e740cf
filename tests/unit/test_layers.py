"""The architecture contracts in ``.importlinter`` hold (style.md §1).

Runs import-linter's ``lint-imports`` on the installed package: the layers
(cli > daemon > pipeline > edges > store > inventory > reconcile > config >
model), the pure core free of docker/sqlite3/apprise/requests/subprocess, and
docker imported only by observe/ and execute.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _lint_imports() -> str:
    """Path of the ``lint-imports`` script of the running interpreter's venv."""
    beside = Path(sys.executable).parent / "lint-imports"
    if beside.exists():
        return str(beside)
    found = shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports not found: install the test extra (pip install -e '.[test]')")
    return found


def test_import_contracts_are_kept() -> None:
    assert (REPO / ".importlinter").is_file(), "the contracts file .importlinter is missing"
    proc = subprocess.run(
        [_lint_imports(), "--config", str(REPO / ".importlinter"), "--no-cache", "--no-logo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"lint-imports exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert "0 broken" in proc.stdout, proc.stdout
