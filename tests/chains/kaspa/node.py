"""Small commands against a simnet kaspad's wRPC JSON, for tests/chains/kaspa.sh:

    python node.py ws://127.0.0.1:18610 info | sink | mine N | new-address | new-key
"""
import sys

import kaspa
from krpc import Rpc

MINER = "b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfef"  # test-only key (pay.py's)

rpc = Rpc(sys.argv[1], timeout=10)
cmd = sys.argv[2]
if cmd == "info":
    i = rpc.call("getServerInfo")
    print(f"{i['serverVersion']} {i['networkId']} utxoindex={i['hasUtxoIndex']} daa={i['virtualDaaScore']}")
elif cmd == "sink":
    print(rpc.call("getSink")["sink"])
elif cmd == "mine":
    pay_to = kaspa.PrivateKey(MINER).to_address("simnet").to_string()
    for _ in range(int(sys.argv[3])):
        block = rpc.call("getBlockTemplate", {"payAddress": pay_to, "extraData": []})["block"]
        report = rpc.call("submitBlock", {"block": block, "allowNonDAABlocks": False})
        if report["report"]["type"] != "success":
            sys.exit(f"submitBlock rejected: {report}")
elif cmd == "new-address":
    print(kaspa.Keypair.random().to_address("simnet").to_string())
elif cmd == "new-key":
    k = kaspa.Keypair.random()
    print(k.private_key, k.to_address("simnet").to_string())
else:
    sys.exit(f"unknown command {cmd}")
