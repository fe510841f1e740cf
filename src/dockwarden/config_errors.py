"""How a configuration error reads: ``FILE: field.path: what was expected (got VALUE)``.

One formatter for pydantic's ``ValidationError`` of every file dockwarden reads
(the policy, the inventory, pool flags). Values are named only as
:func:`dockwarden.redact.describe_value` allows, so a typo in a notification URL
never puts its password in an error, an event or a log; keys that are not plain
names (a secret pasted where a key goes) are described too.

PURE: no I/O.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from dockwarden.redact import describe_value, is_plain_name


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*\Z")


def format_loc(loc: tuple | list) -> str:
    """A pydantic error location as a field path: ``notify.channel[0].url``.

    A key that is not an identifier is quoted in brackets (``labels['a.b']``),
    and one that is not a plain name (a secret pasted where a key goes) is
    described, never echoed: ``pool.env[a string of 40 characters]``.
    """
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        elif _IDENT.match(str(p)):
            out += f".{p}" if out else str(p)
        elif p == "" or is_plain_name(str(p)):
            out += f"[{str(p)!r}]"
        else:
            out += f"[{describe_value(str(p), 'key')}]"
    return out


def _unwrap(t: Any) -> Any:
    """``X | None`` -> ``X`` (the model, when one of the union's members is)."""
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else (args[0] if len(args) == 1 else t)
    return t


def model_at(model: type[BaseModel], loc: tuple | list) -> type[BaseModel] | None:
    """The pydantic model that holds the value at ``loc`` inside ``model``, or None
    (``(notify, channel, 0)`` in Policy -> Channel)."""
    t: Any = model
    for p in loc:
        t = _unwrap(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            f = t.model_fields.get(p) if isinstance(p, str) else None
            if f is None:
                return None
            t = f.annotation
            continue
        origin, args = typing.get_origin(t), typing.get_args(t)
        if origin in (list, tuple, set, frozenset) and isinstance(p, int) and args:
            t = args[0]
        elif origin is dict and len(args) == 2:
            t = args[1]
        else:
            return None
    t = _unwrap(t)
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


def _message(e: dict, model: type[BaseModel] | None) -> str:
    if e["type"] == "extra_forbidden":
        parent = model_at(model, e["loc"][:-1]) if model is not None else None
        if parent is not None:
            return f"unknown key; expected one of: {', '.join(parent.model_fields)}"
        return "unknown key"
    if e["type"] == "missing":
        return "required field missing"
    msg = e["msg"]
    if not _SAYS_EXPECTED.search(msg):
        # e.g. int_parsing_size: "Unable to parse input string as an integer, exceeded maximum size"
        parent = model_at(model, e["loc"][:-1]) if model is not None and e["loc"] else None
        field = parent.model_fields.get(e["loc"][-1]) if parent is not None else None
        msg += f"; expected {_describe_type(field.annotation)}" if field is not None else "; expected a valid value"
    return msg


_SAYS_EXPECTED = re.compile(r"expected|should|required|must|need|either|not permitted", re.IGNORECASE)


def _describe_type(t: Any) -> str:
    """``int`` -> ``an integer (64-bit)``, ``list[str]`` -> ``a list``, a model -> ``a table``."""
    t = _unwrap(t)
    origin = typing.get_origin(t)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(t))
    if origin in (list, tuple, set, frozenset) or t in (list, tuple):
        return "a list"
    if origin is dict or t is dict or (isinstance(t, type) and issubclass(t, BaseModel)):
        return "a table"
    return {bool: "true or false", int: "an integer (64-bit)", float: "a number", str: "a string"}.get(t, "a valid value")


def _got(e: dict, loc: tuple) -> str:
    """`` (got VALUE)`` for one pydantic error, VALUE as :func:`describe_value`
    gives it (never a secret); empty for a missing or unknown field and for a
    whole table checked as one."""
    if e["type"] in ("missing", "extra_forbidden") or "input" not in e:
        return ""
    got = e["input"]
    if isinstance(got, dict) and not e["type"].endswith("_type"):
        return ""
    return f" (got {describe_value(got, [str(p) for p in loc])})"


def format_validation_error(path: str | Path, err: ValidationError, *, prefix: str = "",
                            model: type[BaseModel] | None = None,
                            note: Callable[[tuple], str] | None = None) -> str:
    """One line per problem: ``FILE: field.path: message (got VALUE)``.

    VALUE is what :func:`dockwarden.redact.describe_value` allows: numbers,
    booleans, short plain words and paths as written; URLs redacted; other
    strings, and anything under a secret-looking field (url, token, password,
    env...), by length only.

    Args:
        path: the file (or ``flags``) named at the start of each line.
        err: pydantic's error.
        prefix: a field path prepended to each location (``pool``).
        model: the model that was validated; with it an unknown key's line
            lists the keys expected there.
        note: given an error's location, text to put after the field path
            (the inventory names the service: `` (service 'web')``).
    Returns:
        str: one line per error.
    """
    lines = []
    for e in err.errors():
        loc = ((prefix,) if prefix else ()) + tuple(e["loc"])
        where = (format_loc(loc) or "<root>") + (note(tuple(e["loc"])) if note else "")
        lines.append(f"{path}: {where}: {_message(e, model)}{_got(e, loc)}")
    return "\n".join(lines)
