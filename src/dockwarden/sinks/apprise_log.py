"""apprise's log, scrubbed: what apprise logs while dockwarden delivers never
holds a channel's secrets.

apprise logs the URL it sends to at DEBUG (``JSON POST URL: http://host/<token>``,
``Socket Exception: ... url: /<token>``) and a partly masked one at WARNING and
above (``mailto://user:h...t@host``). A channel URL's ``${NAME}`` values are
expanded only when sending (config_notify.expand_env), so these lines are the
one way they could reach dockwarden's log. The filter installed on the
``apprise`` logger drops apprise's records below WARNING, masks the values of
the deliveries in flight (:func:`scrubbing`) and passes every URL left in a
message through :func:`dockwarden.redact.redact_url`.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from dockwarden.redact import MASK, redact_urls_in
#: Shorter values are not masked inside log text (they would garble it, and say little).
MIN_SECRET_LEN = 4


class ScrubFilter(logging.Filter):
    """A ``logging.Filter`` for the ``apprise`` logger (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: Counter[str] = Counter()

    def add(self, values: Iterable[str]) -> list[str]:
        vals = [v for v in values if len(v) >= MIN_SECRET_LEN]
        with self._lock:
            self._secrets.update(vals)
        return vals

    def remove(self, values: Iterable[str]) -> None:
        with self._lock:
            self._secrets.subtract(values)
            self._secrets = +self._secrets  # drop counts that reached zero

    def scrub(self, text: str) -> str:
        """``text`` with the in-flight secrets masked and every URL redacted."""
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for s in secrets:
            text = text.replace(s, MASK)
        return redact_urls_in(text)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record: say nothing rather than something unscrubbed
            msg = f"apprise {record.levelname.lower()} (unformattable message)"
        record.msg, record.args = self.scrub(msg), ()
        return True


def install() -> ScrubFilter:
    """Install the filter on the ``apprise`` logger once per process; returns it."""
    logger = logging.getLogger("apprise")
    for f in logger.filters:
        if isinstance(f, ScrubFilter):
            return f
    f = ScrubFilter()
    logger.addFilter(f)
    return f


@contextmanager
def scrubbing(values: Iterable[str]) -> Iterator[None]:
    """Mask ``values`` (e.g. the expanded ``${NAME}`` values of a channel URL,
    and the expanded URL itself) in apprise's log while the block runs."""
    f = install()
    added = f.add(values)
    try:
        yield
    finally:
        f.remove(added)
