"""What may leave dockwarden: values in error messages, URLs in logs, container
specs in ``world.json``.

Design.md promise 3: secrets (container environment, channel URLs) never reach
logs, events or outputs. Three pure functions keep it:

- :func:`redact_url`: an apprise or any ``scheme://`` URL with its password,
  tokens and secret-looking parts masked (``mailto://user:****@host``), after
  apprise's ``URLBase.url(privacy=True)`` and ``utils.cwe312.cwe312_url``
  (apprise is not imported here: this module sits below the pure config layer);
- :func:`describe_value`: how an error message may name a value it rejects;
- :func:`public_spec`: a container's creation spec without its environment
  values (only the database keeps those, for ``recreate``).

PURE: no I/O.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

MASK = "****"

#: Words of a field name that say its value may be a secret (``notify.channel[0].url``,
#: ``api_token``, ``pool.env.X``). Matched against whole words of the name
#: (split on anything but letters and digits) and word endings (``apikey``).
SECRET_WORDS = frozenset({
    "url", "urls", "uri", "dsn", "token", "tokens", "password", "passwd", "pass", "pw", "pwd", "secret",
    "secrets", "key", "keys", "apikey", "credential", "credentials", "auth", "authorization", "cookie",
    "env", "environment", "private", "signature", "sig",
})
_SECRET_ENDINGS = ("key", "token", "secret", "password", "passwd")

#: Query parameters whose value is always masked (apprise's cwe312_url list, plus more).
_SECRET_QUERY = frozenset({"password", "pass", "pw", "secret", "token", "key", "apikey", "api_key", "id",
                           "to", "from", "user", "access_token", "auth", "sig", "signature", "webhook"})

#: A value short and plain enough to echo in an error (a number-like word, an
#: identifier, a size like 512m, a time like 03:00, a day name).
_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,39}\Z")
_HOST = re.compile(r"^(?:[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?\Z")
_MAX_PLAIN = 40


def field_is_secret(path: str | Sequence[Any]) -> bool:
    """True when a field path names something that may hold a secret.

    Args:
        path: a dotted path (``notify.channel[0].url``) or its parts
            (``("notify", "channel", 0, "url")``).
    Returns:
        bool: any part has a word from :data:`SECRET_WORDS` or ends in
        key/token/secret/password (``open_after_passes_p3`` is not secret:
        ``passes`` is not ``pass``).
    """
    parts = [path] if isinstance(path, str) else [str(p) for p in path]
    for part in parts:
        for word in re.split(r"[^a-z0-9]+", part.lower()):
            if word in SECRET_WORDS or (word and word.endswith(_SECRET_ENDINGS)):
                return True
    return False


_NAME_WORD = re.compile(r"^(?:[a-z]+|[A-Z]+|[A-Z][a-z]+)[0-9]{0,3}\Z|^[0-9]{1,4}\Z")


def is_plain_name(name: str) -> bool:
    """True for a key that reads as a name (``restart_windw_s``, ``MY_TOKEN``,
    ``dockwarden.desired``, ``p3``), so an error may echo it; False for one
    that reads as a token pasted where a key goes (``ghp_16C7e42F...``), a URL,
    or anything with spaces or ``@``.

    Args:
        name: a mapping key (TOML table key, YAML key, label key).
    Returns:
        bool: at most 64 characters, words of letters (one case, or Capitalised)
        with at most 3 trailing digits, joined by ``_ . -``.
    """
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        return False
    words = re.split(r"[_.-]", name)
    return all(w == "" or _NAME_WORD.match(w) for w in words) and any(words)


def _looks_secret(word: str) -> bool:
    """cwe312-style guess: long words and words mixing many character classes
    (``aB3$x``) are secrets; ``localhost``, ``x``, ``alerts`` are not."""
    if len(word) >= 16:
        return True
    changes, last = 0, None
    for ch in word:
        cls = "d" if ch.isdigit() else "u" if ch.isupper() else "l" if ch.islower() else "s"
        if cls != last or cls == "s":
            changes += 1
            if changes >= 5:
                return True
        last = cls
    return False


def _word(word: str) -> str:
    return MASK if word and _looks_secret(word) else word


def redact_url(url: str) -> str:
    """A URL with everything that may be secret masked, for logs and errors.

    ``mailto://user:hunter2@smtp.example.com:587/?from=x`` becomes
    ``mailto://user:****@smtp.example.com:587/?from=****``. Rules (after apprise's
    ``cwe312_url``): the password is always masked; the user, each path segment
    and each query value are masked when they look like tokens (16 characters
    or more, or mixing character classes); the host is kept only when it looks
    like a host name or address; query values under secret-looking names
    (``token``, ``key``, ``to``...) and any fragment are masked. When an
    unencoded ``@``, ``/``, ``?`` or ``#`` in the password could make the URL
    ambiguous (an ``@`` after the host), the host and what follows are masked too,
    or everything after the scheme.

    Args:
        url: any string; without ``://`` it is not a URL and becomes ``****``.
    Returns:
        str: the redacted URL. Never contains the password of ``url``.
    """
    if not isinstance(url, str) or "://" not in url:
        return MASK
    scheme, rest = url.split("://", 1)
    scheme = scheme if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,31}", scheme) else MASK
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" not in authority and "@" in tail and ":" in authority:
        # "user:pa/ss@host": an unencoded / ? or # in the password; where it
        # ends cannot be told, so nothing after the scheme is shown.
        return f"{scheme}://{MASK}"
    auth = ""
    if "@" in authority:
        userinfo, authority = authority.rsplit("@", 1)
        user, colon, _password = userinfo.partition(":")
        shown = user if _PLAIN.match(user) and not _looks_secret(user) else (MASK if user else "")
        auth = f"{shown}{':' + MASK if colon else ''}@"
        if colon and "@" in tail:
            # "user:p@A?x@host": the password may run on past its first "@" into
            # what looks like the host, path or query; show none of them.
            return f"{scheme}://{auth}{MASK}" + (f"/{MASK}" if tail else "")
    tail, hash_, fragment = tail.partition("#")
    path, qmark, query = tail.partition("?")
    segments = "/".join(MASK if any(c in seg for c in "@:") else _word(seg) for seg in path.split("/"))
    params = []
    for pair in query.split("&") if query else ():
        k, eq, v = pair.partition("=")
        k_out = k if (not k or _PLAIN.match(k)) and not _looks_secret(k) else MASK
        secret = k.lower() in _SECRET_QUERY or field_is_secret(k) or any(c in v for c in "@:")
        params.append(f"{k_out}{eq}{MASK if v and secret else _word(v)}")
    return f"{scheme}://{auth}{_host(authority)}{segments}{qmark}{'&'.join(params)}{hash_ and '#' + MASK}"


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s'\"<>]*")


def redact_urls_in(text: str) -> str:
    """``text`` with every ``scheme://...`` in it passed through :func:`redact_url`
    (for messages of other libraries: TOML parse errors, apprise's log)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def _host(authority: str) -> str:
    """The host[:port] part as shown: kept when it is a dotted name, an address,
    or a short plain name (``localhost``); a token in the host's place (as in
    ``tgram://<bot token>/<chat>``) is masked."""
    if not authority:
        return ""
    if not _HOST.match(authority):
        return MASK
    name = re.sub(r":\d{1,5}$", "", authority)
    if "." in name or name.startswith("[") or not _looks_secret(name):
        return authority
    return MASK


#: A number or version written as text (``9.3e18``, ``1.2.3``, ``-1``, ``10.0.0.1``).
_NUMBERISH = re.compile(r"^[+-]?[0-9][0-9_]*(?:\.[0-9_]*)*(?:[eE][+-]?[0-9]+)?\Z")
_PATHISH = re.compile(r"^[A-Za-z0-9_./*?:+-]{1,100}\Z")


def _plain_path(value: str) -> bool:
    """A path, glob or mount (``/srv/x/*``, ``data:/x:ro``): has a ``/``, only
    path characters, and no part that looks like a token."""
    return ("/" in value and bool(_PATHISH.match(value))
            and not any(_looks_secret(part) for part in re.split(r"[/:]", value)))


def describe_value(value: Any, field: str | Sequence[Any] = "") -> str:
    """How an error message may name a value it rejects.

    Numbers (also as text: ``9.3e18``, ``1.2.3``), booleans, ``null``, short plain words (up to 40 characters of
    letters, digits and ``_ . : + -``, not secret-looking) and plain paths
    (``/srv/x/*``, ``data:/x:ro``) are echoed as ``repr``; nothing else is. A string with ``://`` is described by its
    length and its :func:`redact_url` form; any other string (with ``@``, spaces,
    longer than 40 characters, or under a field whose name suggests a secret:
    url, token, password, secret, key, env...) by its length only; lists and
    tables by their size.

    Args:
        value: the rejected value (as read from TOML/YAML, or a label string).
        field: the field path it was found under (dotted string or parts).
    Returns:
        str: e.g. ``-1``, ``'later'``, ``a URL of 43 characters (mailto://user:****@host)``,
        ``a string of 12 characters``, ``a list of 3 items``.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        n = len(value)
        if "://" in value:
            return f"a URL of {n} characters ({redact_url(value)})"
        if not field_is_secret(field) and (_PLAIN.match(value) and not _looks_secret(value) or _plain_path(value)
                                           or len(value) <= _MAX_PLAIN and _NUMBERISH.match(value)):
            return repr(value)
        return "an empty string" if n == 0 else f"a string of {n} character{'s' if n != 1 else ''}"
    if isinstance(value, Mapping):
        return f"a table of {len(value)} key{'s' if len(value) != 1 else ''}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    return f"a value of type {type(value).__name__}"


def environment_keys(environment: Any) -> list[str]:
    """The variable names of a Docker ``Config.Env`` list (``["K=V", "FLAG"]`` -> ``["K", "FLAG"]``).

    Args:
        environment: a list of ``K=V`` strings (spec_of's ``environment``), a
            mapping, or anything else (gives ``[]``).
    Returns:
        list[str]: names in order, values never.
    """
    if isinstance(environment, Mapping):
        return [str(k) for k in environment]
    if isinstance(environment, (list, tuple)):
        return [str(e).split("=", 1)[0] for e in environment]
    return []


def public_spec(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A creation spec (``observe.inspect.spec_of`` shape) fit to leave the database.

    ``environment`` (values of ``Config.Env``, where ``docker run -e SECRET=...``
    lands) is replaced by ``environment_keys``: the names only.

    Args:
        spec: the full spec, or None.
    Returns:
        dict | None: a copy without ``environment``; ``spec`` itself is not changed.
    """
    if spec is None:
        return None
    out = {k: v for k, v in spec.items() if k != "environment"}
    if "environment" in spec:
        out["environment_keys"] = environment_keys(spec["environment"])
    return out
