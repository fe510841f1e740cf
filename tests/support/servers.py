"""Real servers on 127.0.0.1 for notification tests: an HTTP webhook receiver
and an SMTP server (aiosmtpd). Both record what they receive."""

from __future__ import annotations

import json
import socket
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebhookServer:
    """Collects POSTed JSON bodies in ``self.received``."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.received: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    outer.received.append(json.loads(body))
                except json.JSONDecodeError:
                    outer.received.append({"raw": body.decode("utf-8", "replace")})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "WebhookServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class MailServer:
    """A real SMTP server (aiosmtpd) collecting messages in ``self.messages``."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self.messages: list = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
                outer.messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> "MailServer":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]

    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=dockwarden@example.com&to=ops@example.com"
