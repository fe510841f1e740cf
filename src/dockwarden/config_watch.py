"""Reload the inventory and policy when their files change, keeping the last
good configuration when a changed file is invalid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dockwarden.config import ConfigError, Policy, Settings, load_policy
from dockwarden.inventory import (check_failover_targets, inventory_files, load_inventory, load_node_config,
                                  node_names)
from dockwarden.model import DesiredState, NodeConfig


class ConfigWatcher:
    """Loads the inventory (one or several nodes, with their ``node.yaml``) and
    the policy, and reloads them when their files change.

    The first :meth:`load` raises on bad input; later :meth:`reload` calls keep
    the last good configuration and return the error text instead.

    Args:
        settings: inventory and policy paths; ``settings.node`` when ``nodes`` is None.
        nodes: the nodes to supervise (``--node a --node b``, ``all``); None: the
            one ``settings.node`` names (or the inventory's only node).
    """

    def __init__(self, settings: Settings, nodes: Sequence[str] | None = None):
        self.settings = settings
        self.wanted = list(nodes) if nodes else ([settings.node] if settings.node else [])
        self._stamp: tuple = ()
        self.policy: Policy | None = None
        self.nodes: dict[str, DesiredState] = {}
        self.node_configs: dict[str, NodeConfig] = {}

    @property
    def desired(self) -> DesiredState | None:
        """The first node's desired state (the only one for a single-node daemon)."""
        return next(iter(self.nodes.values()), None)

    def _files(self) -> list[Path]:
        files: list[Path] = []
        if self.settings.policy_path:
            files.append(self.settings.policy_path)
        if self.settings.inventory:
            try:
                for f in inventory_files(self.settings.inventory).values():
                    files += [f, f.parent / "node.yaml"]
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

    def _read(self) -> tuple[Policy, dict[str, DesiredState], dict[str, NodeConfig]]:
        policy = load_policy(self.settings.policy_path)
        names = node_names(self.settings.inventory, self.wanted)
        desired = {n: load_inventory(self.settings.inventory, n) for n in names}
        check_failover_targets(self.settings.inventory, desired)
        configs = {n: load_node_config(self.settings.inventory, n) for n in names}
        return policy, desired, configs

    def load(self) -> tuple[Policy, DesiredState]:
        """Load everything. Returns the policy and the first node's desired state
        (``nodes``/``node_configs`` hold them all).

        Raises:
            ConfigError: naming the file and the field.
        """
        stamp = self._current_stamp()
        self.policy, self.nodes, self.node_configs = self._read()
        self._stamp = stamp
        return self.policy, self.desired  # type: ignore[return-value]

    def reload(self) -> tuple[bool, str | None]:
        """Reload when a file changed. Returns (changed, error); on error the
        previous configuration stays in force. The set of nodes does not change
        while the daemon runs (a new node needs a restart)."""
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return False, None
        self._stamp = stamp  # do not re-report the same broken file every pass
        try:
            policy, desired, configs = self._read()
        except ConfigError as e:
            return False, str(e)
        self.policy = policy
        self.nodes = {n: desired.get(n, d) for n, d in self.nodes.items()}
        self.node_configs = {n: configs.get(n, c) for n, c in self.node_configs.items()}
        return True, None
