"""A fleet of real Docker engines on this machine, one per kind of endpoint
(issue 11): each a private ``dockerd`` in its own network namespace
(:class:`~tests.support.engine.PrivateEngine`), reached

- by its unix socket (``unix:///run/<name>/docker.sock``);
- over ``tcp://`` with TLS: a veth pair joins the host's namespace
  (``10.231.N.1/30``) and the engine's (``10.231.N.2/30``); dockerd listens on
  ``tcp://10.231.N.2:2376`` with ``--tlsverify``, its CA, server and client
  certificates generated here (:func:`make_tls_material`, with ``cryptography``);
- over ``ssh://``: an ``sshd`` (Debian's openssh-server) on ``127.0.0.1:<port>``
  with its own host key and config (key auth only, no PAM), whose sessions run
  ``docker system dial-stdio`` against the engine's socket (a forced command: the
  only thing docker-py's ssh transport asks for). The client side is a HOME
  directory (:class:`SshHome`) with ``.ssh/config``, ``.ssh/id_ed25519`` and
  ``.ssh/known_hosts``: docker-py 7's paramiko transport reads ``~/.ssh/config``
  (``IdentityFile``, ``User``, ``Port``) and loads ``~/.ssh/known_hosts`` with a
  ``RejectPolicy`` for unknown host keys, so a process with ``HOME`` there (the
  daemon under test; :meth:`SshHome.client` for the test itself) connects with
  no prompt.

Every :class:`FleetNode` can be frozen (SIGSTOP of dockerd), killed (SIGKILL of
dockerd), powered off (every process of the engine and its containers killed) and
started again; :meth:`Fleet.teardown` leaves no namespace, veth, mount, sshd or
dockerd behind, even after a failed test. The machine's own engine can be a node
too (:meth:`Fleet.add_host_engine`); it is never stopped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import docker
import yaml

from tests.support.engine import PrivateEngine

#: The /30 networks of tcp engines are carved from this range (host side .1, engine .2).
TCP_NET_PREFIX = "10.231"
TCP_PORT = 2376
#: Serialises picking a free 10.231.N.0/30 between processes on this machine.
_ALLOC_LOCK = Path("/run/dockwarden-test-fleet.lock")


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TlsFiles:
    """Paths of one TLS setup: the CA, the server's pair and the client's pair (PEM)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_config(self) -> docker.tls.TLSConfig:
        """What a docker-py client needs: verify the server by the CA, present the client pair."""
        return docker.tls.TLSConfig(client_cert=(str(self.client_cert), str(self.client_key)),
                                    ca_cert=str(self.ca_cert), verify=True)

    def node_yaml(self) -> dict:
        """The ``tls:`` block of a ``node.yaml`` (issue 11)."""
        return {"ca_cert": str(self.ca_cert), "client_cert": str(self.client_cert),
                "client_key": str(self.client_key), "verify": True}


