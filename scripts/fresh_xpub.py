#!/usr/bin/env python3
"""fresh_xpub.py XPUB -> a new extended public key of the same kind, for a test run.

Keeps the version bytes (xpub, zpub, vpub, tpub, kpub, ktub ...), depth, parent fingerprint,
child number and public key of XPUB, and replaces its chain code with random bytes. Child keys
come from HMAC-SHA512(chain code, public key || index), so the new key derives addresses no
earlier run has seen: each test merchant gets an account key of its own, as a wallet may belong
to one merchant only. Watch-only, like every key the extension takes: no private key exists.
"""
import hashlib
import os
import sys

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58decode_check(s: str) -> bytes:
    n = 0
    for c in s:
        n = n * 58 + ALPHABET.index(c)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    raw = b"\0" * (len(s) - len(s.lstrip("1"))) + raw
    body, check = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(body).digest()).digest()[:4] != check:
        raise ValueError("bad checksum")
    return body


def b58encode_check(body: bytes) -> str:
    raw = body + hashlib.sha256(hashlib.sha256(body).digest()).digest()[:4]
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = ALPHABET[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: fresh_xpub.py XPUB")
    body = b58decode_check(sys.argv[1].strip())
    if len(body) != 78 or body[45] not in (2, 3):
        sys.exit("not an extended public key (78 bytes, compressed public key)")
    # version 4 | depth 1 | fingerprint 4 | child 4 | chain code 32 | public key 33
    print(b58encode_check(body[:13] + os.urandom(32) + body[45:]))


if __name__ == "__main__":
    main()
