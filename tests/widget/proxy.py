"""The browser's HTTP proxy in the widget tests: forwards every request to its loopback host
with X-Real-IP set to a client address of this run's own, so the anonymous rate limit (counted
per client address, which the web front believes from loopback) is this run's alone; refuses any
host that is not loopback, and logs every URL it saw.

    python proxy.py PORT CLIENT_ADDRESS LOG
"""
import http.client
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, client, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        url = urllib.parse.urlsplit(self.path)
        refused = url.hostname not in ("127.0.0.1", "localhost", "::1")
        with open(log, "a") as f:
            f.write(("refused " if refused else "forwarded ") + self.path + "\n")
        if refused:
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection", "x-real-ip")}
        headers["X-Real-IP"] = client
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
        conn.request(self.command, url.path + ("?" + url.query if url.query else ""), body=body or None, headers=headers)
        r = conn.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_HEAD = do_OPTIONS = do_DELETE = forward

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Proxy).serve_forever()
