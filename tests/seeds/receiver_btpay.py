"""A BTPay webhook receiver: checks each delivery with the BTPay document's own snippet and
appends one JSON line a delivery to the log: {"event", "valid", "body"}.
Usage: receiver_btpay.py PORT SECRET LOG   (listens on 127.0.0.1 only)"""
import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


# from the BTPay document, as printed
def verify_webhook(body_bytes, signature, secret):
    expected = hmac.new(
        secret.encode('utf-8'),
        body_bytes,
        hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, signature)


port, secret, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        valid = verify_webhook(body, self.headers.get("X-BTPay-Signature", ""), secret)
        with open(log, "a") as f:
            f.write(json.dumps({"event": self.headers.get("X-BTPay-Event"), "valid": valid,
                                "body": json.loads(body)}) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
