"""Signalling processes from tests without ever signalling a process group.

``os.kill(0, sig)`` signals the caller's whole process group (POSIX kill(2)),
and ``os.kill(-1, sig)`` every process the caller may signal. A container that
is not running has ``State.Pid == 0``: a test that kills "the container's pid"
at the wrong moment would kill pytest, make and the CI job with it (exit 137).
"""

from __future__ import annotations

import os


class NotAProcess(AssertionError):
    """Raised instead of signalling a pid <= 0 (a process group or every process)."""


def kill(pid: int, sig: int) -> None:
    """Send ``sig`` to the one process ``pid``.

    Raises:
        NotAProcess: ``pid`` is 0 or negative (a container that is not running
            reports ``Pid`` 0), and ``sig`` is not 0.
        ProcessLookupError: no such process.
    """
    if sig != 0 and int(pid) <= 0:
        raise NotAProcess(f"refusing to send signal {sig} to pid {pid}: that is a process group, not a process "
                          "(a container that is not running reports Pid 0)")
    _os_kill(pid, sig)


_os_kill = os.kill


def install_guard() -> None:
    """Make ``os.kill`` in this process refuse pids <= 0 for the test session."""
    os.kill = kill
