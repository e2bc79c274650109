#!/usr/bin/env bash
# Rebalancing under load (scripts/citus.sh start first). The cluster starts with every shard on
# one worker: the second is drained and removed. Then, while a writer creates and finalizes
# invoices over HTTP and a payer pays invoices on Anvil, the second worker is added and
# citus_rebalance_start() moves shards onto it. Afterwards every invoice the writer saw committed
# exists, every payment the payer saw mined is credited, and the shards are on both workers.
set -euo pipefail
export PGPORT="${CITUS_COORDINATOR_PORT:-5440}" PGRST_PORT="${CITUS_PGRST_PORT:-3100}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib.sh"
source "$here/../chains/lib.sh"
read -r W1 W2 <<< "${CITUS_WORKER_PORTS:-5441 5442}"
URL="http://127.0.0.1:$PGRST_PORT"
PORT="${ANVIL_REBALANCE_PORT:-18645}"
CHAIN="anvil-rebalance-$(date +%s)"
export ETH_RPC="http://127.0.0.1:$PORT"
evm() { python3 "$here/../chains/evm_rpc.py" "$@"; }
work=$(mktemp -d)
cleanup() {
  touch "$work/stop"
  kill "${anvil:-}" "${writer:-}" "${payer:-}" 2>/dev/null || true
  psql_ -qc "update invoices_internal.chains set active = false where id = '$CHAIN'" >/dev/null 2>&1 || true
  # the cluster is left with both workers holding shards, whatever happened
  q "select citus_add_node('127.0.0.1', $W2)" >/dev/null 2>&1 || true
  q "select citus_set_node_property('127.0.0.1', $W2, 'shouldhaveshards', true)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
placements() {  # the number of shard placements of distributed tables on each worker: "W1 W2"
  q "select coalesce(sum(case when p.nodeport = $W1 then 1 end), 0) || ' ' || coalesce(sum(case when p.nodeport = $W2 then 1 end), 0)
       from pg_dist_placement x join pg_dist_shard s using (shardid) join pg_dist_node p on p.groupid = x.groupid
       join pg_dist_partition d on d.logicalrelid = s.logicalrelid where d.partmethod = 'h'"
}

section "one worker holds every shard"
q "select citus_drain_node('127.0.0.1', $W2)" >/dev/null
# the moved shards' old copies are dropped now, before the node leaves (a later move back would
# find them in its way)
psql_ -qc "call citus_cleanup_orphaned_resources()" >/dev/null
q "select citus_remove_node('127.0.0.1', $W2)" >/dev/null
read -r on1 on2 <<< "$(placements)"
expect_eq "after draining and removing :$W2, :$W1 holds all $on1 shards" "$on2" 0

section "load: a writer over HTTP, a payer on Anvil"
"$ANVIL_BIN" --port "$PORT" --chain-id 8453 --block-time 1 --silent >/dev/null 2>&1 &
anvil=$!
for _ in $(seq 100); do evm height >/dev/null 2>&1 && break; sleep 0.05; done
mid=$(evm_merchant "rebalance payer")
wait_for 15 "select tip_height is not null from invoices.chains where id = '$CHAIN'" \
  && ok "the worker polls the chain" || bad "the worker polls the chain" "$(q "select last_error from invoices.chains where id = '$CHAIN'")"
writer_mid=$(q "select invoices.create_merchant('rebalance writer')->>'id'")
key=$(q "select invoices_internal.insert_api_key('$writer_mid', 'rebalance', '{read,write}', 100000)->>'api_key'")
(
  while [ ! -e "$work/stop" ]; do
    out=$(curl -s -m 20 -w ' %{http_code}' -X POST "$URL/rpc/create_invoice" -H "X-API-Key: $key" \
            -H 'Content-Type: application/json' -d '{"lines": [{"description": "w", "unit_price": "4.00"}], "send": true}')
    code=${out##* }
    if [ "$code" = 200 ]; then python3 -c "import json,sys; print(json.loads(sys.argv[1])['id'])" "${out% *}" >> "$work/committed"
    else echo "$code ${out:0:200}" >> "$work/writer-errors"; fi
  done
) &
writer=$!
(
  while [ ! -e "$work/stop" ]; do
    if read -r inv addr < <(invoice ETH 0.01 1) && [ -n "$addr" ]; then
      evm send-eth "$addr" 0.01 >/dev/null && echo "$inv" >> "$work/paid"
    fi
    sleep 0.3
  done
) &
payer=$!
sleep 3

section "the second worker is added and the shards move while the load runs"
q "select citus_add_node('127.0.0.1', $W2)" >/dev/null
q "select invoices.distribute_on_citus()" >/dev/null   # (the new node's sequences and grants)
started=$(date +%s)
q "select citus_rebalance_start()" >/dev/null
q "select citus_rebalance_wait()" >/dev/null
took=$(( $(date +%s) - started ))
sleep 3
touch "$work/stop"
wait "$writer" "$payer" 2>/dev/null || true
read -r on1 on2 <<< "$(placements)"
if [ "$on1" -gt 0 ] && [ "$on2" -gt 0 ]; then ok "the shards are on both workers ($on1 and $on2 placements; the rebalance took ${took}s)"
else bad "the shards are on both workers" "$on1 and $on2"; fi
expect_eq "the rebalance finished without a failed job" \
  "$(q "select count(*) from pg_dist_background_job where state not in ('finished', 'cancelled')")" 0

section "nothing lost"
committed=$(sort -u "$work/committed" 2>/dev/null | wc -l)
check "the writer committed invoices during the rebalance ($committed)" [ "$committed" -gt 10 ]
ids=$(sort -u "$work/committed" | sed "s/.*/'&'/" | paste -sd, -)
expect_eq "every committed invoice exists, finalized" \
  "$(q "select count(*) from invoices_internal.invoices where merchant_id = '$writer_mid' and id in ($ids) and status = 'pending'")" "$committed"
[ -s "$work/writer-errors" ] && echo "  (writer's refused requests: $(wc -l < "$work/writer-errors"), e.g. $(head -1 "$work/writer-errors"))"
paid=$(sort -u "$work/paid" 2>/dev/null | wc -l)
check "the payer paid invoices during the rebalance ($paid)" [ "$paid" -gt 3 ]
pids=$(sort -u "$work/paid" | sed "s/.*/'&'/" | paste -sd, -)
if wait_for 30 "select count(*) = $paid from invoices_internal.invoices where merchant_id = '$mid' and id in ($pids) and status in ('paid', 'confirmed')"; then
  ok "every mined payment is credited: $paid invoices paid"
else
  bad "every mined payment is credited" "$(q "select status, count(*) from invoices_internal.invoices where merchant_id = '$mid' and id in ($pids) group by 1")"
fi
finish
