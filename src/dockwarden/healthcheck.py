"""``python -m dockwarden.healthcheck``: ask the running daemon's ``/healthz``.

The container image's ``HEALTHCHECK`` (packaging/Dockerfile): standard library
only (no curl, no imports of the daemon's dependencies), so a check costs a
few milliseconds of CPU. Exit 0 when ``/healthz`` answers 200 (passes run on
schedule), 1 otherwise (503: the last pass is older than three resync intervals
or the loop is wedged; or no answer).

Where the daemon listens, in this order: ``<state-dir>/api.json`` (written by
the daemon: the address it really bound, port 0 resolved; ``0.0.0.0`` reached
as ``127.0.0.1``), then ``DOCKWARDEN_LISTEN``, then ``127.0.0.1:9321`` (the
API's default). The state dir is ``DOCKWARDEN_STATE_DIR`` or
``/var/lib/dockwarden``. A ``unix:/path`` address is asked over that socket.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
from pathlib import Path

#: The API's default address (issue 10: ``--listen`` / ``DOCKWARDEN_LISTEN``).
DEFAULT_LISTEN = "127.0.0.1:9321"
#: Seconds to wait for the answer (docker's HEALTHCHECK --timeout is larger).
TIMEOUT_S = 4.0


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix stream socket (the API's ``unix:/path`` listener)."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def daemon_url(env: dict[str, str] | os._Environ) -> str:
    """The daemon's API address: ``http://HOST:PORT`` or ``unix:/path``.

    Args:
        env: the environment (``DOCKWARDEN_STATE_DIR``, ``DOCKWARDEN_LISTEN``).
    Returns:
        str: from ``api.json`` when readable, else from the listen setting.
    """
    url = _recorded_url(Path(env.get("DOCKWARDEN_STATE_DIR") or "/var/lib/dockwarden"))
    if url is not None:
        return url
    listen = (env.get("DOCKWARDEN_LISTEN") or DEFAULT_LISTEN).strip()
    if listen.startswith("unix:"):
        return listen
    host, _, port = listen.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}.get(host, host)
    return f"http://{host}:{port}"


def _recorded_url(state_dir: Path) -> str | None:
    """The URL the daemon recorded in ``<state dir>/api.json``; None when there is
    none to read (the daemon has not started its API yet, or the file is not
    JSON with a ``url`` string): the caller falls back to the listen setting."""
    try:
        url = json.loads((state_dir / "api.json").read_text(encoding="utf-8"))["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if isinstance(url, str) and url else None


def check(url: str, timeout_s: float = TIMEOUT_S) -> tuple[int, str]:
    """``GET /healthz`` at ``url``.

    Returns:
        (status, body): the HTTP status and the body's first 500 characters.
    Raises:
        OSError: no connection, or no answer within ``timeout_s``.
        http.client.HTTPException: not an HTTP answer.
    """
    if url.startswith("unix:"):
        conn: http.client.HTTPConnection = _UnixConnection(url[len("unix:"):], timeout_s)
    else:
        rest = url.split("://", 1)[-1].rstrip("/")
        host, _, port = rest.rpartition(":")
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout_s)
    try:
        conn.request("GET", "/healthz")  # Host: HOST:PORT, as the API's Host check expects
        r = conn.getresponse()
        return r.status, r.read(500).decode("utf-8", "replace")
    finally:
        conn.close()


def main() -> int:
    """Print the answer; exit 0 when healthy."""
    url = daemon_url(os.environ)
    try:
        status, body = check(url)
    except (OSError, http.client.HTTPException) as e:
        print(f"unhealthy: no answer from {url}/healthz: {e}")
        return 1
    print(f"{'healthy' if status == 200 else 'unhealthy'}: {url}/healthz {status} {body}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
