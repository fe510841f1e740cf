"""Errors of the container pool. Each says what the CLI should do with it:

``PoolInputError`` and ``PoolNotFound`` are bad input (exit 2), ``PoolRefused``
a refusal by the rules (pool full, container busy; exit 1), and
``PoolEngineError`` an engine that cannot be reached or refused a call (exit 3).
Messages name the field or object and what was expected (design.md).
"""

from __future__ import annotations


class PoolError(Exception):
    """Root of the pool's errors."""

    exit_code = 1


class PoolInputError(PoolError, ValueError):
    """An argument is invalid, e.g. ``seconds: expected a positive integer, got 'abc'``."""

    exit_code = 2


class PoolNotFound(PoolError, LookupError):
    """No pool container (or dispatch) by that name, id or docker id."""

    exit_code = 2


class PoolRefused(PoolError):
    """The rules refuse: the pool is full, the container is busy, the dispatch is already completed."""

    exit_code = 1


class PoolEngineError(PoolError):
    """The Docker engine is unreachable or refused a call (message from the engine)."""

    exit_code = 3
