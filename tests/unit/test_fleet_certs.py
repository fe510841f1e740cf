"""The TLS material and ssh keys the fleet tests generate (tests/support/fleet.py):
a CA that signs a server certificate (IP SAN, serverAuth) and a client
certificate (clientAuth); a mutual-TLS handshake on loopback with them; private
keys 0600; ssh keys paramiko (docker-py's ssh transport) can load."""

from __future__ import annotations

import socket
import ssl
import stat
import threading

import paramiko
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.fleet import SshHome, ed25519_keypair, make_tls_material


def _load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_signs_server_and_client_with_their_usages(tmp_path):
    files = make_tls_material(tmp_path / "tls", server_ips=["10.231.9.2"], server_names=["localhost"])
    ca, server, client = _load(files.ca_cert), _load(files.server_cert), _load(files.client_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    for leaf in (server, client):
        leaf.verify_directly_issued_by(ca)  # raises when not signed by the CA
        assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.231.9.2"]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    eku = lambda c: list(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)  # noqa: E731
    assert eku(server) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert eku(client) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    for cert in (ca, server, client):
        assert cert.not_valid_before_utc < cert.not_valid_after_utc


def test_private_keys_are_private(tmp_path):
    files = make_tls_material(tmp_path / "tls", server_ips=["127.0.0.1"])
    for key in (files.server_key, files.client_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700


def test_mutual_tls_handshake_on_loopback(tmp_path):
    """A server with the server pair, requiring a client certificate from the CA; a
    client verifying the server's IP SAN by the CA and presenting the client pair."""
    files = make_tls_material(tmp_path / "tls", server_ips=["127.0.0.1"])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.server_cert, files.server_key)
    server_ctx.load_verify_locations(files.ca_cert)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: dict = {}

    def serve():
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            seen["peer"] = tls.getpeercert()
            tls.sendall(b"ok")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(files.ca_cert)
    client_ctx.load_cert_chain(files.client_cert, files.client_key)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.recv(2) == b"ok"
    t.join(5)
    listener.close()
    subject = dict(x[0] for x in seen["peer"]["subject"])
    assert subject["commonName"] == "dockwarden"


def test_a_client_without_the_ca_refuses_the_server(tmp_path):
    files = make_tls_material(tmp_path / "tls", server_ips=["127.0.0.1"])
    other = make_tls_material(tmp_path / "other", server_ips=["127.0.0.1"])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.server_cert, files.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        try:
            server_ctx.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(other.ca_cert)  # the wrong CA
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            client_ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    t.join(5)
    listener.close()


def test_ssh_keys_load_in_paramiko_and_the_home_is_private(tmp_path):
    private, public = ed25519_keypair()
    assert public.startswith("ssh-ed25519 ")
    key_file = tmp_path / "k"
    key_file.write_bytes(private)
    key = paramiko.Ed25519Key.from_private_key_file(str(key_file))
    assert f"{key.get_name()} {key.get_base64()}" == public
    home = SshHome(tmp_path / "home")
    home.add_endpoint("127.0.0.1", 2222, public)
    assert stat.S_IMODE(home.identity.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.ssh.stat().st_mode) == 0o700
    conf = paramiko.SSHConfig.from_path(str(home.ssh / "config")).lookup("127.0.0.1")
    assert conf["identityfile"] == [str(home.identity)] and conf["user"] == "root"
    known = paramiko.HostKeys(str(home.ssh / "known_hosts"))
    assert known.lookup("[127.0.0.1]:2222") is not None
