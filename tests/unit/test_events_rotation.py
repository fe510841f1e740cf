"""``events.jsonl`` rotation (issue 8): bounded files, N kept, no line lost across
a rotation, whole lines only when two processes append at once, and
:func:`read_events` reading current and rotated files in order.
"""

from __future__ import annotations

import json
import multiprocessing
import stat
from datetime import timedelta

from builders import NOW

from dockwarden.model import Event, EventType
from dockwarden.sinks.events import (EventLog, event_files, oldest_event_time, read_events, read_jsonl, rotate_if_over,
                                     rotated_path)

MAX = 4096


def ev(i: int, *, service: str = "web", pad: int = 0) -> Event:
    return Event(type=EventType.DRIFT_DETECTED, ts=NOW + timedelta(seconds=i), node="local", service=service,
                 reason=f"{i}", details={"pad": "x" * pad} if pad else {})


def sizes(path) -> list[int]:
    return [f.stat().st_size for f in event_files(path)]


def test_rotation_keeps_n_files_each_within_max_bytes(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path, None, max_bytes=MAX, rotated_files=3)
    for i in range(400):
        assert log.send(ev(i, pad=i % 50))
    files = event_files(tmp_path)
    assert [f.name for f in files] == ["events.jsonl.3", "events.jsonl.2", "events.jsonl.1", "events.jsonl"]
    assert all(0 < s <= MAX for s in sizes(tmp_path))
    got = [int(e["reason"]) for e in read_events(tmp_path)]
    assert got == list(range(got[0], 400)) and got[0] > 0  # the newest, in order; the oldest rotated away
    assert (log.failures, log.rotation_failures) == (0, 0)
    for f in [*files, tmp_path / "events.jsonl.lock"]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_no_line_is_lost_across_rotations(tmp_path):
    log = EventLog(tmp_path / "events.jsonl", None, max_bytes=MAX, rotated_files=1000)
    for i in range(1000):
        log.send(ev(i, pad=(7 * i) % 300))
    assert len(event_files(tmp_path)) > 20
    assert [int(e["reason"]) for e in read_events(tmp_path)] == list(range(1000))


def test_a_line_larger_than_max_bytes_is_written_whole_alone(tmp_path):
    log = EventLog(tmp_path / "events.jsonl", None, max_bytes=MAX, rotated_files=2)
    log.send(ev(0))
    log.send(ev(1, pad=2 * MAX))
    log.send(ev(2))
    assert [int(e["reason"]) for e in read_events(tmp_path)] == [0, 1, 2]
    assert [len(read_jsonl(f)) for f in event_files(tmp_path)] == [1, 1, 1]


def test_keeping_fewer_files_deletes_the_oldest_and_zero_keeps_none(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path, None, max_bytes=MAX, rotated_files=5)
    for i in range(200):
        log.send(ev(i))
    assert rotated_path(path, 5).exists()
    log.set_rotation(max_bytes=MAX, rotated_files=2)
    assert not rotate_if_over(path, max_bytes=MAX, rotated_files=2)  # not over: only the extra files go
    assert [f.name for f in event_files(tmp_path)] == ["events.jsonl.2", "events.jsonl.1", "events.jsonl"]
    log.set_rotation(max_bytes=MAX, rotated_files=0)
    for i in range(200, 300):
        log.send(ev(i))
    assert [f.name for f in event_files(tmp_path)] == ["events.jsonl"]
    assert read_events(tmp_path)[-1]["reason"] == "299"


def test_rotate_if_over_rotates_a_file_already_too_big(tmp_path):
    path = tmp_path / "events.jsonl"
    EventLog(path, None, max_bytes=10 * MAX).send(ev(0, pad=2 * MAX))
    assert not rotate_if_over(path, max_bytes=10 * MAX, rotated_files=3)
    assert rotate_if_over(path, max_bytes=MAX, rotated_files=3)
    assert not path.exists() and rotated_path(path, 1).exists()


def test_a_failed_rotation_still_records_the_event(tmp_path, monkeypatch):
    import dockwarden.sinks.events as events_mod

    def broken(*a, **kw):
        raise OSError(28, "No space left on device")

    log = EventLog(tmp_path / "events.jsonl", None, max_bytes=MAX)
    monkeypatch.setattr(events_mod, "rotate_if_over", broken)
    for i in range(100):
        assert log.send(ev(i))
    assert log.rotation_failures > 0 and log.failures == 0
    assert len(read_events(tmp_path)) == 100


def test_read_events_skips_torn_lines_and_filters(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path, None, max_bytes=MAX, rotated_files=10)
    for i in range(60):
        log.send(ev(i, service="web" if i % 2 else "db", pad=40))
    rotated = rotated_path(path, 1)
    assert rotated.exists()
    with rotated.open("ab") as f:  # a crash mid-write left half a line behind
        f.write(b'{"ts":"2026-11-21T10:00:00.000Z","type":"drif')
        f.write(b"\n[1, 2]\n\xff\xfe\n")
    with path.open("ab") as f:
        f.write(b'{"ts":"2026-11-21T10:')  # torn last line of the current file
    got = read_events(tmp_path)
    assert [int(e["reason"]) for e in got] == list(range(60))
    assert [e["reason"] for e in read_events(path, service="db", limit=3)] == ["54", "56", "58"]
    assert [e["reason"] for e in read_events(tmp_path, since=NOW + timedelta(seconds=57))] == ["57", "58", "59"]
    assert oldest_event_time(tmp_path) == NOW
    assert read_events(tmp_path / "nowhere") == [] and oldest_event_time(tmp_path / "nowhere") is None


