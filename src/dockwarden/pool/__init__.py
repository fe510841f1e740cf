"""The container pool manager (issue 5): a pool of identical worker containers,
tasks dispatched to them, their health, rate limits and idle cleanup.

- :mod:`.manager`: the ``Pool`` API (spawn, destroy, list, status, health,
  select, complete, rate_limit, cleanup, ensure_min, dispatch).
- :mod:`.db` / :mod:`.schema`: the SQLite tables and every rule written in SQL.
- :mod:`.engine`: every Docker call (the only pool module importing ``docker``).
- :mod:`.health`, :mod:`.secrets`: probes; secrets as read-only files.
- :mod:`.worker`: the daemon's background worker.

Submodules are imported where used, so ``import dockwarden.pool`` stays light.
"""
