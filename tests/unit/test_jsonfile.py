"""The state dir's JSON writer (dockwarden.jsonfile): what it writes, and what it never leaves."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone

import pytest

from dockwarden import jsonfile


def test_writes_compact_json_that_the_stdlib_reads_back(tmp_path):
    doc = {"name": "caf\u00e9", "n": 3, "x": 0.1, "none": None, "list": [1, "a"], 7: "int key"}
    path = tmp_path / "doc.json"
    jsonfile.write_atomic(path, doc)
    raw = path.read_bytes()
    assert raw.endswith(b"\n") and b", " not in raw and b": " not in raw
    assert json.loads(raw) == {"name": "caf\u00e9", "n": 3, "x": 0.1, "none": None, "list": [1, "a"], "7": "int key"}


def test_the_file_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        jsonfile.write_atomic(tmp_path / "doc.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "doc.json").stat().st_mode) == 0o600


def test_integers_beyond_64_bits_fall_back_to_the_stdlib_encoder():
    assert json.loads(jsonfile.dumps({"big": 2**70})) == {"big": 2**70}


def test_default_is_called_for_other_objects():
    class Odd:
        def __str__(self) -> str:
            return "odd"

    assert json.loads(jsonfile.dumps({"o": Odd()}, default=str)) == {"o": "odd"}
    when = datetime(2026, 12, 2, 14, 0, tzinfo=timezone.utc)
    assert json.loads(jsonfile.dumps({"t": when})) == {"t": "2026-12-02T14:00:00+00:00"}


def test_a_document_that_cannot_be_encoded_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "doc.json"
    jsonfile.write_atomic(path, {"v": 1})
    with pytest.raises(TypeError):
        jsonfile.write_atomic(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]


def test_a_missing_directory_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        jsonfile.write_atomic(tmp_path / "gone" / "doc.json", {"v": 1})
