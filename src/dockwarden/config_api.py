"""Policy table for the HTTP API: ``[api]``.

Pure pydantic model (no I/O); :mod:`dockwarden.config` composes it into the
policy and :mod:`dockwarden.api` applies it. ``dockwarden run --listen ADDR``
(env ``DOCKWARDEN_LISTEN``) overrides ``listen``. ``examples/policy.toml``
documents every key.

Listen addresses (:func:`parse_listen`): ``HOST:PORT`` (``127.0.0.1:9321``,
``[::1]:9321``, ``0.0.0.0:9321``; port 0 picks a free port), ``unix:/path``
(a unix socket, created 0600), or ``none`` (no API).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The default listener: loopback only (Monit's choice; Watchtower and Netdata
#: listen on every interface, which the issue names as what not to do).
DEFAULT_LISTEN = "127.0.0.1:9321"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ListenAddress:
    """A parsed listen address.

    Attributes:
        kind: ``"tcp"``, ``"unix"`` or ``"none"``.
        host: the IP or name to bind (tcp), without brackets.
        port: the TCP port (0: any free port).
        path: the unix socket path (unix).
    """

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def loopback(self) -> bool:
        """True for a unix socket or a TCP listener on a loopback address
        (127.0.0.0/8, ::1, ``localhost``): reads need no token there."""
        if self.kind == "unix":
            return True
        if self.kind != "tcp":
            return False
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "none":
            return "none"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(value: str) -> ListenAddress:
    """Parse ``HOST:PORT``, ``[IPv6]:PORT``, ``unix:/abs/path`` or ``none``.

    Raises:
        ValueError: anything else (the message says what was expected).
    """
    v = value.strip()
    if v.lower() == "none":
        return ListenAddress("none")
    if v.startswith("unix:"):
        path = v[len("unix:"):]
        if not path.startswith("/"):
            raise ValueError(f"expected unix:/absolute/path, got {value!r}")
        return ListenAddress("unix", path=path)
    if v.startswith("["):
        host, sep, port = v[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPv6]:PORT, got {value!r}")
    else:
        host, sep, port = v.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected HOST:PORT, unix:/path or none, got {value!r}")
        if ":" in host:
            raise ValueError(f"an IPv6 address needs brackets ([::1]:9321), got {value!r}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected a port 0-65535, got {port!r} in {value!r}")
    return ListenAddress("tcp", host=host, port=int(port))


class ApiPolicy(_Section):
    """The HTTP API, metrics and dashboard served by ``dockwarden run``."""

    listen: str = DEFAULT_LISTEN
    """Where the daemon serves the API: ``HOST:PORT``, ``unix:/path`` or ``none``.
    Default ``127.0.0.1:9321`` (loopback). ``--listen``/``DOCKWARDEN_LISTEN`` win."""
    read_token_file: str = ""
    """A file holding a read-only bearer token (one line), for reads on a
    non-loopback listener (Prometheus, a dashboard). Default none. The write token
    is always ``<state-dir>/api-token`` (0600, made on first start)."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Extra ``Host`` header names accepted on a loopback listener (e.g. a name in
    /etc/hosts); ``localhost``, ``127.0.0.1`` and ``[::1]`` always are. Guards
    against DNS rebinding. Default none."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed to call the API from a browser (CORS), e.g.
    ``https://ops.example.com``. Default none: no CORS headers at all."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_listen(v)
        return v
