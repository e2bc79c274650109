#!/usr/bin/env python3
"""Pay an exact KAS amount to an address on a local kaspad *simnet* node.

  python pay.py <dest kaspasim:...> <amount KAS> [--url ws://127.0.0.1:18610]
                           [--key HEX | --random-key] [--blocks N] [--json]

Steps: derive simnet address from a private key -> mine coinbase blocks to it
(getBlockTemplate/submitBlock, no PoW on simnet) until enough coinbase UTXOs are
mature (simnet: coinbase maturity = 1000 DAA) -> build+sign tx with the `kaspa`
PyPI SDK -> submitTransaction -> mine N blocks (default 1) so the tx is
included.  Prints the txid.  Transport: websocket-client (sync) to wRPC JSON.
"""
import argparse, json, os, sys, time
from decimal import Decimal

import kaspa
from krpc import Rpc, KaspaRpcError

COINBASE_MATURITY = 1000         # simnet (10 BPS params) -- measured: spendable when virtualDaaScore >= utxo.blockDaaScore + 1000
SOMPI_PER_KAS = 100_000_000
FIXED_KEY = "b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfef"   # test-only key
FEE_MARGIN = 10_000_000          # 0.1 KAS head-room when deciding whether we have enough mature funds


def kas_to_sompi(s: str) -> int:
    d = Decimal(s) * SOMPI_PER_KAS
    if d != d.to_integral_value() or d <= 0:
        raise SystemExit(f"amount {s!r} is not a positive multiple of 1e-8 KAS")
    return int(d)


def mine(rpc: Rpc, pay_address: str, n: int) -> str:
    """Mine n blocks paying pay_address; return the new sink hash."""
    for _ in range(n):
        tpl = rpc.call("getBlockTemplate", {"payAddress": pay_address, "extraData": []})
        rep = rpc.call("submitBlock", {"block": tpl["block"], "allowNonDAABlocks": False})
        if rep["report"]["type"] != "success":
            raise KaspaRpcError(f"submitBlock rejected: {rep}")
    return rpc.call("getSink")["sink"]


def spendable(rpc: Rpc, address: str, log):
    """UTXOs of `address` that are mature and not already spent by a mempool tx."""
    vdaa = rpc.call("getServerInfo")["virtualDaaScore"]
    entries = rpc.call("getUtxosByAddresses", {"addresses": [address]})["entries"]
    mp = rpc.call("getMempoolEntriesByAddresses",
                  {"addresses": [address], "includeOrphanPool": False, "filterTransactionPool": False})["entries"]
    spent = {(i["previousOutpoint"]["transactionId"], i["previousOutpoint"]["index"])
             for e in mp for s in e["sending"] for i in s["transaction"]["inputs"]}
    mature, immature = [], []
    for e in entries:
        op = (e["outpoint"]["transactionId"], e["outpoint"]["index"])
        if op in spent:
            continue
        u = e["utxoEntry"]
        if u["isCoinbase"] and u["blockDaaScore"] + COINBASE_MATURITY > vdaa:
            immature.append(e)
        else:
            mature.append(e)
    return vdaa, mature, immature


