"""Tokens, scopes and the Host check of the HTTP API.

- **The write token** is ``<state-dir>/api-token``: made on first start with
  :func:`secrets.token_urlsafe` (32 random bytes, 43 characters), mode 0600,
  never logged. Writes always need ``Authorization: Bearer <write token>``.
- **A read token** may be named by ``[api] read_token_file``. Reads need a
  token (read or write) unless the listener is loopback or a unix socket.
- Tokens are compared with :func:`hmac.compare_digest` (constant time;
  Watchtower compares with ``!=``).
- **Host check** on a loopback listener: a request whose ``Host`` is not
  ``localhost``, ``127.0.0.1``, ``[::1]`` or the listen address (with the port),
  or a name in ``[api] allowed_hosts``, is refused with 421 — a web page in the
  operator's browser must not reach the API through DNS rebinding.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from dockwarden.config import ConfigError
from dockwarden.config_api import ListenAddress

#: The write token's file name in the state dir.
TOKEN_FILE = "api-token"
#: Random bytes in a new token (token_urlsafe gives 4/3 as many characters).
TOKEN_BYTES = 32

READ, WRITE = "read", "write"


def ensure_write_token(state_dir: Path) -> str:
    """Read ``<state-dir>/api-token``, creating it (0600, ``O_EXCL``) on first start.

    Returns:
        str: the token.
    Raises:
        OSError: the file cannot be created or read.
    """
    path = Path(state_dir) / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)  # repair a widened mode: the token is a secret
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
        path.unlink()
        return ensure_write_token(state_dir)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


def read_token_file(path: str) -> str | None:
    """The read token from ``[api] read_token_file`` (first line), or None when unset.

    Raises:
        ConfigError: the file is named but cannot be read, or is empty.
    """
    if not path:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip().splitlines()
    except OSError as e:
        raise ConfigError(f"api.read_token_file: cannot read {path}: {e.strerror or e}") from e
    if not token or not token[0].strip():
        raise ConfigError(f"api.read_token_file: {path} is empty; expected a token on its first line")
    return token[0].strip()


@dataclass(frozen=True)
class Guard:
    """Decides who may do what.

    Args:
        listen: the listener (loopback or unix: reads open).
        write_token: the write token.
        read_token: the read-only token, or None.
        allowed_hosts: extra Host names accepted on a loopback listener.
    """

    listen: ListenAddress
    write_token: str
    read_token: str | None = None
    allowed_hosts: tuple[str, ...] = ()

    def scope_of(self, authorization: str | None) -> str | None:
        """``"write"``, ``"read"`` or None for an ``Authorization`` header value."""
        if not authorization:
            return None
        kind, _, token = authorization.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            return None
        given = token.strip().encode()
        # Compare against both, always: the time taken does not say which matched.
        w = hmac.compare_digest(given, self.write_token.encode())
        r = self.read_token is not None and hmac.compare_digest(given, self.read_token.encode())
        return WRITE if w else READ if r else None

    def reads_open(self) -> bool:
        return self.listen.loopback

    def host_ok(self, host_header: str | None) -> bool:
        """True when the Host header is acceptable (always, off loopback: there
        the token is the guard; unix sockets are out of a browser's reach)."""
        if self.listen.kind != "tcp" or not self.listen.loopback:
            return True
        if not host_header:
            return False
        h = host_header.strip().lower()
        if h.startswith("["):
            name, _, rest = h[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            name, _, port = h.partition(":")
        names = {"localhost", "127.0.0.1", "::1", self.listen.host.lower()}
        if name in {a.lower() for a in self.allowed_hosts}:
            return True
        if name not in names:
            return False
        return port == str(self.listen.port) or (port == "" and self.listen.port == 80)
