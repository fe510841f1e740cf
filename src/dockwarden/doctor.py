"""``dockwarden doctor``: check the set-up, explain each problem and its fix.

Each check is a small function that returns a :class:`Check` (name, status
``ok | warn | fail``, what was found, how to fix it). The checks take their
facts as arguments (paths, an engine's ``/info``, a process list...), so each is
tested with hand-made inputs; :func:`gather` collects the facts on this host and
runs them all. The command (``cli_doctor``) renders them and exits 0 when all
are ok, 1 with warnings, 2 with failures, like ``once``.

Nothing here prints a channel URL unredacted (``sinks.notify.redacted``) or
sends a message unless asked (``send``).
"""

from __future__ import annotations

import os
import re
import socket
import stat
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

Status = Literal["ok", "warn", "fail"]

#: The engine's socket when ``DOCKER_HOST`` is unset (the docker SDK's default).
DEFAULT_SOCKET = "/var/run/docker.sock"
#: The oldest Engine API with one-shot stats (API 1.41, Engine 20.10; field notes).
MIN_API_VERSION = (1, 41)
#: Clock skew against the engine above which doctor warns, seconds. A live event
#: is told from a replayed one by a 2 s window (``model.EngineEvent.LIVE_SKEW_S``).
MAX_CLOCK_SKEW_S = 2.0
#: Seconds a channel's TCP probe may take.
PROBE_TIMEOUT_S = 3.0
#: apprise schemes whose server doctor can reach with a TCP connect, and the
#: port when the URL names none ((insecure, secure)).
PROBED_SCHEMES: dict[str, tuple[int, int]] = {
    "mailto": (25, 587), "mailtos": (587, 587), "json": (80, 443), "jsons": (443, 443),
    "xml": (80, 443), "xmls": (443, 443), "form": (80, 443), "forms": (443, 443),
}


@dataclass(frozen=True)
class Check:
    """One finding of ``doctor``.

    ``status``: ``ok``, ``warn`` (works, but not as it should) or ``fail``
    (dockwarden cannot do its job). ``detail`` says what was found, ``fix`` what to
    do about it (empty when ok).
    """

    name: str
    status: Status
    detail: str
    fix: str = ""


def exit_code(checks: Iterable[Check]) -> int:
    """0 when every check is ok, 1 with warnings, 2 with a failure (like ``once``)."""
    statuses = {c.status for c in checks}
    return 2 if "fail" in statuses else 1 if "warn" in statuses else 0


# --------------------------------------------------------------------------- engine and socket


def socket_path(docker_host: str | None) -> str | None:
    """The unix socket of ``DOCKER_HOST`` (default :data:`DEFAULT_SOCKET`), or
    None for a TCP/SSH engine."""
    if not docker_host:
        return DEFAULT_SOCKET
    if docker_host.startswith("unix://"):
        return docker_host[len("unix://"):] or DEFAULT_SOCKET
    return None


def check_engine(info: Mapping[str, Any] | None, error: str | None, docker_host: str | None) -> Check:
    """The engine answers, and which API version was negotiated.

    Args:
        info: ``ContainerObserver.engine_info()`` (``server_version``,
            ``api_version``, ``driver``, ``cgroup_version``), or None.
        error: why the engine could not be reached, or None.
        docker_host: ``DOCKER_HOST`` (None: the local socket).
    """
    where = docker_host or f"unix://{DEFAULT_SOCKET}"
    if error is not None or info is None:
        return Check("engine", "fail", f"the Docker engine at {where} does not answer: {error}",
                     "start it (`systemctl start docker`, or `dockerd`), or point DOCKER_HOST at a running engine")
    api = str(info.get("api_version") or "?")
    detail = (f"Docker Engine {info.get('server_version')} at {where}, API {api}, storage driver "
              f"{info.get('driver')}, cgroup v{info.get('cgroup_version')}")
    try:
        version = tuple(int(x) for x in api.split(".")[:2])
    except ValueError:
        version = MIN_API_VERSION
    if version < MIN_API_VERSION:
        return Check("engine", "warn", f"{detail}: older than API 1.41, so CPU/memory figures of remote "
                     f"containers are slow (no one-shot stats)", "upgrade the engine to 20.10 or later")
    return Check("engine", "ok", detail)


