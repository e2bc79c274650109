#!/usr/bin/env bash
# Benchmark (never a timed test): the background worker's own memory (RssAnon: its private
# pages, not the shared buffers it touches) while it watches 100,000 addresses on a chain
# (Anvil, polled every 100 ms) and has 10,000 webhook deliveries pending to a receiver that
# answers after 5 s (past the worker's timeout, so deliveries stay in flight and come back).
# Figures: the peak under load in MB (target <= 256) and the same worker idle, just started.
# The load is the demo database's (the worker runs there): its merchant, chain and rows are
# removed afterwards.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/env.sh"
source "$here/lib.sh"
ADDRESSES="${BENCH_ADDRESSES:-100000}"
DELIVERIES="${BENCH_DELIVERIES:-10000}"
PORT="${BENCH_ANVIL_PORT:-18746}"
RECEIVER_PORT="${BENCH_RECEIVER_PORT:-18952}"
CHAIN="bench-memory-$(date +%s)"
bash "$ROOT/scripts/setup.sh" >/dev/null 2>&1 || bash "$ROOT/scripts/setup.sh"
work=$(mktemp -d)
"$ANVIL_BIN" --port "$PORT" --chain-id 8453 --block-time 1 --silent >/dev/null 2>&1 & anvil=$!
python3 "$here/../stubs/webhook_receiver.py" "$RECEIVER_PORT" "$work/received.jsonl" & receiver=$!
cleanup() {
  kill $anvil $receiver 2>/dev/null || true
  bench_forget_chain "$CHAIN"
  bench_forget_merchant "Memory bench $CHAIN"
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do ETH_RPC="http://127.0.0.1:$PORT" python3 "$here/../chains/evm_rpc.py" height >/dev/null 2>&1 && break; sleep 0.05; done
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$RECEIVER_PORT/control/fix" >/dev/null 2>&1 && break; sleep 0.1; done

# a fresh worker (the postmaster starts it again), so the idle figure holds nothing an earlier
# load left in its heap
old=$(psql_ -tAc "select pid from pg_stat_activity where backend_type = 'invoices worker'")
[ -n "$old" ] && psql_ -qc "select pg_terminate_backend($old)" >/dev/null
pid=""
for _ in $(seq 300); do
  pid=$(psql_ -tAc "select pid from pg_stat_activity where backend_type = 'invoices worker'")
  [ -n "$pid" ] && [ "$pid" != "$old" ] && break
  pid=""; sleep 0.1
done
[ -n "$pid" ] || { echo "the worker did not start again" >&2; exit 1; }
rss() { awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status"; }   # kB
sleep 5
idle=$(rss)
echo "worker (pid $pid) idle: $((idle / 1024)) MB private"

psql_ -q >/dev/null <<SQL
select invoices.configure_chain('$CHAIN', 'evm', 'http://127.0.0.1:$PORT', '{ETH}', confirmations => 1, chain_id => 8453,
                                poll_interval_ms => 100) is not null as configured \gset
select invoices.act_as((invoices.create_merchant('Memory bench $CHAIN') ->> 'id')::uuid) is not null as acting \gset
select invoices.create_wallet('ETH', xpub => 'xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt', gap_limit => 1000) is not null as w \gset
select invoices.create_webhook_endpoint('http://127.0.0.1:$RECEIVER_PORT/hang/memory', '{invoice.viewed}') is not null as hook \gset
-- the watched addresses: in their pause window, so every poll asks the node about them
insert into invoices_internal.addresses (merchant_id, wallet_id, address, derivation_index, available_at)
select w.merchant_id, w.id, '0x' || lpad(to_hex(g), 40, '0'), null, now() + interval '1 hour'
  from invoices_internal.wallets w, generate_series(1, $ADDRESSES) g
 where w.merchant_id = current_setting('invoices.merchant_id')::uuid;
-- the pending deliveries: one invoice's events
select invoices.create_invoice(lines => '[{"description": "Memory", "unit_price": 1}]') ->> 'id' as inv \gset
select count(invoices_internal.emit_events(i, '{invoice.viewed}'))
  from invoices_internal.invoices i, generate_series(1, $DELIVERIES)
 where i.merchant_id = current_setting('invoices.merchant_id')::uuid and i.id = :'inv';
SQL
peak=0
for s in $(seq 30); do
  sleep 1
  now=$(rss); [ "$now" -gt "$peak" ] && peak=$now
done
watched=$(psql_ -tAc "select last_result->>'watched' from invoices.worker_status where task = 'chain $CHAIN'")
flight=$(psql_ -tAc "select count(*) from invoices_internal.webhook_deliveries d join invoices_internal.merchants m on m.id = d.merchant_id and m.name = 'Memory bench $CHAIN' where d.status = 'delivering'")
echo "under load (30 s: ${watched:-?} watched addresses, $flight deliveries in flight): $((peak / 1024)) MB private at most"
echo "target: at most 256 MB private under this load"
# (no limit of the same run makes a useful ratio here: a fresh worker holds 5 MB, and what it
# must hold, the watched addresses as text, is 4 MB; the figure is absolute, with its target)
bench_figure "worker private memory, 100k watched addresses and 10k deliveries pending, MB" "$((peak / 1024))" "<= 256"
bench_figure "worker private memory, idle and just started, MB" "$((idle / 1024))"
