"""The fleet test infrastructure on its own (tests/support/fleet.py, issue 11): each
kind of engine endpoint answers a docker-py client (unix socket, tcp+TLS, ssh), a
tcp endpoint refuses a client without a certificate, and teardown leaves nothing
behind after an engine was frozen, killed or powered off."""

from __future__ import annotations

import os
import uuid

import docker
import paramiko
import pytest
import requests

from conftest import IMAGE, RUN_ID, TEST_LABEL
from tests.support.fleet import Fleet


@pytest.fixture
def fleet(tmp_path, docker_client):
    f = Fleet(tmp_path / "fleet", prefix=f"dwf-{uuid.uuid4().hex[:6]}")
    try:
        yield f
    finally:
        errors = f.teardown()
        left = f.leftovers()
        assert not errors and not left, (errors, left)


def _lists_a_container(node) -> None:
    name = f"dwt-{RUN_ID}-{node.name}-{uuid.uuid4().hex[:4]}"
    node.admin().containers.run(IMAGE, ["sleep", "600"], name=name, detach=True, network_mode="none",
                                labels={TEST_LABEL: RUN_ID})
    client = node.client()
    assert [c.name for c in client.containers.list(filters={"label": f"{TEST_LABEL}={RUN_ID}"})] == [name]
    assert client.containers.get(name).status == "running"
    client.close()


def test_unix_endpoint(fleet):
    node = fleet.add_unix("u", IMAGE)
    assert node.docker_host.startswith("unix:///run/") and node.node_yaml() == {"docker_host": node.docker_host}
    _lists_a_container(node)


def test_tcp_tls_endpoint(fleet):
    node = fleet.add_tcp_tls("t", IMAGE)
    assert node.docker_host.startswith("tcp://10.231.") and node.docker_host.endswith(":2376")
    assert set(node.node_yaml()["tls"]) == {"ca_cert", "client_cert", "client_key", "verify"}
    _lists_a_container(node)
    # --tlsverify: a client without a certificate is refused at the handshake.
    url = node.docker_host.replace("tcp://", "https://") + "/_ping"
    s = requests.Session()
    s.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        s.get(url, verify=str(node.tls.ca_cert), timeout=5)
    assert s.get(url, verify=str(node.tls.ca_cert), cert=(str(node.tls.client_cert), str(node.tls.client_key)),
                 timeout=5).text == "OK"


def test_ssh_endpoint(fleet):
    node = fleet.add_ssh("s", IMAGE)
    assert node.docker_host.startswith("ssh://root@127.0.0.1:")
    assert fleet.env() == {"HOME": str(fleet.home.path)}
    _lists_a_container(node)
    # Without the fleet's HOME (no key, no known host key) the endpoint is refused.
    saved = os.environ.get("HOME")
    os.environ["HOME"] = str(fleet.dir)  # no .ssh here
    try:
        with pytest.raises((docker.errors.DockerException, paramiko.SSHException)):
            docker.DockerClient(base_url=node.docker_host, timeout=5)
    finally:
        os.environ["HOME"] = saved or "/root"


def test_freeze_kill_power_off_and_teardown_leave_nothing(fleet):
    u = fleet.add_unix("u", IMAGE)
    t = fleet.add_tcp_tls("t", IMAGE)
    s = fleet.add_ssh("s", IMAGE)
    for n in (u, t, s):
        n.admin().containers.run(IMAGE, ["sleep", "600"], name=f"dwt-{RUN_ID}-{n.name}", detach=True,
                                 network_mode="none", labels={TEST_LABEL: RUN_ID})
    u.freeze()  # left frozen for teardown
    with pytest.raises(requests.exceptions.ReadTimeout):
        docker.APIClient(base_url=u.admin_host, timeout=1, version="1.41").ping()
    t.kill()  # dockerd only: the container's shim and process run on
    assert t.engine.container_pids(), "killing dockerd alone should leave the containers running"
    s.power_off()
    assert not s.engine.engine_pids() and not s.engine.container_pids()
    s.start()  # back, with its container exited
    assert s.admin().containers.get(f"dwt-{RUN_ID}-s").status == "exited"
    assert s.client().ping()
    # teardown in the fixture checks that nothing is left.
