"""Reload the inventory and policy when their files change, keeping the last
good configuration when a changed file is invalid."""

from __future__ import annotations

from pathlib import Path

from dockwarden.config import ConfigError, Policy, Settings, load_policy
from dockwarden.inventory import inventory_files, load_inventory
from dockwarden.model import DesiredState


class ConfigWatcher:
    """Loads the inventory and policy and reloads them when their files change.

    The first :meth:`load` raises on bad input; later :meth:`reload` calls keep
    the last good configuration and return the error text instead.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._stamp: tuple = ()
        self.policy: Policy | None = None
        self.desired: DesiredState | None = None

    def _files(self) -> list[Path]:
        files: list[Path] = []
        if self.settings.policy_path:
            files.append(self.settings.policy_path)
        if self.settings.inventory:
            try:
                files.extend(inventory_files(self.settings.inventory).values())
            except ConfigError:
                files.append(self.settings.inventory)
        return files

    def _current_stamp(self) -> tuple:
        out = []
        for f in self._files():
            try:
                st = f.stat()
                out.append((str(f), st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((str(f), None, None))
        return tuple(out)

    def load(self) -> tuple[Policy, DesiredState]:
        """Load both files. Raises ConfigError naming file and field."""
        stamp = self._current_stamp()
        policy = load_policy(self.settings.policy_path)
        desired = load_inventory(self.settings.inventory, self.settings.node)
        self.policy, self.desired, self._stamp = policy, desired, stamp
        return policy, desired

    def reload(self) -> tuple[bool, str | None]:
        """Reload when a file changed. Returns (changed, error); on error the
        previous configuration stays in force."""
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return False, None
        self._stamp = stamp  # do not re-report the same broken file every pass
        try:
            policy = load_policy(self.settings.policy_path)
            desired = load_inventory(self.settings.inventory, self.settings.node)
        except ConfigError as e:
            return False, str(e)
        self.policy, self.desired = policy, desired
        return True, None