def make_tls_material(directory: Path, *, server_ips: list[str], server_names: list[str] = (),
                      days: int = 2) -> TlsFiles:
    """Write a CA, a server certificate and a client certificate under ``directory``.

    Args:
        directory: created if missing (0700); the keys are written 0600.
        server_ips: IP addresses in the server certificate's subjectAltName
            (Docker's client and Python's ``ssl`` check the IP SAN).
        server_names: DNS names in the same SAN.
        days: validity from one hour ago.
    Returns:
        TlsFiles with the five PEM paths (``ca.pem``, ``server-cert.pem``,
        ``server-key.pem``, ``cert.pem``, ``key.pem``: the names Docker's docs use).
    Source: the layout of Docker's "Protect the Docker daemon socket" guide; keys are
    ECDSA P-256, which Go's TLS (dockerd) and OpenSSL (docker-py) both accept.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    until = now + dt.timedelta(days=days)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dockwarden tests"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = key()
    ca_name = name("dockwarden test CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage, sans: list[x509.GeneralName]):
        k = key()
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca_name).public_key(k.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                          content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=True, encipher_only=False,
                                          decipher_only=False), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                            critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(ca_key, hashes.SHA256()), k

    server_sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
    server_sans += [x509.DNSName(n) for n in server_names]
    server, server_key = leaf("dockerd", ExtendedKeyUsageOID.SERVER_AUTH, server_sans)
    client, client_key = leaf("dockwarden", ExtendedKeyUsageOID.CLIENT_AUTH, [])

    files = TlsFiles(ca_cert=directory / "ca.pem", server_cert=directory / "server-cert.pem",
                     server_key=directory / "server-key.pem", client_cert=directory / "cert.pem",
                     client_key=directory / "key.pem")

    def write(path: Path, data: bytes, mode: int) -> None:
        path.write_bytes(data)
        os.chmod(path, mode)

    pem = serialization.Encoding.PEM
    for path, cert in ((files.ca_cert, ca), (files.server_cert, server), (files.client_cert, client)):
        write(path, cert.public_bytes(pem), 0o644)
    for path, k in ((files.server_key, server_key), (files.client_key, client_key)):
        write(path, k.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
    return files


# --------------------------------------------------------------------------- ssh


def ed25519_keypair() -> tuple[bytes, str]:
    """A new Ed25519 key: (private key in OpenSSH PEM, public key line ``ssh-ed25519 AAAA...``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    k = Ed25519PrivateKey.generate()
    private = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                              serialization.NoEncryption())
    public = k.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SshHome:
    """A HOME directory for ssh clients (the daemon under test, and this test process
    while it builds a client): ``.ssh/id_ed25519`` (generated), ``.ssh/config`` with one
    ``Host`` block per endpoint and ``.ssh/known_hosts`` with each endpoint's host key."""

    def __init__(self, path: Path):
        self.path = path
        self.ssh = path / ".ssh"
        self.ssh.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        os.chmod(self.ssh, 0o700)
        private, self.public_key = ed25519_keypair()
        self.identity = self.ssh / "id_ed25519"
        self.identity.write_bytes(private)
        os.chmod(self.identity, 0o600)
        (self.ssh / "id_ed25519.pub").write_text(self.public_key + "\n")
        self._hosts: list[tuple[str, int, str]] = []  # (host, port, host public key line)
        self._write()

    def add_endpoint(self, host: str, port: int, host_public_key: str) -> None:
        self._hosts.append((host, port, host_public_key))
        self._write()

    def _write(self) -> None:
        blocks = []
        for host in sorted({h for h, _, _ in self._hosts} or {"127.0.0.1"}):
            blocks.append(f"Host {host}\n  User root\n  IdentityFile {self.identity}\n  IdentitiesOnly yes\n"
                          f"  StrictHostKeyChecking yes\n  UserKnownHostsFile {self.ssh / 'known_hosts'}\n")
        (self.ssh / "config").write_text("\n".join(blocks))
        os.chmod(self.ssh / "config", 0o600)
        lines = [f"[{h}]:{p} {key}" for h, p, key in self._hosts]
        (self.ssh / "known_hosts").write_text("".join(line + "\n" for line in lines))

    @contextlib.contextmanager
    def as_home(self) -> Iterator[None]:
        """HOME pointed here while a docker-py ssh client is built (it reads
        ``~/.ssh`` only then)."""
        old = os.environ.get("HOME")
        os.environ["HOME"] = str(self.path)
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = old

    def client(self, url: str, timeout: float = 30) -> docker.DockerClient:
        """A docker-py client of an ``ssh://`` endpoint, through paramiko, as the daemon connects."""
        with self.as_home():
            return docker.DockerClient(base_url=url, timeout=timeout)


