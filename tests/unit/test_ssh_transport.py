"""issue 9: docker-py's ssh:// transport (paramiko, invoke, unittest.mock: 0.24 s)
is loaded only when an ssh:// engine is used. Each case runs in a fresh interpreter:
what is imported is the point."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
from dockwarden import ssh_transport
if {defer}:
    ssh_transport.defer()
import docker, docker.api.client
out = {{"paramiko_after_import": "paramiko" in sys.modules,
        "adapter_after_import": hasattr(docker.api.client, "SSHHTTPAdapter")}}
ssh_transport.ensure_loaded("unix:///var/run/docker.sock")
out["paramiko_after_unix"] = "paramiko" in sys.modules
ssh_transport.ensure_loaded("ssh://root@127.0.0.1:22")
a = getattr(docker.api.client, "SSHHTTPAdapter", None)
out["adapter_after_ssh"] = a is not None and a.__module__ == "docker.transport.sshconn"
out["transport_adapter"] = getattr(docker.transport, "SSHHTTPAdapter", None) is a
out["paramiko_after_ssh"] = "paramiko" in sys.modules
print(json.dumps(out))
"""


def _run(defer: bool) -> dict:
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(defer=defer)], capture_output=True, text=True,
                       timeout=60, check=True)
    return json.loads(r.stdout)


def test_deferred_paramiko_is_loaded_only_for_an_ssh_address():
    got = _run(defer=True)
    assert got == {"paramiko_after_import": False, "adapter_after_import": False, "paramiko_after_unix": False,
                   "adapter_after_ssh": True, "transport_adapter": True, "paramiko_after_ssh": True}, got


def test_without_defer_docker_py_is_untouched():
    got = _run(defer=False)
    assert got["paramiko_after_import"] and got["adapter_after_import"] and got["adapter_after_ssh"], got
