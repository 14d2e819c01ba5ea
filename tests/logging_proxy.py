"""A forward HTTP proxy on 127.0.0.1 that logs every request it carries and hands it to one upstream server (the
loopback server), whatever host the request is addressed to: set as HTTP_PROXY, it is where a request for
api.groq.com would really go, and its log shows what that host would have been sent (the key headers and the body
included).
A CONNECT (https) is logged and refused: what it would carry is out of sight, so the tests address plain http."""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

KEY_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")


@dataclass
class Carried:
    """One request the proxy carried: its method, the URL it was addressed to, its headers and its body."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or self.url.split(":")[0]).lower()

    def carries(self, value: str) -> bool:
        """Whether `value` is in the URL, any header or the body of the request."""
        return value in self.url or any(value in v for v in self.headers.values()) or value in self.body


class LoggingProxy:
    """The proxy: `url` to set as HTTP_PROXY, `carried` what it carried (in order)."""

    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.carried: list[Carried] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                return

            def _note(self, body: bytes | None = None) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                with proxy._lock:
                    proxy.carried.append(Carried(self.command, self.path, headers, (body or b"").decode("latin-1")))

            def do_CONNECT(self) -> None:  # noqa: N802 - http.server's name
                self._note()
                self.send_error(502, "this proxy does not tunnel")

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                self._note(body)
                target = urlsplit(self.path)
                path = target.path + (f"?{target.query}" if target.query else "")
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-connection")}
                conn.request(self.command, path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for name, value in reply.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _forward  # noqa: N815 - http.server's names

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def holding(self, value: str) -> list[Carried]:
        """The requests carried that hold `value`."""
        with self._lock:
            return [c for c in self.carried if c.carries(value)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def dump(self) -> str:
        with self._lock:
            return json.dumps([c.__dict__ for c in self.carried])[:2000]
