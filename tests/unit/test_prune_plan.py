"""The tiered recipe, planned (reconcile/prune_plan.py): keep sets and tiers, no engine."""

from __future__ import annotations

from datetime import timedelta

import pytest

from builders import NOW, ago, desired, intent, spec
from dockwarden.config import Policy
from dockwarden.config_storage import StoragePolicy
from dockwarden.model import Intent
from dockwarden.reconcile.prune_plan import (
    keep_set, normalise_ref, plan_recipe, plan_tier, projected_percent, tiers_needed, volume_advice,
)
from dockwarden.reconcile.usage import (
    CacheUsage, ContainerUsage, FilesystemUsage, ImageUsage, StorageReport, VolumeUsage,
)

MiB = 1024 ** 2
POLICY = Policy()


def img(iid: str, *tags: str, size: int = 10 * MiB, shared: int = 0, containers: int = 0) -> ImageUsage:
    return ImageUsage(f"sha256:{iid}", tags=tags, size_bytes=size, shared_bytes=shared, containers=containers)


def ctr(name: str, image_id: str, state: str = "exited", *, size: int = MiB, stopped_ago_s: float = 7200,
        labels: dict | None = None) -> ContainerUsage:
    return ContainerUsage(f"id-{name}", name, image="x", image_id=f"sha256:{image_id}", state=state,
                          size_rw_bytes=size, labels=labels or {}, created=ago(86400),
                          finished_at=ago(stopped_ago_s) if state != "running" else None)


def scenario() -> tuple[StorageReport, dict]:
    """A host with every kind of thing the recipe must tell apart."""
    images = (
        img("aaaaaaaaaaaa01", "app/web:1", containers=1),                    # used by the running web
        img("bbbbbbbbbbbb02", "app/worker:2", size=30 * MiB),               # spec of intent-stopped worker
        img("cccccccccccc03", "junk/tool:latest", size=40 * MiB, containers=1),  # only a stopped junk container
        img("dddddddddddd04", "old/thing:1", "old/thing:latest", size=50 * MiB),  # unused, two tags
        img("eeeeeeeeeeee05", size=20 * MiB),                               # dangling
        img("ffffffffffff06", size=5 * MiB),                                # dangling, but a spec names its id
        img("99999999999907", "myorg/base:7", size=60 * MiB),               # keep_images glob
        img("777777777777", "library/redis", "busybox:latest", size=3 * MiB),  # spec says docker.io/library/busybox
    )
    containers = (
        ctr("web", "aaaaaaaaaaaa01", "running"),
        ctr("junk", "cccccccccccc03", size=50 * MiB),                       # stopped, untracked, old
        ctr("fresh", "aaaaaaaaaaaa01", stopped_ago_s=60),                   # stopped a minute ago
        ctr("optout", "aaaaaaaaaaaa01", labels={"dockwarden.enable": "false"}),
        ctr("proj-api-1", "aaaaaaaaaaaa01", labels={"com.docker.compose.project": "proj",
                                                    "com.docker.compose.service": "api"}),
        ctr("gone-spec", "aaaaaaaaaaaa01"),                                 # named by a recorded spec
    )
    report = StorageReport(NOW, "overlay2", "/var/lib/docker",
                           FilesystemUsage("/var/lib/docker", 1000 * MiB, 900 * MiB, 100 * MiB, 90.0),
                           images=images, containers=containers,
                           volumes=(VolumeUsage("data", size_bytes=300 * MiB, ref_count=0),
                                    VolumeUsage("live", size_bytes=100 * MiB, ref_count=1)),
                           build_cache=(CacheUsage("c1", size_bytes=7 * MiB), CacheUsage("c2", size_bytes=MiB, in_use=True)),
                           layers_size_bytes=sum(i.size_bytes for i in images), builder_size_bytes=8 * MiB)
    d = desired(spec("web"), spec("worker"), spec("api", compose_project="proj"))
    specs = {"web": {"image": "app/web:1", "name": "web"},
             "worker": {"image": "app/worker:2", "name": "worker"},   # container removed; intent stopped
             "legacy": {"image": "ffffffffffff06", "name": "gone-spec"},
             "cache": {"image": "docker.io/library/busybox", "name": "cache"}}
    intents = {"worker": intent("worker", Intent.STOPPED)}
    return report, dict(desired=d, specs=specs, intents=intents)


def test_references_normalise_like_docker():
    assert normalise_ref("busybox") == {"busybox:latest"}
    assert normalise_ref("docker.io/library/busybox:latest") == {"busybox:latest"}
    assert normalise_ref("library/busybox:1") == {"busybox:1"}
    assert normalise_ref("localhost:5000/app") == {"localhost:5000/app:latest"}
    assert normalise_ref("app@sha256:abc") == {"app@sha256:abc"}
    assert "id:0123456789ab" in normalise_ref("sha256:0123456789ab")


def test_keep_set_names_every_protected_thing_and_why():
    report, kw = scenario()
    keep = keep_set(containers=report.containers, policy=POLICY, **kw)
    assert keep.containers["web"] == "container of tracked service web"
    assert keep.containers["worker"] == "container of tracked service worker (intent stopped)"
    assert keep.containers["proj-api-1"] == "container of tracked service api"
    assert keep.containers["optout"] == "opted out (dockwarden.enable=false)"
    assert keep.containers["gone-spec"] == "recorded container of service legacy"
    assert keep.image_reason(report.images[1]) == "service worker (intent stopped) uses it (recorded spec)"
    assert keep.image_reason(report.images[5]) == "service legacy uses it (recorded spec)"  # by image id
    assert keep.image_reason(report.images[7]) == "service cache uses it (recorded spec)"  # normalised name
    assert keep.image_reason(report.images[3]) is None