def _can_connect(path: str) -> str | None:
    """None when this process can connect to the unix socket, else the error."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(PROBE_TIMEOUT_S)
    try:
        s.connect(path)
    except OSError as e:
        return e.strerror or str(e)
    finally:
        s.close()
    return None


def check_socket(docker_host: str | None, *, uid: int | None = None,
                 connect: Callable[[str], str | None] = _can_connect) -> Check:
    """The engine's unix socket: mode, owner, and whether this user can connect.

    Args:
        docker_host: ``DOCKER_HOST`` (None: :data:`DEFAULT_SOCKET`).
        uid: the user to name in messages (default: this process's).
        connect: tries a connection, returns None or the error text.
    """
    path = socket_path(docker_host)
    if path is None:
        scheme = docker_host.split("://", 1)[0] if docker_host else "?"
        if scheme == "tcp" and not os.environ.get("DOCKER_TLS_VERIFY"):
            host = urllib.parse.urlsplit(docker_host or "").hostname or ""
            if host not in ("localhost", "127.0.0.1", "::1"):
                return Check("socket", "warn", f"{docker_host}: plain TCP without TLS: anyone who reaches that "
                             f"port controls the engine, and every container", "use TLS (DOCKER_TLS_VERIFY=1 "
                             "with certificates) or an ssh:// engine address")
        return Check("socket", "ok", f"{docker_host}: not a unix socket, no file permissions to check")
    uid = os.getuid() if uid is None else uid
    try:
        st = os.stat(path)
    except OSError as e:
        return Check("socket", "fail", f"{path}: {e.strerror or e}",
                     "start the engine, or set DOCKER_HOST to the socket it listens on")
    if not stat.S_ISSOCK(st.st_mode):
        return Check("socket", "fail", f"{path} is not a socket", "set DOCKER_HOST to the engine's socket")
    owner = f"{_user(st.st_uid)}:{_group(st.st_gid)}"
    mode = stat.filemode(st.st_mode)
    error = connect(path)
    if error is not None:
        return Check("socket", "fail", f"{path} ({mode} {owner}): user {_user(uid)} cannot connect: {error}",
                     f"run dockwarden as root, or add its user to the socket's group: "
                     f"`usermod -aG {_group(st.st_gid)} {_user(uid)}` (then log in again)")
    if st.st_mode & stat.S_IWOTH:
        return Check("socket", "warn", f"{path} ({mode} {owner}) is writable by every user: each of them "
                     f"controls the engine, which is root on this host", f"chmod 660 {path}")
    return Check("socket", "ok", f"{path} ({mode} {owner}): user {_user(uid)} can connect")


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# --------------------------------------------------------------------------- state dir, configuration


def check_state_dir(path: Path) -> Check:
    """The state dir can be written, and is private (dir 0700, files 0600:
    it holds the event log, the database and pool secrets).

    A state dir that does not exist yet is fine when its parent can be written
    (dockwarden creates it). The write test creates and removes a temporary file
    (so a read-only mount fails even for root).
    """
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK):
            return Check("state dir", "ok", f"{path} does not exist yet; dockwarden creates it on its first run")
        return Check("state dir", "fail", f"{path} does not exist and {parent} cannot be written",
                     f"create it: `install -d -m 700 {path}`, or choose another --state-dir")
    if not path.is_dir():
        return Check("state dir", "fail", f"{path} is not a directory",
                     "move the file away, or choose another --state-dir (DOCKWARDEN_STATE_DIR)")
    try:
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".doctor-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        return Check("state dir", "fail", f"{path} cannot be written: {e.strerror or e}",
                     "mount it read-write, free space on it, or choose another --state-dir")
    loose = []
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        loose.append(f"{path} is {mode:04o}")
    files = []
    for p in sorted(path.rglob("*")):
        try:
            st = p.lstat()
        except OSError:
            continue  # removed meanwhile (a WAL file)
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
            files.append(f"{p.relative_to(path)} ({stat.S_IMODE(st.st_mode):04o})")
        elif stat.S_ISDIR(st.st_mode) and st.st_mode & 0o077:
            files.append(f"{p.relative_to(path)}/ ({stat.S_IMODE(st.st_mode):04o})")
    if files:
        loose.append("readable by others: " + ", ".join(files[:5]) + (f" and {len(files) - 5} more"
                                                                       if len(files) > 5 else ""))
    if loose:
        return Check("state dir", "warn", f"{path} is writable but not private: " + "; ".join(loose),
                     f"chmod -R go-rwx {path}")
    return Check("state dir", "ok", f"{path} is writable and private")


def check_inventory(load: Callable[[], Any], path: Path | None) -> Check:
    """The inventory loads (every node's file validates).

    Args:
        load: loads it (``inventory.load_inventory`` bound to path and node);
            raises ``ConfigError``.
        path: the inventory given, or None.
    """
    from dockwarden.config import ConfigError

    if path is None:  # a valid set-up (labels only, as docker-autoheal users have it), so not a warning
        return Check("inventory", "ok", "none given: only labelled containers are tracked (dockwarden.enable=true, "
                     "autoheal=true); `dockwarden inventory init` writes one from what runs now")
    try:
        desired = load()
    except ConfigError as e:
        return Check("inventory", "fail", f"invalid: {e}", f"fix the file; `dockwarden inventory validate {path}`")
    return Check("inventory", "ok", f"{path}: node {desired.node}, {len(desired.services)} service(s)")


def check_policy(load: Callable[[], Any], path: Path | None) -> Check:
    """The policy file loads (``config.load_policy``; raises ``ConfigError``)."""
    from dockwarden.config import ConfigError

    try:
        load()
    except ConfigError as e:
        return Check("policy", "fail", f"invalid: {e}", "fix the file (examples/policy.toml documents every key)")
    return Check("policy", "ok", f"{path} is valid" if path else "no policy file: the built-in defaults")


# --------------------------------------------------------------------------- notification channels


def _tcp_probe(host: str, port: int, timeout_s: float) -> str | None:
    """None when a TCP connection to host:port opens within ``timeout_s``, else the error."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as e:
        return e.strerror or type(e).__name__


def check_channel(channel: Any, *, env: Mapping[str, str],
                  probe: Callable[[str, int, float], str | None] = _tcp_probe,
                  timeout_s: float = PROBE_TIMEOUT_S) -> Check:
    """One ``[[notify.channel]]``: its ``${VAR}`` secrets are set, apprise
    understands the URL, and (mailto/json/xml/form) its server accepts a TCP
    connection. Sends nothing. Only apprise's redacted URL is ever shown.

    Args:
        channel: a ``config_notify.Channel`` (``name``, ``url``).
        env: the environment ``${VAR}`` is read from.
        probe: opens a TCP connection, returns None or the error text.
        timeout_s: the probe's timeout, seconds.
    """
    import apprise

    from dockwarden.config_notify import expand_env
    from dockwarden.sinks.notify import redacted

    name = f"channel {channel.name}"
    try:
        url = expand_env(channel.url, dict(env))
    except KeyError as e:
        return Check(name, "fail", f"{redacted(channel.url)}: {e.args[0]}",
                     "set the variable in dockwarden's environment (systemd: Environment=/EnvironmentFile=)")
    shown = redacted(url)
    try:
        plugin = apprise.Apprise.instantiate(url)
    except Exception:  # apprise plugins should not raise on parse; be sure, and never echo the URL
        plugin = None
    if not plugin:
        return Check(name, "fail", f"{shown}: not a URL apprise understands",
                     "write an apprise URL (mailto://user:pass@host?to=..., json://host/path, ntfy://topic, "
                     "see https://github.com/caronc/apprise/wiki); `dockwarden notify test` sends a test message")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in PROBED_SCHEMES:
        return Check(name, "ok", f"{shown}: understood by apprise; a {scheme}:// service is not probed "
                     f"(`dockwarden doctor --send` sends a test message)")
    host = getattr(plugin, "smtp_host", None) or getattr(plugin, "host", None)
    secure = bool(getattr(plugin, "secure", False))
    port = getattr(plugin, "port", None) or PROBED_SCHEMES[scheme][1 if secure else 0]
    if not host:
        return Check(name, "fail", f"{shown}: names no server", "put the server's host in the URL")
    error = probe(str(host), int(port), timeout_s)
    if error is not None:
        return Check(name, "fail", f"{shown}: cannot connect to {host}:{port}: {error}",
                     "check the host and port in the URL, that the server runs, and that a firewall lets "
                     "this host reach it")
    return Check(name, "ok", f"{shown}: {host}:{port} accepts connections (nothing sent)")


def check_sent(results: Sequence[Mapping[str, Any]]) -> list[Check]:
    """``--send``: one check per channel from ``sinks.notify.send_test_messages``."""
    out = []
    for r in results:
        if r["delivered"]:
            out.append(Check(f"send {r['channel']}", "ok", f"{r['url']}: test message delivered"))
        else:
            out.append(Check(f"send {r['channel']}", "fail", f"{r['url']}: {r['error']}",
                             "check the URL's credentials and recipient; `dockwarden notify test "
                             f"--channel {r['channel']}` tries again"))
    return out


# --------------------------------------------------------------------------- stats, clock


def check_cgroups(*, root: str, engine_local: bool, running_ids: Sequence[str]) -> Check:
    """CPU/memory figures come from cgroup files (fast), else from the engine's
    stats API (about 1 s per container on Engine 20.10; field notes).

    Args:
        root: the cgroup mount (``/sys/fs/cgroup``).
        engine_local: whether the engine runs on this host (``observe.docker.engine_is_local``).
        running_ids: ids of running containers to probe.
    """
    from dockwarden.observe.stats import CgroupStatsReader

    if not engine_local:
        return Check("cgroups", "ok", "remote engine: CPU/memory figures come from its stats API")
    reader = CgroupStatsReader(root)
    if reader.version is None:
        return Check("cgroups", "warn", f"no cgroup hierarchy dockwarden knows under {root}: CPU/memory figures "
                     f"fall back to the engine's stats API (slower)",
                     "run dockwarden on the engine's host with /sys/fs/cgroup mounted (in a container: "
                     "-v /sys/fs/cgroup:/sys/fs/cgroup:ro)")
    if not running_ids:
        return Check("cgroups", "ok", f"cgroup v{reader.version} under {root} (no running container to probe)")
    got = reader.read(list(running_ids))
    if not got:
        return Check("cgroups", "warn", f"cgroup v{reader.version} under {root}, but no running container's "
                     f"files were found or readable: CPU/memory figures fall back to the engine's stats API",
                     "run dockwarden in the engine's cgroup namespace (in a container: --cgroupns=host and "
                     "-v /sys/fs/cgroup:/sys/fs/cgroup:ro)")
    return Check("cgroups", "ok", f"cgroup v{reader.version}: read {len(got)} of {len(running_ids)} running "
                 f"containers' files under {root}")


def check_clock(engine_time: datetime | None, local_time: datetime, *,
                max_skew_s: float = MAX_CLOCK_SKEW_S) -> Check:
    """This host's clock against the engine's (``/info`` SystemTime).

    Args:
        engine_time: the engine's clock (aware UTC), or None when unknown.
        local_time: this host's clock at the same moment (aware UTC).
        max_skew_s: warn beyond this many seconds.
    """
    if engine_time is None:
        return Check("clock", "warn", "the engine did not report its time (GET /info SystemTime)",
                     "upgrade the engine, or check the clocks by hand (`date -u` here and on the engine's host)")
    skew = (local_time - engine_time).total_seconds()
    if abs(skew) > max_skew_s:
        return Check("clock", "warn", f"this host's clock is {skew:+.1f} s off the engine's: events are "
                     f"read as replayed rather than live, and times in reports disagree",
                     "run NTP on both (`timedatectl set-ntp true`, chrony)")
    return Check("clock", "ok", f"within {abs(skew):.2f} s of the engine's")


# --------------------------------------------------------------------------- other supervisors


@dataclass(frozen=True)
class Proc:
    """A process that runs ``dockwarden run`` (from psutil): pid, command line, and
    the environment when readable (None when not allowed)."""

    pid: int
    cmdline: tuple[str, ...]
    environ: Mapping[str, str] | None = None


def _arg(cmdline: Sequence[str], flag: str, short: str | None = None) -> str | None:
    for i, a in enumerate(cmdline):
        if a in (flag, short) and i + 1 < len(cmdline):
            return cmdline[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def check_other_supervisors(*, state_dir: Path, lock_pid: int | None, docker_host: str | None,
                            procs: Sequence[Proc], own_pid: int,
                            containers: Sequence[Any] = (), own_ids: frozenset[str] = frozenset()) -> Check:
    """Another dockwarden on the same state dir or the same engine, or
    docker-autoheal beside it: each acts on the same containers.

    Args:
        state_dir: our state dir.
        lock_pid: the pid holding its ``daemon.lock`` (``lock.lock_held``), or None.
        docker_host: our ``DOCKER_HOST`` (None: the local socket).
        procs: ``dockwarden run`` processes on this host.
        own_pid: this process.
        containers: the engine's containers (``ContainerState``).
        own_ids: the container this process runs in, if any.
    """
    from dockwarden.inventory import runs_dockwarden

    ours = socket_path(docker_host) or docker_host
    found: list[str] = []
    for p in procs:
        if p.pid == own_pid or p.pid == lock_pid:
            continue
        env = p.environ or {}
        theirs_sd = _arg(p.cmdline, "--state-dir", "-s") or env.get("DOCKWARDEN_STATE_DIR")
        theirs_host = env.get("DOCKER_HOST") if p.environ is not None else None
        theirs = socket_path(theirs_host) or theirs_host
        if p.environ is not None and theirs != ours:
            continue  # another engine
        same_sd = theirs_sd is not None and Path(theirs_sd).resolve() == state_dir.resolve()
        found.append(f"pid {p.pid} (`{' '.join(p.cmdline)[:120]}`"
                     + (", the same state dir" if same_sd else f", state dir {theirs_sd or 'its default'}")
                     + (")" if p.environ is not None else "; its environment is not readable: maybe another engine)"))
    for c in containers:
        if c.id in own_ids or not c.running:
            continue
        if runs_dockwarden(c):
            found.append(f"container {c.name} runs dockwarden")
        elif re.search(r"(^|/)(docker-)?autoheal(:|$)", c.image or ""):
            found.append(f"container {c.name} runs docker-autoheal ({c.image}): it restarts unhealthy containers "
                         f"too, without dockwarden's backoff and intent")
    here = f"a daemon (pid {lock_pid}) holds {state_dir}/daemon.lock" if lock_pid else "no daemon runs on this state dir"
    if found:
        return Check("other supervisors", "warn", f"{here}; also acting on this engine: " + "; ".join(found),
                     "keep one supervisor per engine: stop the others (for docker-autoheal, see the README's "
                     "migration table), or give each dockwarden its own engine")
    return Check("other supervisors", "ok", f"{here}; no other dockwarden or docker-autoheal on this engine")


# --------------------------------------------------------------------------- restart policies


#: What each Docker restart policy does, and why it fights dockwarden.
RESTART_POLICY_EFFECT = {
    "always": "Docker restarts it whenever it exits and at every engine start, even after you stopped it, so "
              "an engine restart undoes a stop you recorded, and Docker's immediate restarts bypass "
              "dockwarden's backoff, restart budget and circuit breaker",
    "unless-stopped": "Docker restarts it whenever it exits unless you stopped it, racing dockwarden's start and "
                      "bypassing its backoff, restart budget and circuit breaker",
    "on-failure": "Docker restarts it when it exits non-zero (up to its retry count), racing dockwarden's start "
                  "and bypassing its backoff and restart budget; a crash loop shows as `restarting`",
}


def check_restart_policies(tracked: Sequence[tuple[str, str, str | None, str | None]]) -> Check:
    """Tracked containers whose Docker restart policy fights dockwarden's.

    Args:
        tracked: (service, container, restart policy ``HostConfig.RestartPolicy.Name``,
            compose project or None) of every tracked service's containers.
    """
    bad = [(s, c, (p or "no").split(":", 1)[0], proj) for s, c, p, proj in tracked
           if (p or "no").split(":", 1)[0] in RESTART_POLICY_EFFECT]
    if not bad:
        return Check("restart policies", "ok", f"none of {len(tracked)} tracked container(s) has a Docker "
                     f"restart policy: healing is dockwarden's")
    parts = [f"{c} (service {s}) has `restart: {p}`: {RESTART_POLICY_EFFECT[p]}" for s, c, p, _ in bad]
    fixes = [f"`docker update --restart=no {c}`" + (f" and `restart: \"no\"` in compose project {proj}'s file "
                                                    f"(else the next `compose up` brings it back)" if proj else "")
             for _, c, _, proj in bad]
    return Check("restart policies", "warn", "; ".join(parts), "; ".join(fixes))


# --------------------------------------------------------------------------- this process's container


_CONTAINER_ID = re.compile(r"(?:/docker/|/docker-|/containers/)([0-9a-f]{64})")


def own_container_ids(proc: str = "/proc") -> frozenset[str]:
    """Ids of the Docker container this process runs in, if any: read from
    ``/proc/self/cgroup`` (cgroup v1 ``/docker/<id>``, systemd ``docker-<id>.scope``)
    and ``/proc/self/mountinfo`` (``/var/lib/docker/containers/<id>/hostname``).

    Returns:
        frozenset[str]: empty on the host itself.
    """
    found: set[str] = set()
    for name in ("self/cgroup", "self/mountinfo"):
        try:
            text = Path(proc, name).read_text(errors="replace")
        except OSError:
            continue
        found.update(_CONTAINER_ID.findall(text))
    return frozenset(found)


def dockwarden_processes() -> list[Proc]:
    """``dockwarden run`` processes on this host (psutil); environment None where
    it cannot be read."""
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = tuple(p.info.get("cmdline") or ())
        words = [w.rsplit("/", 1)[-1] for w in cmd]
        if not any(w == "dockwarden" and words[i + 1:i + 2] == ["run"] for i, w in enumerate(words)):
            continue
        try:
            env: Mapping[str, str] | None = p.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            env = None
        out.append(Proc(p.info["pid"], cmd, env))
    return out


# --------------------------------------------------------------------------- all of them


@dataclass
class Report:
    """What :func:`gather` found: the checks in order."""

    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return exit_code(self.checks)


def gather(settings: Any, *, send: bool = False) -> Report:
    """Run every check on this host.

    Args:
        settings (config.Settings): state dir, inventory, policy, node, DOCKER_HOST.
        send (bool): also send a test message to each channel (``notify test``'s path).
    Returns:
        Report: engine, socket, state dir, inventory, policy, each channel (and
        each send), cgroups, clock, other supervisors, restart policies.
    Side effects: connects to the engine; a TCP connect per probed channel; with
        ``send``, one message per channel.
    """
    from dockwarden.config import ConfigError, Policy, load_policy
    from dockwarden.inventory import load_inventory, merge_labelled
    from dockwarden.lock import lock_held
    from dockwarden.model import WorldState, parse_time, utcnow
    from dockwarden.observe.docker import ENGINE_ERRORS, ContainerObserver, connect, engine_is_local
    from dockwarden.reconcile.resolve import find_containers

    s = settings
    r = Report()
    info: dict[str, Any] | None = None
    error: str | None = None
    containers: list[Any] = []
    client = None
    local_time = utcnow()
    try:
        client = connect(s.docker_host, timeout_s=PROBE_TIMEOUT_S + 2)
        observer = ContainerObserver(client, stats="none", workers=8)
        try:
            info = observer.engine_info()
            local_time = utcnow()
            containers = observer.observe(with_stats=False)
        finally:
            observer.close()
    except ENGINE_ERRORS as e:
        error = str(e)
    r.checks.append(check_engine(info, error, s.docker_host))
    r.checks.append(check_socket(s.docker_host))
    r.checks.append(check_state_dir(s.state_dir))
    r.checks.append(check_inventory(lambda: load_inventory(s.inventory, s.node), s.inventory))
    r.checks.append(check_policy(lambda: load_policy(s.policy_path), s.policy_path))
    try:
        policy = load_policy(s.policy_path)
    except ConfigError:
        policy = Policy()
    for ch in policy.notify.channel:
        r.checks.append(check_channel(ch, env=os.environ))
    if send and policy.notify.channel:
        from dockwarden.sinks.notify import send_test_messages

        r.checks += check_sent(send_test_messages(policy.notify.channel, node=s.node or socket.gethostname(),
                                                  timeout_s=policy.notify.timeout_s))
    own_ids = own_container_ids()
    if info is None:
        skipped = "not checked: the engine does not answer"
        r.checks += [Check(n, "warn", skipped, "see `engine` above")
                     for n in ("cgroups", "clock", "restart policies")]
    else:
        running = [c.id for c in containers if c.running]
        r.checks.append(check_cgroups(root="/sys/fs/cgroup", engine_local=engine_is_local(client),
                                      running_ids=running[:20]))
        r.checks.append(check_clock(parse_time(info.get("system_time")), local_time))
    lock_pid = _lock_pid(s.state_dir) if lock_held(s.state_dir) else None
    r.checks.append(check_other_supervisors(state_dir=s.state_dir, lock_pid=lock_pid, docker_host=s.docker_host,
                                            procs=dockwarden_processes(), own_pid=os.getpid(),
                                            containers=containers, own_ids=own_ids))
    if info is not None:
        try:
            desired = load_inventory(s.inventory, s.node)
        except ConfigError:
            desired = load_inventory(None, s.node)  # labelled containers only; the inventory check said why
        merged, _ = merge_labelled(desired, containers, policy.labels)
        world = WorldState(node=merged.node, observed_at=local_time, host=None, containers=tuple(containers))
        tracked = [(spec.name, c.name, c.restart_policy, c.compose_project)
                   for spec in merged.services.values() for c in find_containers(spec, world)]
        r.checks.append(check_restart_policies(tracked))
    return r


def _lock_pid(state_dir: Path) -> int | None:
    try:
        return int((state_dir / "daemon.lock").read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None
