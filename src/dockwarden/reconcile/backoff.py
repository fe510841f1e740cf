"""Exponential backoff: one function for every retry in dockwarden (remediation
attempts, reconnecting to the engine, failed passes, notification delivery).

Pure. Shape: kubelet's CrashLoopBackOff and controller-runtime's per-item
exponential rate limiter (style.md §2): a base delay doubling per attempt up to
a cap.
"""

from __future__ import annotations


def exponential_delay_s(attempt: int, initial_s: float, max_s: float, factor: float = 2.0) -> float:
    """Delay before retry number ``attempt``, seconds.

    Args:
        attempt (int): 1 for the first retry; 0 or less gives 0.0 (no wait).
        initial_s (float): The first delay.
        max_s (float): The cap.
        factor (float): Growth per attempt (2: doubling).
    Returns:
        float: ``min(initial_s * factor**(attempt-1), max_s)``; e.g. 1, 2, 4 ... 300.
    """
    if attempt <= 0:
        return 0.0
    if attempt > 64:  # factor**64 is past any cap; avoid float overflow
        return float(max_s)
    return float(min(initial_s * factor ** (attempt - 1), max_s))
