"""Minimal synchronous kaspad wRPC-JSON client (websocket-client)."""
import json, itertools, websocket

class KaspaRpcError(Exception):
    pass

class Rpc:
    def __init__(self, url="ws://127.0.0.1:18610", timeout=30):
        self.ws = websocket.create_connection(url, timeout=timeout)
        self._ids = itertools.count(1)

    def call(self, method, params=None):
        rid = next(self._ids)
        self.ws.send(json.dumps({"id": rid, "method": method, "params": params if params is not None else {}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") != rid:
                continue  # e.g. notifications (no id) - ignore
            if "error" in msg and msg["error"] is not None:
                raise KaspaRpcError(f"{method}: {msg['error']}")
            return msg.get("params")

    def raw(self, method, params=None):
        """Return the full reply envelope (for documentation)."""
        rid = next(self._ids)
        self.ws.send(json.dumps({"id": rid, "method": method, "params": params if params is not None else {}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == rid:
                return msg

    def close(self):
        self.ws.close()
