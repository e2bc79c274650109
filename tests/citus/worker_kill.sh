#!/usr/bin/env bash
# A worker node killed under load (scripts/citus.sh start first): kill -9 of the postmaster of
# the worker that holds merchant A's shard. A's requests fail at once with a 5xx (no hang), and
# merchant B, whose rows and key are on the other worker, keeps reading; writes that touch a
# routing table on the dead node (an invoice's slug) fail the same clean way. After the restart
# nothing committed is lost, A works again, and the worker's chain polls and webhook deliveries
# resume.
set -euo pipefail
export PGPORT="${CITUS_COORDINATOR_PORT:-5440}" PGRST_PORT="${CITUS_PGRST_PORT:-3100}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib.sh"
source "$here/../chains/lib.sh"
URL="http://127.0.0.1:$PGRST_PORT"
PORT="${ANVIL_KILL_PORT:-18745}"
CHAIN="anvil-kill-$(date +%s)"
export ETH_RPC="http://127.0.0.1:$PORT"
RECEIVER_PORT="${WEBHOOK_RECEIVER_PORT:-18960}"
evm() { python3 "$here/../chains/evm_rpc.py" "$@"; }
work=$(mktemp -d)
CITUS_DIR="$LOCAL_DIR/citus"
node_of() {  # TABLE VALUE: the port of the worker holding VALUE's shard of TABLE
  q "select n.nodeport from pg_dist_placement p join pg_dist_node n on n.groupid = p.groupid
      where p.shardid = get_shard_id_for_distribution_column('$1', '$2')"
}
cleanup() {
  kill "${anvil:-}" "${receiver:-}" 2>/dev/null || true
  [ -n "${dead:-}" ] && as_owner "$PG_BIN/pg_ctl" -D "$CITUS_DIR/node-$dead" -w -t 60 start -l "$CITUS_DIR/log/node-$dead.log" >/dev/null 2>&1 || true
  psql_ -qc "update invoices_internal.chains set active = false where id = '$CHAIN'" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
call() {  # METHOD PATH KEY [curl args]: "$status $seconds", body in $work/body
  local method=$1 path=$2 key=$3; shift 3
  curl -s -m 60 -o "$work/body" -w '%{http_code} %{time_total}' -X "$method" "$URL$path" -H "X-API-Key: $key" \
       -H 'Content-Type: application/json' "$@"
}

section "two merchants on two workers"
"$ANVIL_BIN" --port "$PORT" --chain-id 8453 --block-time 1 --silent >/dev/null 2>&1 &
anvil=$!
for _ in $(seq 100); do evm height >/dev/null 2>&1 && break; sleep 0.05; done
python3 "$here/../stubs/webhook_receiver.py" "$RECEIVER_PORT" "$work/received.jsonl" &
receiver=$!
for _ in $(seq 50); do curl -s "http://127.0.0.1:$RECEIVER_PORT/control/secret?name=probe&secret=x" >/dev/null 2>&1 && break; sleep 0.1; done
mid=$(evm_merchant "kill payer")   # merchant A pays on the chain
dead=$(node_of invoices_internal.merchants "$mid")
B=""
for n in $(seq 40); do   # merchant B: its rows on the other worker
  m=$(q "select invoices.create_merchant('kill survivor $n')->>'id'")
  [ "$(node_of invoices_internal.merchants "$m")" != "$dead" ] && { B=$m; break; }
done
for n in $(seq 40); do   # and its key's hash there too (the key check reads it)
  B_KEY=$(q "select invoices_internal.insert_api_key('$B', 'kill', '{read,write}', 100000)->>'api_key'")
  h=$(q "select encode(sha256(convert_to('$B_KEY', 'UTF8')), 'hex')")
  [ "$(node_of invoices_internal.api_key_hashes "$h")" != "$dead" ] && break
done
A_KEY=$(q "select invoices_internal.insert_api_key('$mid', 'kill', '{read,write,webhooks}', 100000)->>'api_key'")
ok "A's shard is on :$dead, B's on the other worker"
read -r code _ <<< "$(call POST /rpc/create_webhook_endpoint "$A_KEY" -d "{\"url\": \"http://127.0.0.1:$RECEIVER_PORT/ok/kill\"}")"
expect_eq "A registers a webhook endpoint" "$code" 200
for n in 1 2 3; do call POST /rpc/create_invoice "$A_KEY" -d '{"lines": [{"description": "before", "unit_price": "1.00"}], "send": true}' >/dev/null; done
before=$(q "select count(*) from invoices_internal.invoices where merchant_id = '$mid'")
wait_for 15 "select tip_height is not null from invoices.chains where id = '$CHAIN'" \
  && ok "the worker polls the chain" || bad "the worker polls the chain"

section "kill -9 of the worker on :$dead"
kill -9 "$(head -1 "$CITUS_DIR/node-$dead/postmaster.pid")"
sleep 1
read -r code secs <<< "$(call GET "/invoices?select=id" "$A_KEY")"
if [[ "$code" == 5* ]] && [ "${secs%.*}" -lt 10 ]; then ok "A's read fails at once: $code in ${secs}s"
else bad "A's read fails at once" "$code in ${secs}s: $(head -c 200 "$work/body")"; fi
read -r code secs <<< "$(call POST /rpc/create_invoice "$A_KEY" -d '{"lines": [{"description": "during", "unit_price": "1.00"}]}')"
if [[ "$code" == 5* ]] && [ "${secs%.*}" -lt 10 ]; then ok "A's create fails at once: $code in ${secs}s"
else bad "A's create fails at once" "$code in ${secs}s: $(head -c 200 "$work/body")"; fi
read -r code secs <<< "$(call GET "/invoices?select=id&merchant_id=eq.$B" "$B_KEY")"
expect_eq "B reads its invoices meanwhile ($secs s)" "$code" 200
ok_creates=0; failed_creates=0; slow=0
for n in $(seq 10); do
  read -r code secs <<< "$(call POST /rpc/create_invoice "$B_KEY" -d '{"lines": [{"description": "during", "unit_price": "1.00"}], "send": true}')"
  if [ "$code" = 200 ]; then ok_creates=$((ok_creates + 1)); elif [[ "$code" == 5* ]]; then failed_creates=$((failed_creates + 1)); cp "$work/body" "$work/refusal"; fi
  [ "${secs%.*}" -ge 10 ] && slow=$((slow + 1))
done
if [ "$ok_creates" -gt 0 ]; then
  ok "B creates invoices meanwhile ($ok_creates of 10; $failed_creates refused: their slug's shard was on the dead node)"
else
  bad "B creates invoices meanwhile" "none of 10; a refusal: $(head -c 300 "$work/refusal" 2>/dev/null)"
fi
expect_eq "  every answer within 10 s, each a 200 or a 5xx" "$slow $((ok_creates + failed_creates))" "0 10"
b_committed=$(q "select count(*) from invoices_internal.invoices where merchant_id = '$B'")

section "the worker node restarts"
# (its orphaned backends notice the postmaster's death and exit; until then it cannot start)
for _ in $(seq 60); do
  as_owner "$PG_BIN/pg_ctl" -D "$CITUS_DIR/node-$dead" -w -t 60 start -l "$CITUS_DIR/log/node-$dead.log" >/dev/null 2>&1 && break
  sleep 0.5
done
dead=""
for _ in $(seq 50); do [ "$(call GET "/invoices?select=id" "$A_KEY" | cut -d' ' -f1)" = 200 ] && break; sleep 0.2; done
expect_eq "nothing committed is lost: A's invoices" "$(q "select count(*) from invoices_internal.invoices where merchant_id = '$mid'")" "$before"
expect_eq "  B's invoices, all $ok_creates created during the outage" "$(q "select count(*) from invoices_internal.invoices where merchant_id = '$B'")" "$b_committed"
read -r code _ <<< "$(call POST /rpc/create_invoice "$A_KEY" -d '{"lines": [{"description": "after", "unit_price": "1.00"}], "send": true}')"
expect_eq "A creates again" "$code" 200
read -r inv addr < <(invoice ETH 0.02 1)
evm send-eth "$addr" 0.02 >/dev/null
expect_status "detection resumes: a payment after the restart is credited" "$inv" confirmed 30
if wait_for 30 "select count(*) = 0 from invoices_internal.webhook_deliveries where merchant_id = '$mid' and status <> 'delivered'"; then
  ok "deliveries resume: every event of A delivered ($(q "select count(*) from invoices_internal.webhook_deliveries where merchant_id = '$mid'"))"
else
  bad "deliveries resume" "$(q "select status, count(*) from invoices_internal.webhook_deliveries where merchant_id = '$mid' group by 1")"
fi
finish