def _writer(path: str, who: str, n: int, max_bytes: int, rotated_files: int, barrier, tail: int = 0) -> None:
    log = EventLog(path, None, max_bytes=max_bytes, rotated_files=rotated_files)
    barrier.wait(timeout=60)  # all writers start together
    for i in range(n):
        if tail and i == n - tail:
            # ...and write their last lines together too: a writer that got ahead would
            # otherwise fill the kept files alone (seen once in a full run on a busy machine).
            barrier.wait(timeout=60)
        log.send(Event(type=EventType.DRIFT_DETECTED, ts=NOW, node="local", service=who, reason=str(i),
                       details={"pad": "y" * (i % 97)}))
    if log.failures or log.rotation_failures:
        raise SystemExit(1)


def _run_writers(path, writers: tuple[str, ...], n: int, max_bytes: int, rotated_files: int) -> list[bytes]:
    """Run one process per writer, all appending at once; the files' contents, oldest first."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(writers))
    procs = [ctx.Process(target=_writer, args=(str(path), who, n, max_bytes, rotated_files, barrier, 60))
             for who in writers]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    return [f.read_bytes() for f in event_files(path)]


def _lines_by_writer(contents: list[bytes], writers: tuple[str, ...]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {w: [] for w in writers}
    for data in contents:
        assert data.endswith(b"\n")
        for line in data.split(b"\n")[:-1]:
            obj = json.loads(line)  # every line is one whole JSON object
            seen[obj["service"]].append(int(obj["reason"]))
    return seen


def test_processes_appending_at_once_write_every_line_once_and_whole(tmp_path):
    writers, n, max_bytes = ("daemon", "cli"), 1500, 8192
    contents = _run_writers(tmp_path / "events.jsonl", writers, n, max_bytes, rotated_files=10_000)
    assert len(contents) > 10  # many rotations happened while they wrote
    longest = max(len(line) + 1 for data in contents for line in data.split(b"\n"))
    for who, got in _lines_by_writer(contents, writers).items():
        assert got == list(range(n)), who  # each line exactly once, in each writer's order
    for data in contents:
        # another process may append a line between our size check and our write
        assert len(data) <= max_bytes + longest
    # one rotation per overflow: each rotated file was full (the size is re-checked under the lock)
    assert all(len(data) > max_bytes - longest for data in contents[:-1])


def test_processes_rotating_at_once_lose_only_the_oldest_lines(tmp_path):
    writers, n, max_bytes, kept = ("daemon", "cli", "cli2"), 1500, 2048, 50
    contents = _run_writers(tmp_path / "events.jsonl", writers, n, max_bytes, rotated_files=kept)
    assert len(contents) == kept + 1
    longest = max(len(line) + 1 for data in contents for line in data.split(b"\n"))
    assert sum(map(len, contents)) <= (kept + 1) * (max_bytes + 2 * longest)
    seen = _lines_by_writer(contents, writers)
    assert sum(1 for got in seen.values() if got) >= 2  # the kept files hold lines of several writers
    for who, got in seen.items():
        # a rotation racing another (no lock) or an overwrite would leave a gap or a repeat
        assert got == list(range(got[0], n)) if got else True, who



def test_reading_while_another_process_rotates_neither_repeats_nor_skips(tmp_path):
    path = tmp_path / "events.jsonl"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    writer = ctx.Process(target=_writer, args=(str(path), "daemon", 4000, 2048, 30, barrier))
    writer.start()
    barrier.wait(timeout=60)
    reads = 0
    while writer.is_alive() or reads == 0:
        got = [int(e["reason"]) for e in read_events(tmp_path)]
        if got:
            assert got == list(range(got[0], got[0] + len(got))), "a read repeated or skipped lines"
        reads += 1
    writer.join(timeout=60)
    assert writer.exitcode == 0 and reads > 5

# --------------------------------------------------------------------------- `dockwarden events` and the files


def _events_cli(state_dir, *args: str) -> list[str]:
    from typer.testing import CliRunner

    from dockwarden.cli import app

    r = CliRunner().invoke(app, ["events", "--state-dir", str(state_dir), "--json", *args], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return [json.loads(line)["reason"] for line in r.output.splitlines() if line.strip()]


def test_events_command_reads_the_files_for_history_older_than_the_database(tmp_path):
    from dockwarden.model import utcnow
    from dockwarden.retention import prune_events
    from dockwarden.store import Store

    now = utcnow()  # `--since 90d` counts from the real clock
    store = Store(tmp_path / "dockwarden.db")
    log = EventLog(tmp_path / "events.jsonl", store, max_bytes=MAX, rotated_files=50)
    for days, reason in ((60, "old"), (40, "older than the table"), (5, "recent"), (0, "now")):
        e = ev(0)
        log.send(Event(type=e.type, ts=now - timedelta(days=days), node="local", service="web", reason=reason))
    for i in range(40):  # enough to rotate: the history is spread over several files
        log.send(Event(type=EventType.DRIFT_DETECTED, ts=now, node="local", service="db", reason=f"fill{i}",
                       details={"pad": "z" * 200}))
    assert len(event_files(tmp_path)) > 2
    assert prune_events(store, now=now, max_age_s=30 * 86400, max_rows=1000) == 2
    store.close()

    assert _events_cli(tmp_path, "--service", "web") == ["recent", "now"]  # the database
    assert _events_cli(tmp_path, "--service", "web", "--since", "10d") == ["recent", "now"]
    assert _events_cli(tmp_path, "--service", "web", "--since", "90d") == ["old", "older than the table",
                                                                          "recent", "now"]
    assert _events_cli(tmp_path, "--service", "web", "--since", "50d") == ["older than the table", "recent", "now"]
    assert _events_cli(tmp_path, "--files", "--service", "web", "--limit", "3") == ["older than the table",
                                                                                   "recent", "now"]
