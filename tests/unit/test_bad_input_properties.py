"""Issue 8, bad input: property tests of the three parsers of what people write.

For any input, the inventory parser (``parse_services_file``/``load_inventory``),
the policy parser (``load_policy``) and the label parser (``spec_from_labels``)
either succeed or fail with :class:`ConfigError` (a problem text for labels):
never a traceback (KeyError, TypeError, AttributeError, ValueError...). Every
message names the file (the container for labels), a field path and what was
expected, and never carries the password of a URL planted among the values.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from dockwarden.config import ConfigError, Policy, load_policy
from dockwarden.inventory import ServiceEntry, load_inventory, parse_services_file, spec_from_labels
from dockwarden.model import ContainerState

#: DW_PROPERTY_EXAMPLES=5000 for a deeper search than the default run's.
SETTINGS = settings(max_examples=int(os.environ.get("DW_PROPERTY_EXAMPLES", "200")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])

#: Planted in the generated values: an error may say a URL was there, never its password.
SECRET = "hunter2secret"
SECRET_URL = f"mailto://user:{SECRET}@127.0.0.1:1?bad="

#: What a message says about what was expected: our own words ("expected ..."),
#: or pydantic's ("Input should be ...", "Field required", "Extra inputs are not permitted").
_EXPECTED = re.compile(r"expected|should|required|not permitted|unknown|duplicate|cannot|must|need|either",
                       re.IGNORECASE)


def _field_names(model: type[BaseModel], out: set[str]) -> set[str]:
    """Every field name of a pydantic model tree (to aim the generators at real keys)."""
    for name, f in model.model_fields.items():
        out.add(name)
        stack = [f.annotation]
        while stack:
            t = stack.pop()
            if isinstance(t, type) and issubclass(t, BaseModel) and t is not model:
                _field_names(t, out)
            stack.extend(typing.get_args(t))
    return out


POLICY_KEYS = sorted(_field_names(Policy, set()))
SERVICE_KEYS = sorted(ServiceEntry.model_fields) + ["services"]
WORDS = ["running", "stopped", "auto", "recommend", "off", "observe", "P1", "p3", "mon", "03:00", "25:00",
         "/srv/x/*", "512m", "web", "db", SECRET_URL, "json://127.0.0.1:9/x", "", " ", "-1"]


def _scalars(with_dates: bool) -> st.SearchStrategy:
    base = [st.booleans(), st.integers(min_value=-2**63, max_value=2**63 - 1), st.floats(allow_nan=True),
            st.text(max_size=12), st.sampled_from(WORDS)]
    if with_dates:
        base.append(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)))
    return st.one_of(*base)


def _values(keys: list[str], *, with_dates: bool, with_none: bool) -> st.SearchStrategy:
    key = st.one_of(st.sampled_from(keys), st.text(max_size=8), st.just(SECRET_URL))
    leaf = _scalars(with_dates) | (st.none() if with_none else st.nothing())
    return st.recursive(leaf, lambda ch: st.lists(ch, max_size=4) | st.dictionaries(key, ch, max_size=5),
                        max_leaves=25)


# --------------------------------------------------------------------------- messages


def _check_message(msg: str, where: str) -> None:
    """Each line: ``WHERE: field.path: what was wrong and expected``, no secret."""
    assert SECRET not in msg, msg
    for line in msg.splitlines():
        assert line.startswith(f"{where}: "), (where, msg)
        rest = line[len(where) + 2:]
        field, sep, text = rest.partition(": ")
        assert sep and field and text.strip(), line
        assert re.fullmatch(r"<root>|([A-Za-z0-9_\-]+|\[[^\]]+\])(\.[A-Za-z0-9_\-]+|\[[^\]]+\])*"
                            r"( \(service '[^']+'\))?", field), line
        assert _EXPECTED.search(text), line


# --------------------------------------------------------------------------- inventory


_SERVICE = st.dictionaries(st.sampled_from(SERVICE_KEYS) | st.text(max_size=6),
                           _values(SERVICE_KEYS, with_dates=True, with_none=True), max_size=6)
_INVENTORY_DOC = st.one_of(
    st.fixed_dictionaries({"services": st.lists(_SERVICE | _values(SERVICE_KEYS, with_dates=True, with_none=True),
                                                max_size=4)}),
    st.dictionaries(st.one_of(st.sampled_from(SERVICE_KEYS), st.text(max_size=6), st.integers(), st.none(),
                              st.booleans()),
                    _values(SERVICE_KEYS, with_dates=True, with_none=True), max_size=4),
    _values(SERVICE_KEYS, with_dates=True, with_none=True),
)


def _parse_inventory(path: Path) -> None:
    try:
        parse_services_file(path, "n")
    except ConfigError as e:
        _check_message(str(e), str(path))


@SETTINGS
@given(doc=_INVENTORY_DOC)
# Found by this test: an empty key dropped from the field path (the service note landed mid-message).
@example(doc={"services": [{"compose_file": None, "name": "0", "": {}}]})
# Found by this test: a message that did not say what was expected (int_parsing_size).
@example(doc={"services": [{"max_restarts": 9.223372036854776e+18}]})
# Found by this test: a dotted key read as a path ("services[0].0.").
@example(doc={"services": [{"0.": None}]})
@example(doc={1: 2, None: 3})  # non-string keys
# Found by this test: a key ending in a newline passed an ``^...$`` check (``$`` matches before
# a final newline) and broke the message in two lines; every anchored pattern now ends in ``\Z``.
@example(doc={"services": [{"A\n": None}]})
def test_inventory_any_yaml_document_gives_a_config_error_or_services(tmp_path, doc):
    f = tmp_path / "services.yaml"
    f.write_text(yaml.safe_dump(doc, allow_unicode=True))
    _parse_inventory(f)


@SETTINGS
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
@example(data=b"\x80")  # found by this test: UnicodeDecodeError escaped parse_services_file
def test_inventory_any_bytes_give_a_config_error_or_services(tmp_path, data):
    f = tmp_path / "services.yaml"
    f.write_bytes(data)
    _parse_inventory(f)


@SETTINGS
@given(doc=_INVENTORY_DOC)
def test_load_inventory_of_a_directory_fails_only_with_config_error(tmp_path, doc):
    f = tmp_path / "inv" / "hosts" / "n" / "services.yaml"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(yaml.safe_dump(doc, allow_unicode=True))
    try:
        load_inventory(tmp_path / "inv", "n")
    except ConfigError as e:
        _check_message(str(e), str(f))


# --------------------------------------------------------------------------- policy


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_str(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_document(doc: dict) -> str:
    """A TOML document with the same meaning as ``doc`` (every table inline)."""
    return "".join(f"{_toml_str(k)} = {_toml_value(v)}\n" for k, v in doc.items())


_POLICY_DOC = st.dictionaries(
    st.sampled_from(POLICY_KEYS) | st.text(max_size=8),
    st.dictionaries(st.sampled_from(POLICY_KEYS) | st.text(max_size=8),
                    _values(POLICY_KEYS, with_dates=True, with_none=False), max_size=6)
    | _values(POLICY_KEYS, with_dates=True, with_none=False),
    max_size=5,
)


def _load_policy(path: Path) -> None:
    try:
        load_policy(path)
    except ConfigError as e:
        _check_message(str(e), str(path))


@SETTINGS
@given(doc=_POLICY_DOC)
def test_policy_any_toml_document_gives_a_config_error_or_a_policy(tmp_path, doc):
    text = toml_document(doc)
    f = tmp_path / "policy.toml"
    f.write_text(text, encoding="utf-8")
    _load_policy(f)


@SETTINGS
@given(text=st.text(max_size=300))
def test_policy_any_text_gives_a_config_error_or_a_policy(tmp_path, text):
    f = tmp_path / "policy.toml"
    f.write_bytes(text.encode("utf-8", "surrogatepass"))
    _load_policy(f)


@SETTINGS
@given(data=st.binary(max_size=200))
@example(data=b"\xff = 1")  # UnicodeDecodeError escaped load_policy too
def test_policy_any_bytes_give_a_config_error_or_a_policy(tmp_path, data):
    f = tmp_path / "policy.toml"
    f.write_bytes(data)
    _load_policy(f)


def test_toml_writer_round_trips():
    """The generator's TOML writer means what it says (else the policy properties test little)."""
    import tomllib

    doc = {"a b": {"x": [1, 2.5, "q\"\\\x7f\n"], "y": {"": True}}, "t": dt.datetime(2020, 1, 2, 3, 4, 5)}
    assert tomllib.loads(toml_document(doc)) == doc


