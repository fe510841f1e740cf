"""The HTTP API served by ``dockwarden run``: JSON API, Server-Sent Events,
Prometheus ``/metrics``, ``/healthz``/``/readyz`` and the dashboard.

- :mod:`.snapshot`: the immutable snapshot each pass swaps in; the status document.
- :mod:`.auth`: tokens (write token file, read token), scopes, the Host check.
- :mod:`.metrics`: the Prometheus collector and counters.
- :mod:`.sse`: the event stream.
- :mod:`.app`: the FastAPI app factory.
- :mod:`.server`: uvicorn in a daemon thread; the handle the daemon's loop uses.
- :mod:`.client`: a small HTTP client for the CLI (``--url``).
- ``static/``: the dashboard (one HTML, one JS, one CSS file; no build step, no CDN).

Submodules are imported where used, so ``import dockwarden.api`` stays light.
The API never imports the daemon; the daemon imports :mod:`.server`.
"""
