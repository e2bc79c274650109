#!/usr/bin/env python3
"""Drives the test bcoin node (regtest) over its Bitcoin Core-style JSON-RPC, as a payer would.

Usage: btc_rpc.py <command> [args]   ($BTC_RPC node URL, $BTC_WALLET_RPC wallet URL, password $BTC_PASS)
  ready                   exits 0 once the node answers
  new-address             a fresh wallet address (bcoin's rb1… form)
  mine <n>                mines n blocks to the wallet
  send <address> <btc>    the wallet pays <btc> to <address> (bcrt1… is accepted); prints the txid
  invalidate-tip          drops the best block (a reorg once longer blocks follow)
  height                  the block count
  rbf-pay <address> <btc> pays from a mature wallet coin with a transaction that signals BIP125
                          (sequence 0xfffffffd); prints the txid (the node needs --replace-by-fee)
  double-spend <txid> <address>  a signed transaction spending <txid>'s first input to <address>
                          instead (not broadcast); prints its hex
  send-raw <hex>          broadcasts a signed transaction; prints the txid
  mine-to <address> <n>   mines n blocks to <address> (works without the wallet)
  in-mempool <txid>       yes or no
"""
import base64
import json
import os
import sys
import urllib.request

NODE = os.environ.get("BTC_RPC", "http://127.0.0.1:18643")
WALLET = os.environ.get("BTC_WALLET_RPC", "http://127.0.0.1:18644")
AUTH = "Basic " + base64.b64encode(f"rpc:{os.environ.get('BTC_PASS', 'pass')}".encode()).decode()
CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def rpc(url, method, params):
    body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json", "Authorization": AUTH})
    with urllib.request.urlopen(req, timeout=60) as r:
        answer = json.load(r)
    if answer.get("error"):
        raise SystemExit(f"{method}: {answer['error']}")
    return answer["result"]


def polymod(values):
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def expand(hrp):
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def to_bcoin(address):
    """bcrt1… (Bitcoin Core's regtest prefix) -> rb1… (bcoin's): same witness program, bech32."""
    if not address.startswith("bcrt1"):
        return address
    data = [CHARSET.index(c) for c in address[5:-6]]
    const = polymod(expand("bcrt") + data + [CHARSET.index(c) for c in address[-6:]])
    checksum = polymod(expand("rb") + data + [0] * 6) ^ const
    return "rb1" + "".join(CHARSET[c] for c in data) + "".join(CHARSET[(checksum >> 5 * (5 - i)) & 31] for i in range(6))


FEE = 0.001


def signed_spend(txid, vout, outputs, sequence=0xFFFFFFFF):
    """A transaction spending txid:vout to outputs, signed with the wallet's key for that coin."""
    prev = rpc(NODE, "getrawtransaction", [txid, 1])["vout"][vout]
    script = prev["scriptPubKey"]
    address = script.get("address") or script["addresses"][0]
    key = rpc(WALLET, "dumpprivkey", [address])
    raw = rpc(NODE, "createrawtransaction", [[{"txid": txid, "vout": vout, "sequence": sequence}], outputs])
    signed = rpc(NODE, "signrawtransaction",
                 [raw, [{"txid": txid, "vout": vout, "scriptPubKey": script["hex"], "amount": prev["value"]}], [key]])
    return signed["hex"], prev["value"]


def main(cmd, *args):
    if cmd == "ready":
        rpc(NODE, "getblockchaininfo", [])
    elif cmd == "new-address":
        print(rpc(WALLET, "getnewaddress", [""]))
    elif cmd == "mine":
        rpc(NODE, "generatetoaddress", [int(args[0]), rpc(WALLET, "getnewaddress", [""])])
    elif cmd == "send":
        print(rpc(WALLET, "sendtoaddress", [to_bcoin(args[0]), float(args[1])]))
    elif cmd == "invalidate-tip":
        rpc(NODE, "invalidateblock", [rpc(NODE, "getbestblockhash", [])])
    elif cmd == "rbf-pay":
        to, btc = to_bcoin(args[0]), float(args[1])
        coin = next(c for c in rpc(WALLET, "listunspent", [101]) if c["amount"] > btc + 2 * FEE)
        change = rpc(WALLET, "getnewaddress", [""])
        outputs = {to: btc, change: round(coin["amount"] - btc - FEE, 8)}
        raw, _ = signed_spend(coin["txid"], coin["vout"], outputs, sequence=0xFFFFFFFD)
        print(rpc(NODE, "sendrawtransaction", [raw]))
    elif cmd == "double-spend":
        txid, to = args[0], to_bcoin(args[1])
        first = rpc(NODE, "getrawtransaction", [txid, 1])["vin"][0]
        prev = rpc(NODE, "getrawtransaction", [first["txid"], 1])["vout"][first["vout"]]
        raw, _ = signed_spend(first["txid"], first["vout"], {to: round(prev["value"] - FEE, 8)})
        print(raw)
    elif cmd == "send-raw":
        print(rpc(NODE, "sendrawtransaction", [args[0]]))
    elif cmd == "mine-to":
        rpc(NODE, "generatetoaddress", [int(args[1]), to_bcoin(args[0])])
    elif cmd == "in-mempool":
        print("yes" if args[0] in rpc(NODE, "getrawmempool", []) else "no")
    elif cmd == "height":
        print(rpc(NODE, "getblockcount", []))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(*sys.argv[1:])
