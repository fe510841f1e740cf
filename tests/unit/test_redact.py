"""Issue 8: what may leave dockwarden. URLs redacted, rejected values described
instead of echoed, container specs without environment values, and config
errors that name the file and field but never a password."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockwarden.config import ConfigError, load_policy
from dockwarden.inventory import parse_services_file
from dockwarden.redact import describe_value, environment_keys, field_is_secret, public_spec, redact_url

SECRET = "hunter2secret"


@pytest.mark.parametrize("url, expected", [
    ("mailto://user:hunter2secret@127.0.0.1:1?bad=", "mailto://user:****@127.0.0.1:1?bad="),
    ("mailtos://user:s3cret@smtp.example.com:587/?cto=5&to=x", "mailtos://user:****@smtp.example.com:587/?cto=5&to=****"),
    # an "@" after the host: the password may have run on into it (found by the property below)
    ("mailtos://user:s3cret@smtp.example.com:587/?to=a@b.c", "mailtos://user:****@****/****"),
    ("mailto://0:@A?@0/", "mailto://0:****@****/****"),
    ("json://127.0.0.1:8080/hook", "json://127.0.0.1:8080/hook"),
    ("http://localhost:1/a?token=abc&format=text", "http://localhost:1/a?token=****&format=text"),
    ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/12345", "tgram://****/12345"),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general", "slack://****/****/****/#****"),
    ("mailto://user:pa/ss@host", "mailto://****"),  # an unencoded "/" in the password: show nothing
    ("mailto://u:12?34@h", "mailto://****"),
    ("not a url", "****"),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected


_LOWER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(scheme=st.sampled_from(["mailto", "mailtos", "json", "http", "https", "tgram", "ntfy"]),
       user=_LOWER, host=_LOWER, path=st.lists(_LOWER, max_size=3),
       password=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ/?#@:!$%&=+", min_size=1, max_size=20)
       .filter(lambda p: any(c.isupper() for c in p)),
       query=st.lists(st.tuples(_LOWER, _LOWER), max_size=3))
def test_redact_url_never_shows_any_part_of_the_password(scheme, user, host, path, password, query):
    """The password is the only upper-case text in the URL: no upper-case letter
    may survive redaction, however the password's / ? # @ : cut the URL."""
    q = "&".join(f"{k}={v}" for k, v in query)
    url = f"{scheme}://{user}:{password}@{host}/{'/'.join(path)}" + (f"?{q}" if q else "")
    out = redact_url(url)
    assert not any(c.isupper() for c in out), (url, out)


@pytest.mark.parametrize("value, field, expected", [
    (-1, "backoff.initial_delay_s", "-1"),
    (2.5, "", "2.5"),
    (True, "", "true"),
    (None, "", "null"),
    ("later", "desired", "'later'"),
    ("25:00", "start", "'25:00'"),
    ("512m", "memory", "'512m'"),
    ("/srv/x/*", "globs", "'/srv/x/*'"),
    ("9.3e18", "max_restarts", "'9.3e18'"),
    ("hunter2", "pool.env.DB_PASSWORD", "a string of 7 characters"),  # a secret-looking field: length only
    ("abc", "notify.channel[0].url", "a string of 3 characters"),
    ("a b c", "", "a string of 5 characters"),
    ("x" * 41, "", "a string of 41 characters"),
    ("me@example.com", "", "a string of 14 characters"),
    ("aB3$xY9q", "", "a string of 8 characters"),
    ("", "", "an empty string"),
    ("mailto://user:hunter2secret@127.0.0.1:1", "timeout_s",
     "a URL of 39 characters (mailto://user:****@127.0.0.1:1)"),
    ([1, 2], "", "a list of 2 items"),
    ({"a": 1}, "", "a table of 1 key"),
])
def test_describe_value(value, field, expected):
    assert describe_value(value, field) == expected


def test_field_is_secret_reads_whole_words():
    assert field_is_secret("notify.channel[0].url") and field_is_secret(("pool", "secrets", "x"))
    assert field_is_secret("api_token") and field_is_secret("apikey") and field_is_secret("pool.env")
    assert not field_is_secret("incidents.open_after_passes_p3") and not field_is_secret("keyboard_s")