class SshEndpoint:
    """An ``sshd`` on ``127.0.0.1:<free port>`` whose sessions are ``docker system
    dial-stdio`` to one engine's unix socket, for root with a key from ``home``."""

    def __init__(self, directory: Path, engine_host: str, home: SshHome):
        self.dir = directory
        self.engine_host = engine_host
        self.home = home
        self.port = free_port()
        self.url = f"ssh://root@127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = directory / "sshd.log"

    def start(self) -> None:
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        docker_cli = shutil.which("docker")
        if not Path(sshd).exists() or docker_cli is None:
            raise RuntimeError("an ssh endpoint needs sshd (Debian's openssh-server: scripts/ensure-docker.sh "
                               "installs it) and the docker CLI (for `docker system dial-stdio`)")
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        # sshd refuses to start without its privilege separation directory (the
        # package's service creates it at boot; here no service runs).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        private, public = ed25519_keypair()
        host_key = self.dir / "ssh_host_ed25519_key"
        host_key.write_bytes(private)
        os.chmod(host_key, 0o600)
        (self.dir / "authorized_keys").write_text(self.home.public_key + "\n")
        # The forced command: the only command docker-py's ssh transport runs (and the
        # docker CLI's ssh helper too) is `docker system dial-stdio`; DOCKER_HOST names
        # the engine the session bridges to.
        forced = f"exec /usr/bin/env DOCKER_HOST={self.engine_host} {docker_cli} system dial-stdio"
        config = "\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {self.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # The test's directories live under /tmp (mode 1777), which StrictModes refuses.
            "StrictModes no",
            "PermitTTY no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitUserEnvironment no",
            f"SetEnv DOCKER_HOST={self.engine_host}",
            f"ForceCommand {forced}",
            # docker-py opens one channel per HTTP connection (pool of 10) plus streams.
            "MaxSessions 20",
            "LogLevel VERBOSE",
            "",
        ])
        cfg = self.dir / "sshd_config"
        cfg.write_text(config)
        os.chmod(cfg, 0o600)
        check = subprocess.run([sshd, "-t", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"sshd -t refused {cfg}: {check.stderr}")
        self.proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(cfg)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"sshd on 127.0.0.1:{self.port} did not start; log {self.log}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        self.home.add_endpoint("127.0.0.1", self.port, public)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                # sshd's listener; the session processes it forked end with their
                # connections (the dial-stdio ones when the engine's socket closes).
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def session_pids(self) -> list[int]:
        """Processes still started from this endpoint's config (sshd session children)."""
        cfg = str(self.dir / "sshd_config")
        out = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmd = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if cfg.encode() in cmd:
                    out.append(int(entry.name))
        return out


# --------------------------------------------------------------------------- nodes


@dataclass
class FleetNode:
    """One node of the fleet: its name in the inventory, how dockwarden reaches it
    (``docker_host`` + ``tls``), and the engine behind it (None for the machine's own)."""

    name: str
    kind: str  # "unix" | "tcp" | "ssh" | "host"
    docker_host: str
    engine: PrivateEngine | None
    tls: TlsFiles | None = None
    ssh: SshEndpoint | None = None
    veth: str | None = None
    home: SshHome | None = None
    extra: dict = field(default_factory=dict)

    @property
    def admin_host(self) -> str:
        """The unix socket the test itself uses (never the endpoint under test)."""
        return self.engine.host if self.engine else "unix:///var/run/docker.sock"

    def admin(self, timeout: float = 30) -> docker.DockerClient:
        """A client over the engine's unix socket, for setting up and checking."""
        return docker.DockerClient(base_url=self.admin_host, timeout=timeout)

    def client(self, timeout: float = 30) -> docker.DockerClient:
        """A client through the node's own endpoint (unix, tcp+TLS or ssh), as dockwarden connects."""
        if self.kind == "tcp":
            return tls_client(self.docker_host, self.tls, timeout)
        if self.kind == "ssh":
            return self.home.client(self.docker_host, timeout=timeout)
        return docker.DockerClient(base_url=self.docker_host, timeout=timeout)

    def node_yaml(self, **settings) -> dict:
        """The ``hosts/<node>/node.yaml`` document for this node, plus ``settings``
        (``offline_after_s``, ``heartbeat_s``, ``failover_after_s``)."""
        doc = {"docker_host": self.docker_host}
        if self.tls is not None:
            doc["tls"] = self.tls.node_yaml()
        doc.update(settings)
        return doc

    def _private(self) -> PrivateEngine:
        if self.engine is None:
            raise RuntimeError(f"{self.name}: the machine's own engine is never stopped by tests")
        return self.engine

    def freeze(self) -> None:
        self._private().freeze()

    def thaw(self) -> None:
        self._private().thaw()

    def kill(self) -> None:
        self._private().kill()

    def power_off(self) -> None:
        self._private().power_off()

    def start(self) -> None:
        self._private().start()

    def load_image(self, image: str) -> None:
        if self.engine is not None:
            self.engine.load_image(image)


#: requests lets these override a session's ``verify`` (the CA docker-py sets from
#: TLSConfig): docker-py issue #2433, open. This machine sets REQUESTS_CA_BUNDLE.
CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def tls_client(url: str, tls: TlsFiles, timeout: float = 30) -> docker.DockerClient:
    """A docker-py client of a ``tcp://`` TLS endpoint that verifies the server by
    our CA even when REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE are set (docker-py #2433):
    the environment is ignored by the session (``trust_env = False``), and while the
    constructor asks the engine's API version those two variables are held out."""
    saved = {k: os.environ.pop(k) for k in CA_BUNDLE_ENV if k in os.environ}
    try:
        client = docker.DockerClient(base_url=url, tls=tls.client_config(), timeout=timeout)
    finally:
        os.environ.update(saved)
    client.api.trust_env = False
    return client


def crash(client: docker.DockerClient, name: str) -> int:
    """SIGKILL a container's main process from the host (not `docker kill`, so the
    engine sees a crash, not an operator's signal). Returns the killed host pid."""
    pid = client.api.inspect_container(name)["State"]["Pid"]
    if not pid:
        raise RuntimeError(f"{name} is not running")
    os.kill(pid, signal.SIGKILL)
    return pid


def wait_running(client: docker.DockerClient, name: str, old_pid: int | None, timeout: float = 30,
                 interval: float = 0.01) -> float | None:
    """Poll until ``name`` runs with a pid other than ``old_pid``; the monotonic time
    it was seen, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            st = client.api.inspect_container(name)["State"]
            if st["Running"] and st["Pid"] and st["Pid"] != old_pid:
                return time.monotonic()
        except docker.errors.NotFound:
            pass
        time.sleep(interval)
    return None


def crash_to_running(client: docker.DockerClient, name: str, timeout: float = 30) -> float:
    """Crash ``name`` and return the seconds until it runs again (inf when it did not)."""
    old = client.api.inspect_container(name)["State"]["Pid"]
    if not old:
        raise RuntimeError(f"{name} is not running")
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    t1 = wait_running(client, name, old, timeout)
    return float("inf") if t1 is None else t1 - t0


def _host_side_addresses() -> set[str]:
    r = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True)
    return {tok.split("/")[0] for line in r.stdout.splitlines() for tok in line.split() if "/" in tok}


def _pings(client_factory, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if client_factory().ping():
                return
        except Exception as e:  # noqa: BLE001 - not up yet
            last = e
        time.sleep(0.2)
    raise RuntimeError(f"endpoint did not answer within {timeout} s: {last!r}")


class Fleet:
    """A set of engines for one test module. ``add_*`` build a node and return it;
    ``teardown`` removes everything, in reverse order, whatever failed.

    Args:
        directory: where certificates, sshd configs and the ssh HOME go.
        prefix: names of namespaces, run dirs (``/run/<prefix>-<node>``) and veths derive from it.
    """

    def __init__(self, directory: Path, prefix: str | None = None):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix or f"dwf-{uuid.uuid4().hex[:6]}"
        self.nodes: dict[str, FleetNode] = {}
        self._home: SshHome | None = None
        #: Every veth made (both ends), for :meth:`leftovers`.
        self.made_veths: set[str] = set()

    @property
    def home(self) -> SshHome:
        """The ssh client HOME; give the daemon ``HOME=<fleet.home.path>``."""
        if self._home is None:
            self._home = SshHome(self.dir / "home")
        return self._home

    def env(self) -> dict[str, str]:
        """Environment for a daemon that supervises this fleet (HOME for ssh nodes)."""
        return {"HOME": str(self.home.path)} if any(n.kind == "ssh" for n in self.nodes.values()) else {}

    def _engine(self, node: str, extra_args=(), extra_hosts=()) -> PrivateEngine:
        return PrivateEngine(f"{self.prefix}-{node}", extra_args=tuple(extra_args), extra_hosts=tuple(extra_hosts))

    def add_host_engine(self, node: str) -> FleetNode:
        """The machine's own engine as a node (``unix:///var/run/docker.sock``)."""
        n = FleetNode(node, "host", "unix:///var/run/docker.sock", None)
        self.nodes[node] = n
        return n

    def add_unix(self, node: str, image: str | None = None) -> FleetNode:
        eng = self._engine(node)
        n = FleetNode(node, "unix", eng.host, eng)
        self.nodes[node] = n
        eng.setup(image)
        return n

    def add_tcp_tls(self, node: str, image: str | None = None) -> FleetNode:
        """An engine at ``tcp://10.231.N.2:2376`` with ``--tlsverify`` (plus its unix socket)."""
        eng = self._engine(node)
        n = FleetNode(node, "tcp", "", eng)
        self.nodes[node] = n
        eng.add_netns()
        with open(_ALLOC_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = _host_side_addresses()
            free = [k for k in range(1, 255) if f"{TCP_NET_PREFIX}.{k}.1" not in used]
            if not free:
                raise RuntimeError(f"no free {TCP_NET_PREFIX}.N.0/30 for a tcp engine")
            k = free[int.from_bytes(os.urandom(1), "big") % len(free)]
            host_ip, engine_ip = f"{TCP_NET_PREFIX}.{k}.1", f"{TCP_NET_PREFIX}.{k}.2"
            veth = f"dwv{uuid.uuid4().hex[:8]}"  # <= 15 characters
            n.veth = veth
            peer = veth + "e"
            self.made_veths |= {veth, peer}
            run = lambda *a: subprocess.run(list(a), check=True, capture_output=True)  # noqa: E731
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
            run("ip", "link", "set", peer, "netns", eng.name)
            run("ip", "addr", "add", f"{host_ip}/30", "dev", veth)
            run("ip", "link", "set", veth, "up")
            run("ip", "netns", "exec", eng.name, "ip", "addr", "add", f"{engine_ip}/30", "dev", peer)
            run("ip", "netns", "exec", eng.name, "ip", "link", "set", peer, "up")
        tls = make_tls_material(self.dir / f"tls-{node}", server_ips=[engine_ip], server_names=["localhost"])
        n.tls = tls
        n.docker_host = f"tcp://{engine_ip}:{TCP_PORT}"
        eng.extra_hosts = (n.docker_host,)
        eng.extra_args = ("--tlsverify", "--tlscacert", str(tls.ca_cert), "--tlscert", str(tls.server_cert),
                          "--tlskey", str(tls.server_key))
        eng.start()
        if image:
            eng.load_image(image)
        _pings(n.client)
        return n

    def add_ssh(self, node: str, image: str | None = None) -> FleetNode:
        """An engine behind ``ssh://root@127.0.0.1:<port>`` (sshd + forced dial-stdio)."""
        eng = self._engine(node)
        n = FleetNode(node, "ssh", "", eng, home=self.home)
        self.nodes[node] = n
        eng.setup(image)
        ep = SshEndpoint(self.dir / f"sshd-{node}", eng.host, self.home)
        n.ssh = ep
        ep.start()
        n.docker_host = ep.url
        _pings(n.client)
        return n

    def write_inventory(self, root: Path, services: dict[str, list[dict]],
                        settings: dict[str, dict] | None = None) -> Path:
        """``root/hosts/<node>/services.yaml`` and ``node.yaml`` for every node named in
        ``services``; ``settings[node]`` adds keys to its node.yaml. Returns ``root``."""
        settings = settings or {}
        for node, svcs in services.items():
            d = root / "hosts" / node
            d.mkdir(parents=True, exist_ok=True)
            (d / "services.yaml").write_text(yaml.safe_dump({"services": svcs}, sort_keys=False))
            (d / "node.yaml").write_text(yaml.safe_dump(self.nodes[node].node_yaml(**settings.get(node, {})),
                                                        sort_keys=False))
        return root

    def teardown(self) -> list[str]:
        """Remove every node's endpoint and engine, newest first; returns the errors
        met (each step is tried whatever failed before)."""
        errors = []
        for n in reversed(list(self.nodes.values())):
            for step in (lambda: n.ssh and n.ssh.stop(), lambda: n.engine and n.engine.teardown(),
                         lambda: n.veth and subprocess.run(["ip", "link", "delete", n.veth], check=False,
                                                           capture_output=True)):
                try:
                    step()
                except Exception as e:  # noqa: BLE001 - go on with the rest
                    errors.append(f"{n.name}: {e!r}")
        self.nodes.clear()
        return errors

    def leftovers(self) -> list[str]:
        """What of this fleet is still on the machine (namespaces, veths, mounts,
        processes, run dirs); empty after a clean teardown."""
        out = []
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        out += [f"netns {line.split()[0]}" for line in r.stdout.splitlines() if line.startswith(self.prefix)]
        r = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            parts = line.split(": ")
            if len(parts) > 1 and parts[1].split("@")[0] in self.made_veths:
                out.append(f"link {parts[1]}")
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4]
            if f"/{self.prefix}-" in point:
                out.append(f"mount {point}")
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if f"/{self.prefix}-" in cmd or str(self.dir / "sshd-") in cmd:
                    out.append(f"process {entry.name}: {cmd[:120]}")
        out += [f"dir {p}" for p in Path("/run").glob(f"{self.prefix}-*")]
        out += [f"dir {p}" for p in Path("/var/lib").glob(f"{self.prefix}-*")]
        return out