def to_rpc_tx(d: dict) -> dict:
    """kaspa.Transaction.to_dict() -> wRPC JSON RpcTransaction (scriptPublicKey as 'vvvv'+script hex)."""
    return {
        "version": d["version"],
        "inputs": [{"previousOutpoint": i["previousOutpoint"], "signatureScript": i["signatureScript"],
                    "sequence": i["sequence"], "sigOpCount": i["sigOpCount"]} for i in d["inputs"]],
        "outputs": [{"value": o["value"],
                     "scriptPublicKey": "%04x" % o["scriptPublicKey"]["version"] + o["scriptPublicKey"]["script"]}
                    for o in d["outputs"]],
        "lockTime": d["lockTime"], "subnetworkId": d["subnetworkId"], "gas": d["gas"],
        "payload": d["payload"], "mass": d["mass"],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dest")
    ap.add_argument("amount", help="KAS, decimal string, e.g. 1.23456789")
    ap.add_argument("--url", default=os.environ.get("KASPA_WRPC", "ws://127.0.0.1:18610"))
    ap.add_argument("--key", default=FIXED_KEY, help="hex private key (default: fixed test key)")
    ap.add_argument("--random-key", action="store_true")
    ap.add_argument("--blocks", type=int, default=1, help="blocks to mine after submitting (1 = include)")
    ap.add_argument("--json", action="store_true", help="print a JSON summary as last line")
    a = ap.parse_args()
    log = lambda *x: print(*x, file=sys.stderr, flush=True)
    t0 = time.time()

    if not kaspa.Address.validate(a.dest):
        raise SystemExit(f"invalid destination address {a.dest!r}")
    amount = kas_to_sompi(a.amount)
    key = kaspa.PrivateKey(os.urandom(32).hex() if a.random_key else a.key)
    addr = key.to_address("simnet")
    src = addr.to_string()
    print(f"source address: {src}")
    if a.random_key:
        print(f"private key: {key.to_string()}")

    rpc = Rpc(a.url)
    net = rpc.call("getCurrentNetwork")["network"]
    if net != "simnet":
        raise SystemExit(f"refusing to run: node network is {net!r}, not simnet")

    # 1. fund: mine until mature, unspent UTXOs cover amount + fee margin
    mined = 0
    while True:
        vdaa, mature, immature = spendable(rpc, src, log)
        have = sum(e["utxoEntry"]["amount"] for e in mature)
        if have >= amount + FEE_MARGIN:
            break
        if immature:
            # mine just enough for the oldest immature coinbase(s) to mature (+ a small batch)
            oldest = min(e["utxoEntry"]["blockDaaScore"] for e in immature)
            need_more = max(1, oldest + COINBASE_MATURITY - vdaa)
            # each extra block matures one more 50 KAS coinbase; estimate how many we need
            shortfall_cb = max(0, -(-(amount + FEE_MARGIN - have) // 5_000_000_000) - 1)
            n = need_more + shortfall_cb
        else:
            n = 2  # first coinbase UTXO appears after 2 blocks (block k's coinbase pays block k-1's miner)
        mine(rpc, src, n)
        mined += n
    log(f"funding: mined {mined} blocks, virtualDaaScore={vdaa}, mature={have} sompi in {len(mature)} utxos "
        f"({time.time()-t0:.2f}s)")

    # 2. build + sign with the kaspa SDK (Generator picks inputs, computes fee, adds change)
    refs = [kaspa.UtxoEntryReference.from_dict(e) for e in sorted(mature, key=lambda e: -e["utxoEntry"]["amount"])]
    res = kaspa.create_transactions(entries=refs, change_address=addr, network_id=kaspa.NetworkId("simnet"),
                                    outputs=[kaspa.PaymentOutput(kaspa.Address(a.dest), amount)], priority_fee=0)
    txids = []
    for pt in res["transactions"]:          # >1 only if many inputs had to be compounded first
        pt.sign([key])
        tx = to_rpc_tx(pt.transaction.to_dict())
        r = rpc.call("submitTransaction", {"transaction": tx, "allowOrphan": False})
        txids.append(r["transactionId"])
        log(f"submitted {r['transactionId']} fee={pt.fee_amount} mass={pt.mass}")
    txid = txids[-1]

    # 3. mine so it is included
    sink = mine(rpc, src, a.blocks)
    incl = None
    if a.blocks:
        # the first mined block after submit contains the tx; walk back from sink via selectedParent
        h = sink
        for _ in range(a.blocks):
            b = rpc.call("getBlock", {"hash": h, "includeTransactions": False})["block"]
            if txid in b["verboseData"]["transactionIds"]:
                incl = h
            h = b["verboseData"]["selectedParentHash"]
        if incl is None:
            raise SystemExit(f"tx {txid} not found in mined blocks")
    dt = time.time() - t0
    log(f"included in block {incl}; total {dt:.2f}s")
    print(f"txid: {txid}")
    if a.json:
        print(json.dumps({"txid": txid, "from": src, "to": a.dest, "amountSompi": amount,
                          "blockHash": incl, "fee": res["summary"].fees, "seconds": round(dt, 3)}))


if __name__ == "__main__":
    main()
