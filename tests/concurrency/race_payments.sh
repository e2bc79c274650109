#!/usr/bin/env bash
# 64 clients for RACE_SECONDS (default 60) racing create / finalize / cancel / expire through
# pgbench, while a payer pays random open invoices on a real Anvil node (full or partial
# amounts) and the worker detects the payments and sweeps expiries. Afterwards: zero illegal
# transitions in the audit log, no address held by two live invoices, totals and paid amounts
# consistent, no deadlock anywhere (pgbench, the worker, the server log), and every payment
# the payer sent accounted for: credited to an open invoice, or in invoices.unmatched_payments
# with its reason (none unexplained).
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
source "$here/../chains/lib.sh"
SECONDS_RUN="${RACE_SECONDS:-60}"
CLIENTS="${RACE_CLIENTS:-64}"
PORT="${RACE_ANVIL_PORT:-18547}"
CHAIN="race-$(date +%s)"
work=$(mktemp -d)
export ETH_RPC="http://127.0.0.1:$PORT"
"$ANVIL_BIN" --port "$PORT" --chain-id 8453 --silent >/dev/null 2>&1 & anvil=$!
trap 'kill $anvil ${payer:-} 2>/dev/null || true; psql_ -qc "update invoices_internal.chains set active = false where id = '"'"'$CHAIN'"'"'" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do python3 "$here/../chains/evm_rpc.py" height >/dev/null 2>&1 && break; sleep 0.05; done
log_start=$(wc -c < "$PG_LOG")
MID=$(evm_merchant "Race")
inv="invoices.create_invoice(currency => 'ETH', asset => 'ETH', lines => '[{\"description\": \"r\", \"unit_price\": \"0.01\"}]'"
cat > "$work/cancel.sql" <<SQL
select set_config('invoices.merchant_id', '$MID', false);
select invoices.cancel_invoice($inv, send => true) ->> 'id');
SQL
cat > "$work/pending.sql" <<SQL
select set_config('invoices.merchant_id', '$MID', false);
select invoices.finalize_invoice($inv) ->> 'id');
SQL
cat > "$work/expire.sql" <<SQL
select set_config('invoices.merchant_id', '$MID', false);
select $inv, send => true) is not null;
update invoices_internal.invoices set expires_at = now()
 where id = (select id from invoices_internal.invoices where merchant_id = '$MID' and status = 'pending' order by random() limit 1);
select invoices_internal.expire_and_mark_overdue();
SQL
# the payer: random open invoices, full or partial amounts, one transaction each (it drives the
# race and checks nothing: it picks from the table itself)
python3 - "$MID" "$ETH_RPC" <<'PY' > "$work/payer.out" 2>&1 &
import json, os, random, subprocess, sys, time, urllib.request
mid, url = sys.argv[1], sys.argv[2]
def rpc(method, params):
    req = urllib.request.Request(url, json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode(),
                                 {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=30))["result"]
paid = 0
while True:
    rows = subprocess.run([os.environ["PG_BIN"] + "/psql", "-XtA", "-F", " ", "-c",
        f"select deposit_address from invoices_internal.invoices where merchant_id = '{mid}' and status in ('pending', 'partial', 'overdue') and deposit_address is not null order by random() limit 5"],
        capture_output=True, text=True).stdout.split()
    for addr in rows:
        wei = random.choice([10**16, 5 * 10**15, 2 * 10**16])   # full, half, double
        tx = rpc("eth_sendTransaction", [{"from": "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", "to": addr, "value": hex(wei)}])
        paid += 1
        print(tx.lower(), addr, wei, flush=True)
    time.sleep(0.05)
PY
payer=$!
if ! "$PG_BIN/pgbench" -n --failures-detailed -c "$CLIENTS" -j 2 -T "$SECONDS_RUN" \
       -f "$work/cancel.sql@4" -f "$work/pending.sql@3" -f "$work/expire.sql@3" "$PGDATABASE" > "$work/pgbench.out" 2>&1; then
  grep -m3 -E "ERROR|error" "$work/pgbench.out" || true
  bad "pgbench ran without errors"
