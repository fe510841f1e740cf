"""The pure core of the reconcile pipeline: drift -> assess -> recommend -> decide.

No I/O, no Docker, no database, no clock: every function takes its inputs
(``now`` included) and returns data, so the same inputs give the same outputs
(design.md). Only :mod:`dockwarden.model`, :mod:`dockwarden.config` and the
standard library are imported here.
"""

from dockwarden.reconcile.assess import assess, priority_of, summarize
from dockwarden.reconcile.drift import detect_drift, effective_intent
from dockwarden.reconcile.resolve import find_container
from dockwarden.reconcile.policy import (
    backoff_delay_s,
    budget_exhausted,
    decide,
    in_maintenance,
    judge,
    observe_stability,
    open_circuit,
    pause,
    record_attempt,
    resume,
    service_mode,
)
from dockwarden.reconcile.recommend import recommend, recommend_all, start_order

__all__ = [
    "assess", "backoff_delay_s", "budget_exhausted", "decide", "detect_drift",
    "effective_intent", "find_container", "in_maintenance", "judge", "observe_stability",
    "open_circuit", "pause", "priority_of", "record_attempt", "recommend", "recommend_all",
    "resume", "service_mode", "start_order", "summarize",
]
