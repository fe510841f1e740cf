"""Storage: where disk pressure comes from, relieving it safely, and the trends.

* :mod:`dockwarden.storage.monitor`: the :class:`StorageMonitor` background worker.
* :mod:`dockwarden.storage.recipe`: the tiered recipe (plan, prune, re-measure).
* :mod:`dockwarden.storage.samples`: samples and image sightings in SQLite.
* :mod:`dockwarden.storage.housekeeping`: stale lock files and worktrees.

The pure parts live in ``reconcile/`` (``usage``, ``trends``, ``prune_plan``,
``housekeeping``); the engine is read in ``observe/storage.py`` and written in
``prune.py``.
"""

from dockwarden.storage.monitor import StorageMonitor, keep_for_report
from dockwarden.storage.recipe import RecipeRun, run_recipe

__all__ = ["RecipeRun", "StorageMonitor", "keep_for_report", "run_recipe"]
