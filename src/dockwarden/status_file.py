"""The daemon's status document on disk: ``<state-dir>/status.json``.

Light on purpose (no pipeline, docker or pydantic): ``dockwarden status`` and
``drift`` read it while a daemon runs, and must answer at once (issue 9). The
document itself is built by :func:`dockwarden.report.status_document`.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from dockwarden import jsonfile
from dockwarden.model import parse_time, utcnow

#: The daemon's document in the state dir.
STATUS_FILE = "status.json"


def write_status(doc: dict[str, Any], state_dir: Path) -> None:
    """Write the document to ``<state_dir>/status.json`` atomically (temp file,
    then rename): readers see the old or the new one, never half.

    Raises:
        OSError: the state dir cannot be written (the temp file is removed).
    """
    jsonfile.write_atomic(state_dir / STATUS_FILE, doc, default=str)


def read_fresh(state_dir: Path, now: datetime | None = None) -> dict[str, Any] | None:
    """The daemon's document when it is fresh: written by a daemon within its
    ``stale_after_s``; None when missing, unreadable, or stale (then observe)."""
    try:
        doc = json.loads((state_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("source") != "daemon":
        return None
    written = parse_time(doc.get("written_at")) if isinstance(doc.get("written_at"), str) else None
    limit = doc.get("stale_after_s")
    if written is None or not isinstance(limit, (int, float)):
        return None
    age = ((now or utcnow()) - written).total_seconds()
    return doc if -5 <= age <= limit else None
