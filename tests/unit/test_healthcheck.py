"""``python -m dockwarden.healthcheck`` (the image's HEALTHCHECK, issue 12):
where it looks for the daemon, and what it answers, against real HTTP servers
on a loopback port and on a unix socket."""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dockwarden.healthcheck import check, daemon_url

SRC = Path(__file__).resolve().parents[2] / "src"


def test_daemon_url_prefers_api_json(tmp_path):
    (tmp_path / "api.json").write_text(json.dumps({"url": "http://127.0.0.1:40001"}))
    env = {"DOCKWARDEN_STATE_DIR": str(tmp_path), "DOCKWARDEN_LISTEN": "0.0.0.0:9999"}
    assert daemon_url(env) == "http://127.0.0.1:40001"


@pytest.mark.parametrize("listen,url", [
    (None, "http://127.0.0.1:9321"),
    ("0.0.0.0:9400", "http://127.0.0.1:9400"),
    ("10.1.2.3:9400", "http://10.1.2.3:9400"),
    ("[::]:9400", "http://[::1]:9400"),
    ("unix:/run/dw.sock", "unix:/run/dw.sock"),
])
def test_daemon_url_from_the_listen_setting(tmp_path, listen, url):
    env = {"DOCKWARDEN_STATE_DIR": str(tmp_path / "nothing-here")}
    if listen:
        env["DOCKWARDEN_LISTEN"] = listen
    assert daemon_url(env) == url


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"url": 7}', '{"url": ""}', '{"other": "x"}'])
def test_a_garbled_api_json_falls_back_to_the_listen_setting(tmp_path, content):
    (tmp_path / "api.json").write_text(content)
    env = {"DOCKWARDEN_STATE_DIR": str(tmp_path), "DOCKWARDEN_LISTEN": "0.0.0.0:9400"}
    assert daemon_url(env) == "http://127.0.0.1:9400"


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 - http.server's name
        body = json.dumps({"ok": self.status == 200, "path": self.path, "host": self.headers["Host"]}).encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def _serve(server):
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return server


def test_check_over_tcp_and_the_exit_code(tmp_path):
    class Sick(_Handler):
        status = 503

    for handler, code in ((_Handler, 0), (Sick, 1)):
        srv = _serve(http.server.HTTPServer(("127.0.0.1", 0), handler))
        try:
            port = srv.server_address[1]
            status, body = check(f"http://127.0.0.1:{port}")
            assert status == handler.status
            assert json.loads(body)["path"] == "/healthz"
            assert json.loads(body)["host"] == f"127.0.0.1:{port}"  # what the API's Host check expects
            (tmp_path / "api.json").write_text(json.dumps({"url": f"http://127.0.0.1:{port}"}))
            r = subprocess.run([sys.executable, "-m", "dockwarden.healthcheck"], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(SRC), "DOCKWARDEN_STATE_DIR": str(tmp_path)},
                               timeout=30)
            assert r.returncode == code, r.stdout + r.stderr
            assert f"/healthz {handler.status}" in r.stdout
        finally:
            srv.shutdown()
            srv.server_close()


def test_check_over_a_unix_socket_and_no_answer(tmp_path):
    class UnixHTTP(socketserver.UnixStreamServer):
        def get_request(self):
            req, _ = super().get_request()
            return req, ("local", 0)

    path = tmp_path / "api.sock"
    srv = _serve(UnixHTTP(str(path), _Handler))
    try:
        assert check(f"unix:{path}")[0] == 200
    finally:
        srv.shutdown()
        srv.server_close()
    with pytest.raises(OSError):
        check(f"unix:{tmp_path / 'gone.sock'}")
