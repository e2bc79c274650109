#!/usr/bin/env bash
# kill -9 of the postmaster under load: 8 writers create and finalize (or cancel) invoices and
# record each id once its transaction committed, a payer pays random open invoices on a real
# Anvil, the worker detects payments and delivers nothing in particular. After the crash and
# restart: every invoice a writer saw committed exists, every payment the node mined to a
# watched address is detected (the worker resumes from its cursor), and every audited status
# change has its event in the outbox.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
source "$here/../chains/lib.sh"
PORT="${CRASH_ANVIL_PORT:-18548}"
CHAIN="crash-$(date +%s)"
work=$(mktemp -d)
export ETH_RPC="http://127.0.0.1:$PORT"
"$ANVIL_BIN" --port "$PORT" --chain-id 8453 --silent >/dev/null 2>&1 & anvil=$!
pids=()
trap 'kill $anvil "${pids[@]}" 2>/dev/null || true; psql_ -qc "update invoices_internal.chains set active = false where id = '"'"'$CHAIN'"'"'" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do python3 "$here/../chains/evm_rpc.py" height >/dev/null 2>&1 && break; sleep 0.05; done
MID=$(evm_merchant "Crash load")
# writers: an id is written to the log only after psql returned it, i.e. after the commit
for w in $(seq 8); do
  (while :; do
     id=$("$PG_BIN/psql" -XtAq -v ON_ERROR_STOP=1 -c "select set_config('invoices.merchant_id', '$MID', false) is null" \
           -c "select invoices.create_invoice(currency => 'ETH', asset => 'ETH', pause_minutes => 60, send => true,
                 lines => '[{\"description\": \"w$w\", \"unit_price\": \"0.01\"}]') ->> 'id'" 2>/dev/null | tail -1) || { sleep 0.2; continue; }
     [ -n "$id" ] && echo "$id" >> "$work/committed.$w"
     if [ $((RANDOM % 3)) = 0 ]; then
       "$PG_BIN/psql" -XtAq -c "select set_config('invoices.merchant_id', '$MID', false) is null" -c "select invoices.cancel_invoice('$id') is null" >/dev/null 2>&1 || true
     fi
   done) & pids+=($!)
done
# the payer: every transaction the node mined is logged
python3 - "$MID" "$ETH_RPC" "$work/sent" <<'PY' & pids+=($!)
import json, os, random, subprocess, sys, time, urllib.request
mid, url, out = sys.argv[1], sys.argv[2], sys.argv[3]
def rpc(method, params):
    req = urllib.request.Request(url, json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode(),
                                 {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=30))["result"]
while True:
    r = subprocess.run([os.environ["PG_BIN"] + "/psql", "-XtA", "-c",
        f"select deposit_address from invoices_internal.invoices where merchant_id = '{mid}' and status = 'pending' order by random() limit 3"],
        capture_output=True, text=True)
    for addr in r.stdout.split():
        tx = rpc("eth_sendTransaction", [{"from": "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", "to": addr, "value": hex(10**16)}])
        with open(out, "a") as f:
            f.write(tx + "\n")
    time.sleep(0.1)
PY
sleep "${CRASH_AFTER_SECONDS:-8}"
before=$(cat "$work"/committed.* 2>/dev/null | wc -l)
kill -9 "$(head -1 "$PGDATA/postmaster.pid")"
ok "kill -9 of the postmaster after $before committed invoices and $(wc -l < "$work/sent" 2>/dev/null || echo 0) payments"
sleep 3   # the writers and the payer keep trying against the dead server
started=no
for _ in $(seq 100); do
  if as_owner "$PG_BIN/pg_ctl" -D "$PGDATA" -w -t 60 start -l "$PG_LOG" >/dev/null 2>&1; then started=yes; break; fi
  sleep 0.2
done
[ "$started" = yes ] && ok "PostgreSQL restarted" || { bad "PostgreSQL restarted"; finish; exit 1; }
sleep 5   # load goes on after the restart
kill "${pids[@]}" 2>/dev/null || true; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; pkill -f "invoices.create_invoice(currency => .ETH., asset => .ETH., pause_minutes => 60" 2>/dev/null || true
cat "$work"/committed.* | sort -u > "$work/committed"
missing=$(psql_ -tA -c "select id from invoices_internal.invoices where merchant_id = '$MID'" | sort -u | comm -23 "$work/committed" - | wc -l)
expect_eq "every invoice a writer saw committed exists ($(wc -l < "$work/committed") of them)" "$missing" "0"
# the worker resumes from its cursor and finds every mined payment
tip=$(python3 "$here/../chains/evm_rpc.py" height)
if wait_for 30 "select cursor_height >= $tip from invoices.chains where id = '$CHAIN'"; then ok "the worker resumed from its cursor up to the tip ($tip)"; else
  bad "the worker resumed" "$(q "select cursor_height, tip_height, last_error from invoices.chains where id = '$CHAIN'")"; fi
sleep 1
sort -u "$work/sent" > "$work/sent.sorted"
lost=$(psql_ -tA -c "select txid from invoices_internal.payments where merchant_id = '$MID'" | sort -u | comm -23 "$work/sent.sorted" - | wc -l)
expect_eq "every payment sent was detected ($(wc -l < "$work/sent.sorted") transactions)" "$lost" "0"
if [ "$lost" != 0 ]; then   # what the missed ones were
  psql_ -tA -c "select txid from invoices_internal.payments where merchant_id = '$MID'" | sort -u | comm -23 "$work/sent.sorted" - | head -3 |
  while read -r tx; do
    python3 - "$ETH_RPC" "$tx" <<'PY' | while read -r to block; do
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionByHash", "params": [sys.argv[2]]}).encode(), {"Content-Type": "application/json"})
t = json.load(urllib.request.urlopen(req))["result"]
print(t["to"], int(t["blockNumber"], 16))
PY
      echo "       missed $tx to $to in block $block: $(q "select 'address ' || a.id || ' assigned ' || x.assigned_at || ' invoice ' || i.status || ' created ' || i.created_at from invoices_internal.addresses a join invoices_internal.address_assignments x on x.address_id = a.id join invoices_internal.invoices i on i.id = x.invoice_id where lower(a.address) = lower('$to')")"
    done
  done
  echo "       blocks recorded: $(q "select string_agg(height::text, ',' order by height) from invoices_internal.chain_blocks where chain = '$CHAIN'" | cut -c1-300)"
fi
expect_eq "every audited status change has its event" \
  "$(q "select count(*) from invoices_internal.audit_log a where a.merchant_id = '$MID' and a.to_status <> 'draft'
          and (select count(*) from invoices_internal.events e where e.merchant_id = a.merchant_id and e.invoice_id = a.invoice_id and e.event = a.event)
            < (select count(*) from invoices_internal.audit_log b where b.merchant_id = a.merchant_id and b.invoice_id = a.invoice_id and b.event = a.event)")" "0"
expect_eq "invoices with a payment and no payment.received event" \
  "$(q "select count(distinct p.invoice_id) from invoices_internal.payments p where p.merchant_id = '$MID'
          and not exists (select 1 from invoices_internal.events e where e.merchant_id = p.merchant_id and e.invoice_id = p.invoice_id and e.event = 'payment.received')")" "0"
for _ in $(seq 50); do curl -fs "$PGRST_URL/" >/dev/null 2>&1 && break; sleep 0.2; done
finish