fi
kill $payer 2>/dev/null || true
grep -E "transactions actually processed|number of failed" "$work/pgbench.out" | head -2 | sed 's/^/       /'
expect_eq "no failed transactions (deadlocks, serialization)" "$(grep -cE "number of failed transactions: [1-9]" "$work/pgbench.out" || true)" "0"
sent=$(grep -c '^0x' "$work/payer.out" || true)
echo "       payments sent: $sent"
# let the worker catch up with the last blocks
wait_for 20 "select cursor_height = tip_height and last_poll_at > now() - interval '1 second' from invoices.chains where id = '$CHAIN'" >/dev/null || true
sleep 1
checks=$(psql_ -tA <<SQL
select 'illegal transitions in the audit log: ' || count(*) from invoices.audit_log a
 where a.merchant_id = '$MID' and a.from_status is not null
   and invoices_internal.transition_problem(a.from_status, a.to_status) is not null;
-- (an invoice's hold on its address, address_id, is in no view: invoices.invoices.address stays after the release)
select 'live invoices sharing an address: ' || count(*) from (
  select address_id from invoices_internal.invoices where status in ('pending', 'partial', 'paid', 'overdue') and address_id is not null
   group by address_id having count(*) > 1) s;
select 'invoices whose totals are inconsistent: ' || count(*) from invoices.invoices i
 where i.merchant_id = '$MID' and (i.total <> i.subtotal - i.discount_amount + i.tax_amount
       or i.subtotal <> (select sum(amount) from invoices.invoice_lines l where l.merchant_id = i.merchant_id and l.invoice_id = i.id));
select 'invoices whose asset_paid is not the sum of their payments: ' || count(*) from invoices.invoices i
 where i.merchant_id = '$MID' and i.status not in ('cancelled', 'draft')
   and i.asset_paid <> coalesce((select sum(p.amount) from invoices.payments p
                                  where p.merchant_id = i.merchant_id and p.invoice_id = i.id and p.status <> 'reverted' and p.asset = i.asset), 0);
select 'paid or confirmed invoices without enough money: ' || count(*) from invoices.invoices i
 where i.merchant_id = '$MID' and i.status in ('paid', 'confirmed') and i.asset_paid < 0.01;
SQL
)
while read -r line; do expect_eq "${line%:*}" "${line##*: }" "0"; done <<< "$checks"
# every payment sent: credited to an open invoice, unmatched with a reason, or unexplained
grep '^0x' "$work/payer.out" | awk '{print $1}' > "$work/sent.txt"
psql_ -q -c "create temp table sent (txid text)" -c "\copy sent from '$work/sent.txt'" -tA -F ' ' -c "
  select case when p.id is null then 'unexplained'
              when u.id is not null then 'unmatched: ' || u.reason
              else 'credited to an open invoice' end as outcome, count(*)
    from sent s
    left join invoices.payments p on p.merchant_id = '$MID' and p.txid = s.txid and p.output_index = -1
    left join invoices.unmatched_payments u on u.merchant_id = p.merchant_id and u.id = p.id
   group by 1 order by 1" > "$work/outcomes"
sed 's/^/       /' "$work/outcomes"
expect_eq "every payment sent is credited or listed as unmatched with its reason (of $sent)" \
  "$(awk '{n += $NF} END {print n + 0}' "$work/outcomes") $(grep -c '^unexplained' "$work/outcomes" || true)" "$sent 0"
expect_eq "no deadlock in the server log" "$(tail -c +"$log_start" "$PG_LOG" | grep -c 'deadlock detected' || true)" "0"
expect_eq "the chain task recorded no error" "$(q "select coalesce(last_error, 'none') from invoices.chains where id = '$CHAIN'")" "none"
echo "       $(q "select string_agg(status || ' ' || n, ', ' order by status) from (select status, count(*) n from invoices.invoices where merchant_id = '$MID' group by status) s"); $(q "select count(*) from invoices.payments where merchant_id = '$MID'") payments detected"
finish
