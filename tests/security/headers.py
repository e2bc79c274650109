"""The web front refuses a request whose headers are not UTF-8 with 400, before PostgREST (which
answers such a header with 500). Raw sockets, as HTTP clients will not send such bytes."""
import socket
import sys

host, front, pgrst = "127.0.0.1", int(sys.argv[1]), int(sys.argv[2])
passed = failed = 0


def status(port, header_value: bytes, name=b"X-Note"):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"GET /public_invoices?slug=eq.none HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Real-IP: 203.0.113.77\r\n"
              + name + b": " + header_value + b"\r\nConnection: close\r\n\r\n")
    data = b""
    while b"\r\n" not in data and (chunk := s.recv(4096)):
        data += chunk
    s.close()
    return int(data.split(b" ", 2)[1])


def check(label, got, want):
    global passed, failed
    if got == want:
        passed += 1
        print(f"  ok   {label}")
    else:
        failed += 1
        print(f"  FAIL {label}\n       got [{got}], expected [{want}]")


check("PostgREST itself answers a Latin-1 header with 500 (why the web front must refuse it)", status(pgrst, b"caf\xe9"), 500)
for label, value in [("Latin-1 é", b"caf\xe9"), ("a lone continuation byte", b"a\x80b"), ("an overlong /", b"\xc0\xaf"),
                     ("a UTF-16 surrogate", b"\xed\xa0\x80"), ("a truncated sequence", b"\xe2\x82"), ("0xFF", b"\xff")]:
    check(f"the web front refuses {label} in a header: 400", status(front, value), 400)
check("  also in the API key header", status(front, b"\xff\xfe", b"X-API-Key"), 400)
check("valid UTF-8 in a header passes: 200", status(front, "café €".encode()), 200)
check("plain ASCII passes: 200", status(front, b"hello"), 200)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
