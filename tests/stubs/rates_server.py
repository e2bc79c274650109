#!/usr/bin/env python3
"""A local stand-in for the exchange-rate APIs (the real ones are not reachable from here).

It answers in the exact public formats of CoinGecko `simple/price`, Kraken `Ticker` and Coinbase
`prices/<pair>/spot`. The first two path segments choose the behaviour, so one server serves
every case and a rate source's base URL says what it gets:

  /ok/<price>/...       the format of the API path that follows, with that price
  /slow/<seconds>/...   sleeps that long first (a source timing out)
  /status/<code>/...    answers with that HTTP status and an error body
  /garbage/x/...        answers 200 with a body that is not a rate

Usage: rates_server.py <port>
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

KRAKEN_NAMES = {"XBTUSD": "XXBTZUSD", "XBTEUR": "XXBTZEUR", "ETHUSD": "XETHZUSD", "ETHEUR": "XETHZEUR"}


def coingecko(query, price):
    ids = query["ids"][0].split(",")
    vs = query["vs_currencies"][0].split(",")
    return {coin: {cur: float(price) if "." in price else int(price) for cur in vs} for coin in ids}


def kraken(query, price):
    pair = query["pair"][0]
    name = KRAKEN_NAMES.get(pair, pair)
    p = f"{float(price):.5f}"
    return {"error": [], "result": {name: {
        "a": [p, "1", "1.000"], "b": [p, "1", "1.000"], "c": [p, "0.00100000"],
        "v": ["100.0", "200.0"], "p": [p, p], "t": [10, 20], "l": [p, p], "h": [p, p], "o": p}}}


def coinbase(path, price):
    pair = path.split("/")[3]  # /v2/prices/BTC-USD/spot
    base, currency = pair.split("-")
    return {"data": {"amount": price, "base": base, "currency": currency}}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def do_GET(self):
        url = urlsplit(self.path)
        parts = url.path.split("/", 3)  # '', mode, arg, rest
        if len(parts) < 4:
            return self.answer(404, {"error": "not found"})
        _, mode, arg, rest = parts
        rest = "/" + rest
        query = parse_qs(url.query)
        if mode == "slow":
            time.sleep(float(arg))
            return self.answer(200, coingecko(query, "1") if "simple/price" in rest else {"data": {}})
        if mode == "status":
            return self.answer(int(arg), {"error": f"status {arg}"})
        if mode == "garbage":
            return self.answer(200, "<html><body>502 Bad Gateway</body></html>", "text/html")
        if mode != "ok":
            return self.answer(404, {"error": "unknown mode"})
        if rest.startswith("/api/v3/simple/price"):
            return self.answer(200, coingecko(query, arg))
        if rest.startswith("/0/public/Ticker"):
            return self.answer(200, kraken(query, arg))
        if rest.startswith("/v2/prices/"):
            return self.answer(200, coinbase(rest, arg))
        return self.answer(404, {"error": "unknown API path"})


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.handle_error = lambda request, address: None
    server.serve_forever()
