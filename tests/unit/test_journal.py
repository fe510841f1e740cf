"""The daily journal (sinks/journal.py): section format, the 25-line cap, when sections are written."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

from builders import GB, NOW, container, world
from dockwarden.config_storage import JournalPolicy
from dockwarden.model import (
    ActionKind, Decision, DiskUsage, Drift, DriftKind, Finding, HostStats, Outcome, Priority, Recommendation,
    RecommendationType, SummaryState,
)
from dockwarden.sinks.journal import Journal, health_line, render_section

HOST = HostStats(cpu_percent=5.0, cpu_count=4, load1=0.41, load5=0.3, load15=0.2, mem_total_bytes=8 * GB,
                 mem_available_bytes=3 * GB, swap_total_bytes=2 * GB, swap_used_bytes=0,
                 disks=(DiskUsage("/", 100 * GB, 86 * GB, 14 * GB, 86.0),))


def finding(subject: str, prio: Priority, reason: str, kind: DriftKind = DriftKind.STOPPED) -> Finding:
    return Finding(Drift(kind, subject, reason=reason), prio)


def decision(f: Finding, action: ActionKind, *, execute: bool = False, blocked: bool = False,
             reason: str = "because") -> Decision:
    rec = Recommendation(RecommendationType.REQUIRED, f.subject, action, f.drift.reason, f)
    return Decision(rec, execute=execute, reason=reason, blocked=blocked)


def evaluation(findings=(), decisions=(), summary=SummaryState.DEGRADED):
    w = world(container("web"), container("db", "exited"))
    w = type(w)(**{**w.__dict__, "host": HOST})
    return SimpleNamespace(world=w, findings=list(findings), decisions=list(decisions), summary=summary)


def test_health_line_names_ram_swap_disk_load_containers_and_summary():
    line = health_line(evaluation().world, "degraded")
    assert line == ("Health: RAM 3.0 GiB available of 8.0 GiB, swap 0 B used, disk / 86%, load 0.41, "
                    "containers 1/2 running — degraded")


def test_section_format():
    lines = render_section(NOW, health="Health: ok", findings=["- [P1] disk / 86% full — recommended prune"],
                           actions=["- start web: started"], escalations=["- [P2] db: circuit open"],
                           trends=["- disk / 86.0 %: +1.0 GiB/h (6 h)"])
    assert lines == [
        "## Run — 10:00 UTC", "Health: ok", "- [P1] disk / 86% full — recommended prune",
        "Actions:", "- start web: started", "Escalations:", "- [P2] db: circuit open",
        "Trends:", "- disk / 86.0 %: +1.0 GiB/h (6 h)",
    ]
    empty = render_section(NOW, health="Health: ok", findings=[])
    assert empty == ["## Run — 10:00 UTC", "Health: ok", "Findings: none"]


def test_the_25_line_cap_cuts_the_longest_group_and_says_how_much():
    findings = [f"- [P3] finding {k}" for k in range(40)]
    trends = [f"- trend {k}" for k in range(3)]
    lines = render_section(NOW, health="Health: ok", findings=findings, actions=["- start web: started"],
                           trends=trends)
    assert len(lines) == 25
    assert lines[0] == "## Run — 10:00 UTC" and lines[1] == "Health: ok"
    # 25 = heading + health + 17 findings (16 + "more") + "Actions:" + 1 + "Trends:" + 3
    assert lines[2:18] == findings[:16] and lines[18] == "- … and 24 more"
    assert lines[19:] == ["Actions:", "- start web: started", "Trends:", *trends]


def test_the_cap_holds_for_any_mix_and_keeps_every_group_heading_paired():
    headings = ("Actions:", "Escalations:", "Trends:")
    seen = {label: 0 for label in headings}
    for n in range(0, 60, 7):
        lines = render_section(NOW, health="Health: ok", findings=[f"- f{k}" for k in range(n)],
                               actions=[f"- a{k}" for k in range(n // 2)], escalations=[f"- e{k}" for k in range(5)],
                               trends=[f"- t{k}" for k in range(n)], max_lines=25)
        assert len(lines) <= 25
        for label in headings:
            if label in lines:
                seen[label] += 1
                i = lines.index(label)
                assert i + 1 < len(lines) and lines[i + 1].startswith("- "), (n, lines)
    # The pairing rule was exercised for every group (the loop is not vacuous).
    assert all(seen.values()), seen


def _sections(text: str) -> list[str]:
    return re.findall(r"^## Run — (\d\d:\d\d) UTC$", text, re.M)


def test_record_pass_writes_new_findings_and_one_quiet_section_per_hour(tmp_path: Path):
    j = Journal(tmp_path / "journal", "testnode")
    f1 = finding("db", Priority.P2, "db: container db exited with code 1")
    ev1 = evaluation([f1], [decision(f1, ActionKind.START, execute=True)])
    res1 = SimpleNamespace(executed=[(ev1.decisions[0], Outcome(ActionKind.START, "db", "db", True, "started"))])
    assert j.record_pass(ev1, res1, ["disk / 86.0 %: +1.0 GiB/h (6 h)"], NOW)
    text = j.read(NOW.date())
    assert text.startswith("# dockwarden journal — 2026-11-21 (UTC), node testnode\n\n## Run — 10:00 UTC\n")
    assert "- [P2] db: container db exited with code 1 — start (done)" in text
    assert "Actions:\n- start db: started\n" in text and "Trends:\n- disk / 86.0 %: +1.0 GiB/h (6 h)\n" in text
    # The same findings again, nothing done: quiet, and not within the hour.
    ev2 = evaluation([f1], [decision(f1, ActionKind.START)])
    assert not j.record_pass(ev2, SimpleNamespace(executed=[]), [], NOW + timedelta(minutes=5))
    assert not j.record_pass(ev2, None, [], NOW + timedelta(minutes=59))
    assert j.record_pass(ev2, None, [], NOW + timedelta(minutes=61))
    text = j.read(NOW.date())
    assert _sections(text) == ["10:00", "11:01"]
    assert "Quiet: nothing new since 10:00 UTC" in text
    # Something new (a P1 appears): a section at once.
    f2 = finding("host:disk:/", Priority.P1, "disk / 86.0% full (> 80%, critical)", DriftKind.RESOURCE_PRESSURE)
    assert j.record_pass(evaluation([f2, f1]), None, [], NOW + timedelta(minutes=62))
    # Actions from a worker (the storage recipe) make a pass eventful even with the same findings.
    assert j.record_pass(evaluation([f2, f1]), None, [], NOW + timedelta(minutes=63),
                         actions=["tier 1 (dangling images and build cache): removed 3, freed 1.2 GiB"])
    text = j.read(NOW.date())
    assert _sections(text) == ["10:00", "11:01", "11:02", "11:03"]
    assert "- [P1] disk / 86.0% full (> 80%, critical) — no action" in text
    assert "Actions:\n- tier 1 (dangling images and build cache): removed 3, freed 1.2 GiB" in text


def test_blocked_decisions_are_escalations(tmp_path: Path):
    j = Journal(tmp_path)
    f = finding("db", Priority.P2, "db: still down after 3 attempts", DriftKind.CRASH_LOOP)
    d = decision(f, ActionKind.DIAGNOSTICS, blocked=True, reason="db: circuit open; `dockwarden resume db` to retry")
    assert j.record_pass(evaluation([f], [d], SummaryState.UNSTABLE), None, [], NOW)
    text = j.read(NOW.date())
    assert "— blocked: db: circuit open" in text
    assert "Escalations:\n- [P2] db: db: circuit open; `dockwarden resume db` to retry\n" in text
    assert "— unstable" in text


def test_one_file_per_utc_day_and_no_duplicate_quiet_section_after_a_restart(tmp_path: Path):
    late = NOW.replace(hour=23, minute=59)
    f = finding("db", Priority.P2, "db: container db exited with code 1")
    j = Journal(tmp_path)
    assert j.record_pass(evaluation(), None, [], late)
    assert j.record_pass(evaluation([f]), None, [], late + timedelta(minutes=2))  # new finding, new UTC day
    assert _sections((tmp_path / "2026-11-21.md").read_text()) == ["23:59"]
    assert _sections((tmp_path / "2026-11-22.md").read_text()) == ["00:01"]
    # A restarted daemon (a new Journal) that sees nothing new: quiet sections wait
    # for the hour since the file's last section, not since the restart.
    j2 = Journal(tmp_path)
    j2._last_signature = frozenset({("P2", "db", "stopped", False)})  # as if it had seen this state
    assert not j2.record_pass(evaluation([f]), None, [], late + timedelta(minutes=30))
    assert j2.record_pass(evaluation([f]), None, [], late + timedelta(minutes=62))
    assert _sections((tmp_path / "2026-11-22.md").read_text()) == ["00:01", "01:01"]


def test_disabled_journal_writes_nothing(tmp_path: Path):
    j = Journal(tmp_path)
    assert not j.record_pass(evaluation(), None, [], NOW, policy=JournalPolicy(enabled=False))
    assert j.read(NOW.date()) is None


def test_record_pass_caps_a_real_section_at_25_lines(tmp_path: Path):
    fs = [finding(f"svc{k:02d}", Priority.P2, f"svc{k:02d}: container exited with code 1") for k in range(30)]
    j = Journal(tmp_path)
    assert j.record_pass(evaluation(fs), None, [f"trend {k}" for k in range(4)], NOW)
    body = j.read(NOW.date()).split("\n\n")[1].splitlines()
    assert len(body) == 25 and body[0] == "## Run — 10:00 UTC"
    assert any(line.startswith("- … and ") for line in body)
