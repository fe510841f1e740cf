"""The test session's guard against signalling a process group (tests/conftest.py)."""

import os
import signal

import pytest

from tests.support.procs import NotAProcess


@pytest.mark.parametrize("pid", [0, -1, -os.getpgrp()])
def test_signalling_a_group_is_refused(pid):
    # If the guard were missing this would SIGCONT our own group (harmless) and not raise.
    with pytest.raises(NotAProcess):
        os.kill(pid, signal.SIGCONT)


def test_signal_0_and_real_pids_still_work():
    os.kill(os.getpid(), 0)
    os.kill(os.getpid(), signal.SIGCONT)
    with pytest.raises(ProcessLookupError):
        os.kill(2**22 + 12345, 0)
