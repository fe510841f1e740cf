"""The CLI over the HTTP API: global ``--url``/``DOCKWARDEN_URL`` and
``--token``/``DOCKWARDEN_TOKEN``.

With a URL, read commands (``status``, ``drift``, ``events``, ``incidents``)
and operator commands (``stop``, ``start``, ``pause``, ``resume``, ``ack``)
talk to that daemon instead of the local engine and state dir. ``--url local``
means the daemon of the state dir: its address is read from
``<state-dir>/api.json`` and, when no token is given, the write token from
``<state-dir>/api-token`` (readable by the daemon's user only). Without a URL
commands work locally as before (status observes the engine afresh).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import typer

from dockwarden.api.client import ApiClient, ApiError
from dockwarden.cli_common import err, fail, out
from dockwarden.config import Settings

#: Set by the app's callback from ``--url``/``--token`` (environment as fallback).
GLOBAL: dict[str, str | None] = {"url": None, "token": None}


@dataclass
class Remote:
    client: ApiClient


def _local(s: Settings) -> tuple[str | None, str | None]:
    """The daemon's URL from ``api.json`` and the token from ``api-token`` (if readable)."""
    try:
        doc = json.loads((Path(s.state_dir) / "api.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    try:
        token = (Path(s.state_dir) / "api-token").read_text(encoding="utf-8").strip() or None
    except OSError:
        token = None
    return doc.get("url"), token


def target(s: Settings, *, for_write: bool = False) -> Remote | None:
    """The daemon to talk to, or None to work locally.

    Exits 2 when ``--url local`` finds no running daemon's address.
    """
    url = GLOBAL["url"] or os.environ.get("DOCKWARDEN_URL") or None
    token = GLOBAL["token"] or os.environ.get("DOCKWARDEN_TOKEN") or None
    if url is None:
        return None
    if url == "local":
        found, file_token = _local(s)
        if found is None:
            fail(f"--url local: no {Path(s.state_dir) / 'api.json'}; is `dockwarden run` serving the API?", 2)
        url, token = found, token or file_token
    return Remote(ApiClient(url, token))


def get(remote: Remote, path: str, **params):
    """GET a document; exits 3 when the daemon does not answer, 2 on 4xx."""
    try:
        return remote.client.get(path, **params)
    except ApiError as e:
        fail(str(e), 3 if e.status in (0, 502, 503) else 2)


def operator_command(remote: Remote, verb: str, service: str) -> None:
    """POST an operator command and render its result like the local command."""
    try:
        res = remote.client.post(f"/api/v1/services/{quote(service, safe='')}/{verb}")
    except ApiError as e:
        fail(str(e), 3 if e.status in (0, 503) else 2)
        return
    render_result(res)


def render_result(res: dict) -> None:
    """Print an operator result (local or from the API) and exit 0 or 1."""
    for w in res.get("warnings") or []:
        out.print(f"[yellow]{w}[/]", highlight=False)
    if res["ok"]:
        out.print(res["message"], highlight=False)
    else:
        err.print(f"[red]{res['message']}[/]", highlight=False)
    raise typer.Exit(0 if res["ok"] else 1)


def events(remote: Remote, *, since, service: str | None, limit: int, follow: bool, as_json: bool) -> None:
    """``events [--follow]`` over the API: a page of events, then (``--follow``)
    the SSE stream from the last id shown. Ctrl-C ends it."""
    from dockwarden.cli_common import echo_event
    from dockwarden.model import rfc3339

    def show(r: dict) -> None:
        r.pop("id", None)
        if as_json:
            print(json.dumps(r, default=str), flush=True)
        else:
            echo_event(r)

    page = get(remote, "/api/v1/events", since=rfc3339(since) if since else None, service=service, limit=limit)
    for r in page["events"]:
        show(r)
    if not follow:
        return
    try:
        for _id, _type, ev in remote.client.stream("/api/v1/events/stream", after=page["next_after"]):
            if service is None or ev.get("service") == service:
                show(ev)
    except ApiError as e:
        fail(str(e), 3)
    except KeyboardInterrupt:
        return
