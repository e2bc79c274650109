#!/usr/bin/env bash
# Benchmark: payment detection on Anvil with 1-second blocks (BENCH_INVOICES invoices, default
# 100). Each invoice (1 confirmation) is paid by its own transaction; a thread watches the node
# for the moment each block appears, and a local receiver logs when the invoice.confirmed webhook
# arrives. Prints p50/p99 of block -> webhook and of transaction -> webhook (targets: p50 <= 0.5 s
# and p99 <= 1 s after the block). Then 10,000 more watched addresses: prints the poll time and how many
# watched addresses one poll handles per second.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../../scripts/env.sh"
source "$here/lib.sh"
N="${BENCH_INVOICES:-100}"
PORT="${BENCH_ANVIL_PORT:-18745}"
RECEIVER_PORT="${BENCH_RECEIVER_PORT:-18951}"
CHAIN="bench-$(date +%s)"
work=$(mktemp -d)
export ETH_RPC="http://127.0.0.1:$PORT"
"$ANVIL_BIN" --port "$PORT" --chain-id 8453 --block-time 1 --silent >/dev/null 2>&1 & anvil=$!
python3 "$here/../stubs/webhook_receiver.py" "$RECEIVER_PORT" "$work/received.jsonl" & receiver=$!
# nothing left in the demo database afterwards (the worker, which the benchmark needs, runs there)
cleanup() {
  kill $anvil $receiver 2>/dev/null || true
  bench_forget_chain "$CHAIN"
  bench_forget_merchant "Chain bench"
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do python3 "$here/../chains/evm_rpc.py" height >/dev/null 2>&1 && break; sleep 0.05; done
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$RECEIVER_PORT/control/fix" >/dev/null 2>&1 && break; sleep 0.1; done

psql_ -tA > "$work/invoices" <<SQL
select invoices.configure_chain('$CHAIN', 'evm', '$ETH_RPC', '{ETH}', confirmations => 1, chain_id => 8453,
                                poll_interval_ms => 100) is not null as configured \gset
select invoices.act_as((invoices.create_merchant('Chain bench') ->> 'id')::uuid) is not null as acting \gset
select invoices.create_wallet('ETH', xpub => '$(fresh_xpub xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt)', gap_limit => 1000) is not null as w \gset
select invoices.create_webhook_endpoint('http://127.0.0.1:$RECEIVER_PORT/ok/bench', '{invoice.confirmed}') is not null as hook \gset
select r->>'id' || ' ' || (r->>'address')
  from generate_series(1, $N) g,
       lateral invoices.create_invoice(currency => 'ETH', asset => 'ETH',
                 lines => jsonb_build_array(jsonb_build_object('description', 'Bench ' || g, 'unit_price', '0.01')),
                 send => true) r;
SQL
sleep 1.5   # the worker has seen the chain

echo "paying $N invoices on Anvil (1 s blocks, 1 confirmation)"
python3 - "$work" "$ETH_RPC" <<'PY'
import json, sys, threading, time, urllib.request
work, url = sys.argv[1], sys.argv[2]
def rpc(method, params):
    req = urllib.request.Request(url, json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["result"]
seen, stop = {}, threading.Event()
def watch_blocks():
    while not stop.is_set():
        h = int(rpc("eth_blockNumber", []), 16)
        seen.setdefault(h, time.time())
        time.sleep(0.01)
t = threading.Thread(target=watch_blocks); t.start()
sent = []
for line in open(f"{work}/invoices"):
    inv, addr = line.split()
    tx = rpc("eth_sendTransaction", [{"from": "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", "to": addr, "value": hex(10**16)}])
    sent.append((inv, tx, time.time()))
    time.sleep(0.02)
blocks = {}
for inv, tx, at in sent:
    for _ in range(200):
        r = rpc("eth_getTransactionReceipt", [tx])
        if r: blocks[inv] = int(r["blockNumber"], 16); break
        time.sleep(0.05)
time.sleep(0.5)
stop.set(); t.join()
json.dump({"sent": sent, "blocks": blocks, "seen": seen}, open(f"{work}/paid.json", "w"))
PY
for _ in $(seq 200); do
  got=$(grep -c invoice.confirmed "$work/received.jsonl" 2>/dev/null || true)
  [ "${got:-0}" -ge "$N" ] && break; sleep 0.2
done
python3 - "$work" "$N" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
paid = json.load(open(f"{work}/paid.json"))
seen = {int(k): v for k, v in paid["seen"].items()}
got = {}
for line in open(f"{work}/received.jsonl"):
    e = json.loads(line); body = json.loads(e["body"])
    if body["event"] == "invoice.confirmed":
        got.setdefault(body["data"]["id"], e["received"])
after_block, after_tx = [], []
for inv, tx, at in paid["sent"]:
    if inv in got and inv in paid["blocks"]:
        after_block.append(got[inv] - seen[paid["blocks"][inv]])
        after_tx.append(got[inv] - at)
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(len(xs) * p))]
print(f"invoices confirmed by webhook: {len(after_block)} of {n}")
print(f"block appears -> webhook:      p50 {pct(after_block, .5):.3f} s, p99 {pct(after_block, .99):.3f} s   (targets p50 <= 0.5 s, p99 <= 1 s)")
print(f"transaction sent -> webhook:   p50 {pct(after_tx, .5):.3f} s, p99 {pct(after_tx, .99):.3f} s   (blocks every 1 s)")
import os
if os.environ.get("BENCH_FIGURES"):
    with open(os.environ["BENCH_FIGURES"], "a") as f:
        # the block interval (1 s) is the limit: the figures are in blocks
        f.write(f"chain: block -> webhook p50, in 1-second blocks\t{pct(after_block, .5):.3f}\t<= 0.5\n")
        f.write(f"chain: block -> webhook p99, in 1-second blocks\t{pct(after_block, .99):.3f}\t<= 1\n")
PY

echo "10,000 more watched addresses (in their pause window)"
psql_ -q <<SQL
insert into invoices_internal.addresses (merchant_id, wallet_id, address, derivation_index, available_at)
select w.merchant_id, w.id, '0x' || lpad(to_hex(g), 40, '0'), null, now() + interval '1 hour'
  from invoices_internal.wallets w join invoices_internal.merchants m on m.id = w.merchant_id and m.name = 'Chain bench',
       generate_series(1, 10000) g
 where w.merchant_id = (select id from invoices_internal.merchants where name = 'Chain bench' order by created_at desc limit 1);
SQL
sleep 4
read -r watched poll_ms < <(psql_ -tA -F ' ' -c "select last_result->>'watched', last_result->>'poll_ms' from invoices.worker_status where task = 'chain $CHAIN'")
t0=$(date +%s%N); psql_ -tA -c "select count(*) from invoices_internal.chain_poll_input('$CHAIN')" >/dev/null; t1=$(date +%s%N)
read_ms=$(( (t1 - t0) / 1000000 ))
echo "one poll with $watched watched addresses: ${read_ms} ms to read them from the database (chain_poll_input), ${poll_ms} ms of node calls and matching on the thread"
echo "-> $(( watched * 1000 / (read_ms + poll_ms) )) watched addresses per second per poll"
