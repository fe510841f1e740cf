"""docker-py's ``ssh://`` transport, loaded only when an ``ssh://`` engine is used.

``import docker`` imports its SSH adapter, which imports paramiko, which imports
invoke, which imports ``unittest.mock``: 0.24 s of every CLI command that talks
to an engine (measured with ``python -X importtime``; ``once`` at 1 000
containers took 2.8 s in all), for a transport only fleets with ``ssh://``
nodes use (issue 9: a CLI that answers at once).

docker-py imports the adapter inside ``try: ... except ImportError`` and looks
it up when an ``ssh://`` client is made. :func:`defer` (called by the console
script before anything imports docker) makes that import find an empty module,
so docker-py loads as if paramiko were absent; :func:`ensure_loaded` (called by
the connect functions for an ``ssh://`` address) imports the real adapter and
hands it to docker-py. A library user who never calls :func:`defer` sees no
difference.
"""

from __future__ import annotations

import importlib
import sys
import threading
from importlib.machinery import ModuleSpec
from typing import Any

_MODULE = "docker.transport.sshconn"
_lock = threading.Lock()


class _EmptyLoader:
    """Loads an empty module: ``from .sshconn import SSHHTTPAdapter`` then fails
    with ImportError, which docker-py expects when paramiko is missing."""

    def create_module(self, spec: ModuleSpec) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        module.__dict__["__deferred_by_dockwarden__"] = True


class _Deferrer:
    """A ``sys.meta_path`` finder that answers only for docker-py's SSH adapter."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if name == _MODULE:
            return ModuleSpec(name, _EmptyLoader())
        return None


_finder = _Deferrer()


def defer() -> None:
    """Make docker-py load without its SSH adapter (and paramiko) until
    :func:`ensure_loaded`. No effect once docker-py is imported."""
    with _lock:
        if "docker" not in sys.modules and _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)


def ensure_loaded(url: str | None) -> None:
    """Before making a client of ``url``: for an ``ssh://`` address, load the real
    SSH adapter if :func:`defer` held it back. Other addresses: nothing.

    Raises:
        ImportError: paramiko is not installed (``pip install docker[ssh]``).
    """
    if not (url or "").startswith("ssh://"):
        return
    with _lock:
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        stub = sys.modules.get(_MODULE)
        if stub is None or not getattr(stub, "__deferred_by_dockwarden__", False):
            return
        del sys.modules[_MODULE]
        real = importlib.import_module(_MODULE)
        import docker.api.client
        import docker.transport

        docker.transport.SSHHTTPAdapter = real.SSHHTTPAdapter
        docker.api.client.SSHHTTPAdapter = real.SSHHTTPAdapter
