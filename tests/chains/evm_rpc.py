#!/usr/bin/env python3
"""Drives a test Anvil node over plain JSON-RPC (what a payer's wallet does).

Usage: evm_rpc.py <command> [args]   (node URL from $ETH_RPC, default http://127.0.0.1:18545)
  send-eth <to> <ether>              dev account 0 pays <ether> ETH to <to>; prints the tx hash
  deploy-usdc                        deploys TestUSDC (6 decimals); prints its address
  send-usdc <token> <to> <units>     mints <units> to dev account 0 and transfers them to <to>
  mine <n>                           mines n blocks
  reorg <depth>                      replaces the last <depth> blocks by empty ones
  height                             the current block number
  wait-receipt <tx>                  waits until the transaction is mined; prints its block number
  automine on|off                    mine each transaction at once, or leave them in the mempool
  send-eth-nonce <to> <ether> <nonce> <gwei>   pays with an explicit nonce and gas price
  nonce                              dev account 0's next nonce (pending included)
  drop <tx>                          removes a transaction from the mempool (anvil_dropTransaction)
  set-reverting-code <address>       gives <address> code that reverts every call (as a contract
                                     or EIP-7702 deposit address that refuses a transfer would)
  send-eth-gas <to> <ether>          pays with a fixed gas limit (no estimate): mined even if it fails;
                                     prints the tx hash
  receipt-status <tx>                0x1 or 0x0
  tx-time <tx>                       the Unix time of the block that holds <tx>
"""
import json
import os
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

URL = os.environ.get("ETH_RPC", "http://127.0.0.1:18545")
DEV0 = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"


def rpc(method, params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(URL, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        answer = json.load(r)
    if answer.get("error"):
        raise SystemExit(f"{method}: {answer['error']}")
    return answer["result"]


def word(value):
    return format(value, "064x")


def address_word(address):
    return word(int(address, 16))


def receipt(tx):
    for _ in range(600):
        r = rpc("eth_getTransactionReceipt", [tx])
        if r:
            return r
        time.sleep(0.05)
    raise SystemExit(f"transaction {tx} not mined")


def main(cmd, *args):
    if cmd == "send-eth":
        to, ether = args
        wei = int(Decimal(ether) * 10**18)
        print(rpc("eth_sendTransaction", [{"from": DEV0, "to": to, "value": hex(wei)}]))
    elif cmd == "deploy-usdc":
        code = (Path(__file__).parent / "evm" / "TestUSDC.bin").read_text().strip()
        tx = rpc("eth_sendTransaction", [{"from": DEV0, "data": "0x" + code}])
        print(receipt(tx)["contractAddress"])
    elif cmd == "send-usdc":
        token, to, units = args[0], args[1], int(args[2])
        mint = "0x40c10f19" + address_word(DEV0) + word(units)  # mint(address,uint256)
        receipt(rpc("eth_sendTransaction", [{"from": DEV0, "to": token, "data": mint}]))
        transfer = "0xa9059cbb" + address_word(to) + word(units)  # transfer(address,uint256)
        print(rpc("eth_sendTransaction", [{"from": DEV0, "to": token, "data": transfer}]))
    elif cmd == "mine":
        rpc("anvil_mine", [hex(int(args[0]))])
    elif cmd == "reorg":
        rpc("anvil_reorg", [int(args[0]), []])
    elif cmd == "automine":
        rpc("evm_setAutomine", [args[0] == "on"])
    elif cmd == "send-eth-nonce":
        to, ether, nonce, gwei = args
        wei = int(Decimal(ether) * 10**18)
        print(rpc("eth_sendTransaction", [{"from": DEV0, "to": to, "value": hex(wei), "nonce": hex(int(nonce)),
                                            "gas": hex(21000), "gasPrice": hex(int(gwei) * 10**9)}]))
    elif cmd == "nonce":
        print(int(rpc("eth_getTransactionCount", [DEV0, "pending"]), 16))
    elif cmd == "drop":
        rpc("anvil_dropTransaction", [args[0]])
    elif cmd == "set-reverting-code":
        rpc("anvil_setCode", [args[0], "0x60006000fd"])  # PUSH1 0 PUSH1 0 REVERT
    elif cmd == "send-eth-gas":
        to, ether = args
        wei = int(Decimal(ether) * 10**18)
        print(rpc("eth_sendTransaction", [{"from": DEV0, "to": to, "value": hex(wei), "gas": hex(100000)}]))
    elif cmd == "tx-time":
        block = rpc("eth_getBlockByNumber", [receipt(args[0])["blockNumber"], False])
        print(int(block["timestamp"], 16))
    elif cmd == "receipt-status":
        print(receipt(args[0])["status"])
    elif cmd == "height":
        print(int(rpc("eth_blockNumber", []), 16))
    elif cmd == "wait-receipt":
        print(int(receipt(args[0])["blockNumber"], 16))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(*sys.argv[1:])
