#!/usr/bin/env python3
"""A JSON-RPC proxy in front of a real node that can corrupt its answers, for the chain tests.

  GET /mode?set=pass       forward requests and answers untouched (the default)
  GET /mode?set=garbage    answer 200 with an HTML page
  GET /mode?set=truncate   forward, then cut the answer in half
  GET /mode?set=wrong      forward, then replace every "result" with a wrong-typed value
  GET /mode?set=error      answer 502
  GET /mode?set=lag        a node one block behind (a load-balanced RPC's lagging backend): its
                           "latest" block is the upstream's block below the latest
Usage: rpc_proxy.py <port> <upstream url>
"""
import json
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

mode = {"value": "pass"}
upstream = sys.argv[2]


def call_upstream(method, params, headers):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    with urllib.request.urlopen(urllib.request.Request(upstream, body, headers), timeout=30) as r:
        return json.load(r)["result"]


def lagging(request, headers):
    """The request as a node one block behind would see it: "latest" is the block below."""
    calls = request if isinstance(request, list) else [request]
    behind = int(call_upstream("eth_blockNumber", [], headers), 16) - 1
    out = []
    for c in calls:
        if c.get("method") == "eth_getBlockByNumber" and c["params"][0] == "latest":
            c = dict(c, params=[hex(behind)] + c["params"][1:])
        out.append(c)
    return out if isinstance(request, list) else out[0]


def wrong(answer):
    if isinstance(answer, list):
        return [wrong(a) for a in answer]
    if isinstance(answer, dict) and "result" in answer:
        answer = dict(answer, result={"number": "0xnothex", "hash": 42, "transactions": "no"})
    return answer


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, kind="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        q = parse_qs(urlsplit(self.path).query)
        if "set" in q:
            mode["value"] = q["set"][0]
        self.reply(200, json.dumps({"mode": mode["value"]}).encode())

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        m = mode["value"]
        if m == "garbage":
            return self.reply(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        if m == "error":
            return self.reply(502, b"bad gateway", "text/plain")
        headers = {"Content-Type": "application/json"}
        if self.headers.get("Authorization"):
            headers["Authorization"] = self.headers["Authorization"]
        if m == "lag":
            request = lagging(json.loads(body), headers)
            body = json.dumps(request).encode()
        req = urllib.request.Request(upstream, body, headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                answer = r.read()
        except OSError as e:  # the node is down: so is the proxy's answer
            return self.reply(502, str(e).encode(), "text/plain")
        if m == "truncate":
            answer = answer[: len(answer) // 2]
        elif m == "wrong":
            answer = json.dumps(wrong(json.loads(answer))).encode()
        self.reply(200, answer)


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