def test_tier_1_takes_dangling_images_and_build_cache_only():
    report, kw = scenario()
    keep = keep_set(containers=report.containers, policy=POLICY, **kw)
    p = plan_tier("dangling", report, keep, POLICY, now=NOW)
    assert [(c.kind, c.name) for c in p.candidates] == [("image", "<none>@eeeeeeeeeeee"),
                                                        ("build_cache", "build cache")]
    assert p.bytes == 20 * MiB + 7 * MiB  # unique bytes + reclaimable cache (the in-use record stays)
    assert ("<none>@ffffffffffff", "service legacy uses it (recorded spec)") in p.kept


def test_tier_2_takes_old_untracked_stopped_containers_only():
    report, kw = scenario()
    keep = keep_set(containers=report.containers, policy=POLICY, **kw)
    p = plan_tier("containers", report, keep, POLICY, now=NOW)
    assert [c.name for c in p.candidates] == ["junk"] and p.bytes == 50 * MiB
    kept = dict(p.kept)
    assert kept["fresh"].startswith("stopped for 60 s < storage.stopped_container_min_age_s")
    assert set(kept) == {"fresh", "gone-spec", "optout", "proj-api-1"}  # "web" runs: never a candidate
    no_min_age = Policy(storage=StoragePolicy(stopped_container_min_age_s=0))
    assert {c.name for c in plan_tier("containers", report, keep, no_min_age, now=NOW).candidates} == {"junk", "fresh"}


def test_tier_3_never_takes_an_image_a_tracked_or_intent_stopped_service_names():
    report, kw = scenario()
    pol = Policy(storage=StoragePolicy(keep_images=["myorg/*"]))
    keep = keep_set(containers=report.containers, policy=pol, **kw)
    p = plan_tier("images", report, keep, pol, now=NOW)
    names = [c.name for c in p.candidates]
    assert names == ["old/thing:1", "<none>@eeeeeeeeeeee"]  # largest unique bytes first
    assert p.candidates[0].refs == ("old/thing:1", "old/thing:latest")
    kept = dict(p.kept)
    assert kept["app/worker:2"] == "service worker (intent stopped) uses it (recorded spec)"
    assert kept["myorg/base:7"] == "storage.keep_images 'myorg/*'"
    assert "app/web:1" not in names and "junk/tool:latest" not in names  # in use by containers


def test_the_dry_run_chains_tiers_like_the_real_run():
    report, kw = scenario()
    pol = Policy(storage=StoragePolicy(keep_images=["myorg/*"]))
    keep = keep_set(containers=report.containers, policy=pol, **kw)
    plans = plan_recipe(report, keep, pol, now=NOW)
    assert [p.tier for p in plans] == [1, 2, 3]
    # Tier 3 sees the image of the container tier 2 removes as unused, and leaves
    # tier 1's dangling image alone (already counted).
    assert [c.name for c in plans[2].candidates] == ["old/thing:1", "junk/tool:latest"]
    assert sum(p.bytes for p in plans) == 27 * MiB + 50 * MiB + 90 * MiB
    assert all(c.kind != "volume" for p in plans for c in p.candidates)
    assert plans[0].summary() == "tier 1 (dangling images and build cache): build cache, 1 image, ~27.0 MiB"


def test_tiers_are_configurable_and_unknown_names_rejected():
    report, kw = scenario()
    pol = Policy(storage=StoragePolicy(tiers=["images", "dangling"]))
    assert pol.storage.tiers == ["dangling", "images"]  # recipe order kept
    assert [p.name for p in plan_recipe(report, keep_set(containers=report.containers, policy=pol, **kw),
                                        pol, now=NOW)] == ["dangling", "images"]
    with pytest.raises(ValueError):
        StoragePolicy(tiers=["volumes"])
    with pytest.raises(ValueError):
        plan_tier("volumes", report, keep_set(containers=(), policy=POLICY, **kw), POLICY, now=NOW)


def test_how_many_tiers_the_estimates_need():
    fs = FilesystemUsage("/x", 1000, 900, 100, 90.0)
    report, kw = scenario()
    keep = keep_set(containers=report.containers, policy=POLICY, **kw)
    plans = plan_recipe(report, keep, POLICY, now=NOW)
    assert projected_percent(fs, 100) == pytest.approx(80.0)
    mib_fs = report.filesystem  # 900 of 1000 MiB
    assert tiers_needed(plans, mib_fs, 90.0) == 0  # already at the threshold
    assert tiers_needed(plans, mib_fs, 88.0) == 1  # 27 MiB -> 87.3 %
    assert tiers_needed(plans, mib_fs, 85.0) == 2  # another 50 MiB -> 82.3 %
    assert tiers_needed(plans, mib_fs, 10.0) == 3  # not enough even with all: all of them
    assert tiers_needed(plans, None, 10.0) == 0


def test_volumes_are_only_advised_unused_first():
    report, _ = scenario()
    assert [v.name for v in volume_advice(report)] == ["data", "live"]


def test_an_image_used_by_a_container_the_report_misses_is_never_a_candidate():
    report = StorageReport(NOW, "overlay2", "/d", images=(img("abcabcabcabc", "a:1", containers=2),),
                           containers=(ctr("one", "abcabcabcabc"),), layers_size_bytes=10)
    keep = keep_set(desired=desired(), intents={}, specs={}, containers=report.containers,
                    policy=Policy(storage=StoragePolicy(stopped_container_min_age_s=0)))
    pol = Policy(storage=StoragePolicy(stopped_container_min_age_s=0))
    plans = plan_recipe(report, keep, pol, now=NOW + timedelta(days=1))
    assert [c.name for c in plans[1].candidates] == ["one"]
    assert plans[2].candidates == ()  # the engine counts 2 containers; we saw 1
