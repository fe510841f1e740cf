"""Policy table for container labels other tools wrote: ``[labels]``.

Pure pydantic model (no I/O); :mod:`dockwarden.config` composes it into the
policy and :mod:`dockwarden.inventory` applies it (``merge_labelled``).

docker-autoheal compatibility (willfarrell/docker-autoheal, its README's
"ENV Defaults"): autoheal watches containers whose label named by
``AUTOHEAL_CONTAINER_LABEL`` (default ``autoheal``) is ``true``, or every
container when that variable is ``all``, and restarts the unhealthy ones with
the per-container ``autoheal.stop.timeout`` label as the stop timeout (default
``AUTOHEAL_DEFAULT_STOP_TIMEOUT``, 10 s). Here such a container becomes a tracked
service (source ``label``): an ``unhealthy`` drift is remedied by a restart, as
autoheal does, and a crash by a start (autoheal ignores exited containers), both
within dockwarden's guardrails; a ``docker stop`` is recorded as intent and
respected.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Label docker-autoheal reads as the per-container restart timeout, seconds.
AUTOHEAL_STOP_TIMEOUT_LABEL = "autoheal.stop.timeout"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelsPolicy(_Section):
    """Which foreign labels make a container a tracked service."""

    autoheal_compat: Literal["label", "all", "off"] = "label"
    """docker-autoheal compatibility. ``label`` (default): a container whose
    ``autoheal_label`` label is ``true`` (case-insensitive) is tracked, like
    autoheal's default. ``all``: every container that has a healthcheck is tracked
    (autoheal's ``AUTOHEAL_CONTAINER_LABEL=all``; autoheal can only act on
    containers with a healthcheck), except those labelled ``<autoheal_label>=false``
    or ``dockwarden.enable=false``, dockwarden's pool containers, one-off jobs
    (``docker run --rm``, compose ``run``) and dockwarden itself. ``off``: autoheal
    labels mean nothing to dockwarden."""
    autoheal_label: str = Field("autoheal", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """The opt-in label's name, compared case-insensitively (autoheal's
    ``AUTOHEAL_CONTAINER_LABEL`` when it names a label). Default ``autoheal``."""
