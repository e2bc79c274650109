#!/usr/bin/env bash
# The full path on the local demo chain (Anvil, chain id 8453 like Base, one block a second):
# merchant, watch-only wallet, fiat invoice, locked quote, payment, confirmations, webhook
# received and verified — printed step by step. Started by README command 1 (scripts/run.sh).
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/env.sh"
export ETH_RPC="http://127.0.0.1:$ANVIL_PORT"
RECEIVER_PORT="${DEMO_RECEIVER_PORT:-18990}"
work=$(mktemp -d)
python3 "$ROOT/tests/stubs/webhook_receiver.py" "$RECEIVER_PORT" "$work/received.jsonl" &
receiver=$!
trap 'kill $receiver 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$RECEIVER_PORT/control/fix" >/dev/null 2>&1 && break; sleep 0.1; done
step() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }

step "1. the demo chain: Anvil on $ETH_RPC, watched by the worker (a row of invoices.chains)"
psql_ -tA -c "select invoices.configure_chain('anvil', 'evm', '$ETH_RPC', '{ETH}', confirmations => 2, chain_id => 8453, poll_interval_ms => 250) ->> 'id'" >/dev/null
psql_ -c "select id, family, chain_id, assets, confirmations, tip_height from invoices.chains where id = 'anvil'"

step "2. a merchant with a watch-only ETH wallet (an xpub: no private key anywhere) and a webhook endpoint"
read -r mid secret < <(psql_ -tA -F ' ' <<SQL | tail -1
select coalesce(
         (select id from invoices_internal.merchants where name = 'Demo Chain Shop' limit 1),
         (invoices.create_merchant('Demo Chain Shop', 'shop@example.com') ->> 'id')::uuid) as mid \gset
select invoices.act_as(:'mid') is not null as acting \gset
select count(*) = 0 as no_wallet from invoices_internal.wallets where merchant_id = :'mid' and asset = 'ETH' \gset
\if :no_wallet
select invoices.create_wallet('ETH', xpub => 'xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt') is not null as wallet \gset
\endif
update invoices_internal.webhook_endpoints set active = false where merchant_id = :'mid';
select :'mid', invoices.create_webhook_endpoint('http://127.0.0.1:$RECEIVER_PORT/ok/shop', '{*}', 'demo receiver') ->> 'secret';
SQL
)
curl -fs "http://127.0.0.1:$RECEIVER_PORT/control/secret?name=shop&secret=$secret" >/dev/null
echo "merchant $mid, endpoint secret ${secret:0:12}… (shown once)"

step "3. a fiat invoice: 45.00 USD paid in ETH at a manual rate of 3,000 USD/ETH (+1% markup), quote locked"
read -r inv addr amount < <(psql_ -tA -F ' ' <<SQL | tail -1
select invoices.act_as('$mid') is not null as acting \gset
select invoices.set_rate('ETH', 'USD', 3000, 'demo') is not null as rate \gset
select j->>'id', j->>'address', j->>'asset_amount'
  from invoices.create_invoice(lines => '[{"description": "Espresso machine descaling", "unit_price": "45.00"}]',
                               asset => 'ETH', markup_percent => 1, confirmations => 2,
                               customer_email => 'carol@example.com', send => true) j;
SQL
)
psql_ -c "select i.invoice_number, i.status, i.total || ' ' || i.currency as total, q.asset_amount || ' ETH' as quote, q.rate, q.markup_percent, i.deposit_address, i.expires_at from invoices_internal.invoices i join invoices_internal.quotes q on q.invoice_id = i.id where i.id = '$inv'"

step "4. the customer pays $amount ETH to $addr"
tx=$(python3 "$ROOT/tests/chains/evm_rpc.py" send-eth "$addr" "$amount")
echo "transaction $tx"

step "5. the worker sees it: in a block, then 2 confirmations (blocks every second)"
last=""
for _ in $(seq 120); do
  now=$(psql_ -tA -c "select i.status || ' | payment: ' || coalesce((select p.status || ', ' || p.confirmations || ' confirmation(s)' from invoices.payments p where p.invoice_id = i.id limit 1), 'none yet') from invoices_internal.invoices i where i.id = '$inv'")
  [ "$now" != "$last" ] && { echo "  $(date +%T)  invoice: $now"; last=$now; }
  case "$now" in confirmed*) break ;; esac
  sleep 0.2
done

step "6. the webhooks the receiver got (X-Webhook-Signature and Webhook-Signature verified with Python's hmac)"
for _ in $(seq 50); do
  [ "$(grep -c payment.confirmed "$work/received.jsonl" 2>/dev/null || true)" -ge 1 ] && \
  [ "$(grep -c invoice.confirmed "$work/received.jsonl" 2>/dev/null || true)" -ge 1 ] && break
  sleep 0.1
done
python3 - "$work/received.jsonl" "$inv" <<'PY'
import json, sys
entries = [json.loads(line) for line in open(sys.argv[1])]
for e in sorted(entries, key=lambda e: json.loads(e["body"])["timestamp"]):  # in the order they happened
    body = json.loads(e["body"])
    if body["data"].get("id") != sys.argv[2]:
        continue
    extra = ""
    if "payment" in body["data"]:
        p = body["data"]["payment"]
        extra = f"  {p['amount']} {p['asset']} {p['status']} ({p['confirmations']} conf.)"
    print(f"  {body['event']:<20} signatures ok: {e['plain_ok'] and e['stamped_ok']}{extra}")
PY

step "7. the audit log of the invoice"
psql_ -c "select from_status, to_status, event, actor, at from invoices_internal.audit_log where invoice_id = '$inv' order by id"