def test_public_spec_keeps_names_drops_values():
    spec = {"image": "i", "environment": ["A=1", "B=x=y", "PASSTHROUGH"], "command": ["sh"]}
    out = public_spec(spec)
    assert out == {"image": "i", "environment_keys": ["A", "B", "PASSTHROUGH"], "command": ["sh"]}
    assert spec["environment"] == ["A=1", "B=x=y", "PASSTHROUGH"]
    assert public_spec(None) is None and public_spec({"image": "i"}) == {"image": "i"}
    assert environment_keys({"K": "v"}) == ["K"] and environment_keys(None) == []


# --------------------------------------------------------------------------- config errors


BAD_URL = f"mailto://user:{SECRET}@127.0.0.1:1?bad="


@pytest.mark.parametrize("policy, field", [
    # the URL typed into a field of the wrong type
    (f'[notify]\ntimeout_s = "{BAD_URL}"\n', "notify.timeout_s"),
    # the URL fine, another field of the channel wrong: the URL must not tag along
    (f'[[notify.channel]]\nname = "mail"\nurl = "{BAD_URL}"\nmin_priority = "P9"\n', "notify.channel[0].min_priority"),
    # the URL where a list goes, in an unknown key, in a list
    (f'[[notify.channel]]\nname = "mail"\nurl = ["{BAD_URL}"]\n', "notify.channel[0].url"),
    (f'[notify]\npassword = "{SECRET}"\n', "notify.password"),
    (f'[backoff]\n"{BAD_URL}" = 1\n', "backoff[a URL of"),
    (f'[[notify.channel]]\nname = "mail"\nurl = "{SECRET}"\n', "notify.channel[0].url"),  # no scheme
    (f'[housekeeping]\nlock_globs = ["{BAD_URL}"]\n', "housekeeping.lock_globs: Value error, expected an absolute"),
    (f'[pool]\nsecrets = {{ token = "{SECRET}-{SECRET}" }}\n', "pool.secrets"),
    # not TOML at all, and tomllib quotes the key: "Cannot declare ('mailto://...',) twice"
    (f'["{BAD_URL}"]\n["{BAD_URL}"]\n', "<root>: not valid TOML: Cannot declare"),
])
def test_policy_error_names_file_and_field_never_the_secret(tmp_path, policy, field):
    p = tmp_path / "policy.toml"
    p.write_text(policy)
    with pytest.raises(ConfigError) as ei:
        load_policy(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}: {field}"), msg
    assert SECRET not in msg, msg


def test_inventory_yaml_syntax_error_does_not_quote_the_document(tmp_path):
    f = tmp_path / "services.yaml"
    f.write_text(f"services:\n  - name: web\n    compose_file: {SECRET}: [\n")
    with pytest.raises(ConfigError) as ei:
        parse_services_file(f, "n")
    msg = str(ei.value)
    assert msg.startswith(f"{f}: <root>: not valid YAML: ") and "line 3" in msg and SECRET not in msg, msg


def test_inventory_error_describes_a_secret_looking_value(tmp_path):
    f = tmp_path / "services.yaml"
    f.write_text(f"services:\n  - name: web\n    desired: {BAD_URL}\n")
    with pytest.raises(ConfigError) as ei:
        parse_services_file(f, "n")
    msg = str(ei.value)
    assert msg.startswith(f"{f}: services[0].desired (service 'web'): ") and SECRET not in msg, msg
    assert "mailto://user:****@127.0.0.1:1" in msg


# --------------------------------------------------------------------------- channel URLs at send time


@pytest.mark.parametrize("url", [
    "mailto://user:${DW_PW}@",  # expands to a URL apprise cannot load (no host)
    "json://127.0.0.1:1/${DW_PW}",  # expands fine, delivery fails (nothing listens on port 1)
    "nosuchscheme://user:${DW_PW}@host",
])
def test_an_expanded_channel_url_is_never_in_a_delivery_error_or_log(url, caplog):
    from dockwarden.config_notify import Channel
    from dockwarden.sinks.notify import deliver

    caplog.set_level("DEBUG")
    ok, err = deliver(Channel(name="c", url=url), "t", "b", timeout_s=1, env={"DW_PW": SECRET})
    assert not ok and err and "channel c" in err
    assert SECRET not in err and SECRET not in caplog.text, (err, caplog.text)