# --------------------------------------------------------------------------- labels


LABEL_KEYS = ["dockwarden.enable", "DockWarden.Enable", "dockwarden.desired", "dockwarden.remediation",
              "DOCKWARDEN.DESIRED", "com.docker.compose.project"]
LABEL_VALUES = ["true", "TRUE", " yes ", "on", "1", "false", "running", "Stopped", "auto", "OFF", "recommend",
                SECRET_URL, "", " "]


@SETTINGS
@given(labels=st.dictionaries(st.sampled_from(LABEL_KEYS) | st.text(max_size=20),
                              st.sampled_from(LABEL_VALUES) | st.text(max_size=30), max_size=8),
       name=st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,20}", fullmatch=True))
def test_labels_any_label_dict_gives_a_spec_or_a_named_problem(labels, name):
    c = ContainerState(id="x" * 64, name=name, image="img", state="running", labels=labels)
    spec, problem = spec_from_labels(c, "n")
    if problem is None:
        return
    assert spec is not None  # a bad label is ignored, the container is still tracked
    assert SECRET not in problem, problem
    assert problem.startswith(f"container {name}: label dockwarden."), problem
    for part in problem[len(f"container {name}: "):].split("; "):
        assert re.match(r"label dockwarden\.(desired|remediation): expected ", part), problem


@pytest.mark.parametrize("value", [SECRET_URL, f"{SECRET} {SECRET}"])
def test_label_problem_never_echoes_a_secret_looking_value(value):
    c = ContainerState(id="x", name="web", image="i", state="running",
                       labels={"dockwarden.enable": "true", "dockwarden.desired": value})
    spec, problem = spec_from_labels(c, "n")
    assert spec is not None and problem is not None
    assert SECRET not in problem and "dockwarden.desired" in problem and "expected running or stopped" in problem
