"""Every endpoint of the OpenAPI document fuzzed over real HTTP (hypothesis):
no 5xx, and no write succeeds without the write token (issue 10).

Parameters are drawn from each operation's schema (valid and out-of-range
integers, odd strings, unknown names), plus random ``Authorization`` headers;
requests go to a real daemon on a loopback port. Writes are sent with no token,
a wrong token or the read token only, so the engine is never touched; the
containers are checked unchanged at the end.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import FAST_POLICY, write_inventory, write_policy

from tests.support.http import call

READ_TOKEN = "fuzz-read-token-0123456789abcdefghij"

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_ints = st.one_of(st.integers(min_value=-5, max_value=5), st.integers(min_value=-(2**70), max_value=2**70))
_auth = st.one_of(st.none(), st.just(f"Bearer {READ_TOKEN}"), st.just("Bearer "), st.just("Basic Zm9vOmJhcg=="),
                  _text.map(lambda t: f"Bearer {t}"))


def _value(schema: dict) -> st.SearchStrategy:
    s = schema.get("anyOf", [schema])
    kinds = {x.get("type") for x in s}
    enums = [e for x in s for e in x.get("enum", [])]
    out = [_text]
    if enums:
        out.append(st.sampled_from(enums))
    if "integer" in kinds or "number" in kinds:
        out += [_ints.map(str), st.floats(allow_nan=True).map(str)]
    if "boolean" in kinds:
        out.append(st.sampled_from(["true", "false", "1", "yes", "maybe"]))
    return st.one_of(*out)


@pytest.fixture(scope="module")
def api(tmp_path_factory, docker_client):
    """One daemon for the module, with a read token; yields (url, spec, containers)."""
    from conftest import Containers, Daemon, RUN_ID

    tmp = tmp_path_factory.mktemp("fuzz")
    cs = Containers(docker_client, f"dwt-{RUN_ID}-fuzz")
    cs.run("web", ["sleep", "100000"])
    (tmp / "read-token").write_text(READ_TOKEN + "\n")
    policy = write_policy(tmp / "p.toml", FAST_POLICY + f'\n[api]\nread_token_file = "{tmp / "read-token"}"\n')
    inv = write_inventory(tmp / "inv", [{"name": "web", "container": cs.name("web")}])
    d = Daemon(tmp, inv, policy, []).start(resync=2)
    url = d.api_url()
    spec = call(url, path="/api/v1/openapi.json").json()
    yield url, spec, cs
    d.stop()
    cs.cleanup()


def _operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [(path, method.upper(), op) for path, item in spec["paths"].items() for method, op in item.items()]


def test_the_openapi_document_lists_every_endpoint(api):
    _, spec, _ = api
    ops = {(m, p) for p, m, _ in _operations(spec)}
    for want in [("GET", "/api/v1/status"), ("GET", "/api/v1/services/{name}"), ("GET", "/api/v1/drift"),
                 ("GET", "/api/v1/incidents"), ("GET", "/api/v1/storage"), ("GET", "/api/v1/pool"),
                 ("GET", "/api/v1/events"), ("GET", "/api/v1/events/stream"), ("GET", "/metrics"),
                 ("POST", "/api/v1/services/{name}/{verb}"), ("POST", "/api/v1/incidents/{incident_id}/ack"),
                 ("GET", "/healthz"), ("GET", "/readyz")]:
        assert want in ops, want


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_every_endpoint_no_5xx_and_no_write_without_the_token(api, data):
    url, spec, _ = api
    path, method, op = data.draw(st.sampled_from(_operations(spec)), label="operation")
    concrete = path
    query = {}
    for p in op.get("parameters", []):
        v = data.draw(_value(p.get("schema", {})), label=p["name"])
        if p["in"] == "path":
            concrete = concrete.replace("{" + p["name"] + "}", quote(v, safe="") or "x")
        elif p["in"] == "query" and data.draw(st.booleans(), label=f"send {p['name']}"):
            query[p["name"]] = v
    auth = data.draw(_auth, label="authorization")
    headers = {"Authorization": auth} if auth is not None else {}
    if path.endswith("/stream"):
        if data.draw(st.booleans(), label="send last-event-id"):
            headers["Last-Event-ID"] = data.draw(st.one_of(_ints.map(str), _text), label="last-event-id")
    target = concrete + ("?" + urlencode(query) if query else "")
    # Only values a real client can send (latin-1, no control characters); http.client refuses the rest.
    headers = {k: v for k, v in headers.items() if all(0x20 <= ord(c) <= 0xFF and ord(c) != 0x7F for c in v)}
    r = call(url, method, target, headers=headers, timeout=10, stream=path.endswith("/stream"))
    assert r.status < 500, (method, target, headers, r.status, r.body[:300])
    if method == "POST":
        assert r.status in (401, 403, 404, 405, 422), (method, target, r.status, r.body[:300])
        if auth == f"Bearer {READ_TOKEN}":
            assert r.status in (403, 404, 405, 422), (target, r.status)  # never a success with the read token


def test_after_fuzzing_nothing_changed(api):
    url, _, cs = api
    assert cs.state("web")["Running"]
    events = call(url, path="/api/v1/events?type=action_started,intent_changed,guard_changed,incident_acknowledged"
                       "&limit=1000").json()["events"]
    assert events == [], events
