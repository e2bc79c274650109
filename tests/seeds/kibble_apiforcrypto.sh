#!/usr/bin/env bash
# Kibble (/api/invoices) and apiforcrypto (/api/v1/wallets) through the web front: Kibble's
# printed example request (with an API key, and its webhook URL pointed at a local receiver),
# its 201 answer field by field, sending, the PDF; apiforcrypto's create in crypto and in fiat
# with a markup, the public read by UUID that hides the wallet, secret key and callback URL, the
# documented 404 and 403; bad input a 400 naming the field, with nothing written.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
source "$here/../chains/lib.sh"   # EVM_XPUB
work=$(mktemp -d)
CHAIN_BASE="seeds-base-$(date +%s%N | tail -c 7)"; CHAIN_BTC="seeds-btc-$(date +%s%N | tail -c 7)"
trap 'psql_ -qc "update invoices_internal.chains set active = false where id in ('"'"'$CHAIN_BASE'"'"', '"'"'$CHAIN_BTC'"'"')" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
HOST="$PUBLIC_URL"
evm_xpub=$(fresh_xpub "$EVM_XPUB")
btc_xpub=$(fresh_xpub zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs)
# the chains are configured against a closed local port: nothing is polled from the network
read -r MID KEY USDC_WALLET BTC_WALLET < <(psql_ -tA -F ' ' -v evm="$evm_xpub" -v btc="$btc_xpub" \
    -v base="$CHAIN_BASE" -v btcchain="$CHAIN_BTC" <<'SQL'
select (invoices.create_merchant('Seeds Kibble ' || clock_timestamp(), 'kibble@example.com') ->> 'id') as mid \gset
select invoices.act_as(:'mid') is not null as acting \gset
select invoices.set_rate('BTC', 'EUR', 61919.68) is not null as r \gset
select invoices.create_wallet('USDC', xpub => :'evm', gap_limit => 1000) ->> 'id' as usdc \gset
select invoices.create_wallet('BTC', xpub => :'btc') ->> 'id' as btcw \gset
select invoices.configure_chain(:'base', 'evm', 'http://127.0.0.1:9', '{USDC}', chain_id => 8453,
         tokens => '{"USDC": {"contract": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "decimals": 6}}') is not null as c1 \gset
select invoices.configure_chain(:'btcchain', 'bitcoin', 'http://127.0.0.1:9', '{BTC}') is not null as c2 \gset
select :'mid', invoices_internal.insert_api_key(:'mid', 'seeds', '{read,write}', 10000) ->> 'api_key', :'usdc', :'btcw';
SQL
)
CALLBACK_PORT=$((PGPORT + 2102))
python3 - "$CALLBACK_PORT" "$work/callbacks.log" <<'PY' & callback_pid=$!
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, log = int(sys.argv[1]), sys.argv[2]
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(log, "ab") as f:
            f.write(body + b"\n")
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
trap 'kill $callback_pid 2>/dev/null; psql_ -qc "update invoices_internal.chains set active = false where id in ('"'"'$CHAIN_BASE'"'"', '"'"'$CHAIN_BTC'"'"')" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
count() { q "select count(*) from invoices.invoices where merchant_id = '$MID'"; }
call() {
  local method=$1 path=$2; shift 2
  status=$(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' -X "$method" "$HOST$path" "$@")
}
j() { jq -r "$1" "$work/body"; }
# Kibble's example body, as printed (its webhook URL pointed at a local receiver, never the internet)
example() {
  sed "s|https://your-app.com/webhooks/kibble|http://127.0.0.1:$CALLBACK_PORT/webhooks/kibble|; s|\"due_date\": \"2026-05-28\"|\"due_date\": \"$1\"|" <<'JSON'
{
    "merchant_email": "you@acme.com",
    "merchant_name": "Acme SaaS",
    "merchant_address": "123 Main St, San Francisco, CA 94105",
    "vendor_email": "vendor@example.com",
    "vendor_name": "Vendor Co",
    "vendor_address": "456 Market Ave, New York, NY 10001",
    "line_items": [
      {
        "description": "Consulting — April",
        "quantity": 10,
        "unit_price": "150.00"
      }
    ],
    "due_date": "2026-05-28",
    "notes": "Net 30",
    "wallet_type": "privy",
    "webhook_url": "https://your-app.com/webhooks/kibble",
    "send_now": true
  }
JSON
}

section "Kibble: POST /api/invoices, the printed example"
before=$(count)
call POST /api/invoices --header "X-API-Key: $KEY" --header 'Content-Type: application/json' --data "$(example 2026-05-28)"
expect_eq "as printed today: 400, its due date (2026-05-28) is before today's issue date; nothing written" \
  "$status $(j '.errors | map(.field) | join(",")') $(count)" "400 due_date $before"
due=$(date -u -d '+30 days' +%F)
call POST /api/invoices --header "X-API-Key: $KEY" --header 'Content-Type: application/json' --data "$(example "$due")"
expect_eq "with the due date a month ahead: 201" "$status" "201"
expect_eq "  every documented field" \
  "$(j '[.invoice_id, .invoice_number, .slug, .invoice_url, .pdf_url, .deposit_address, .total_amount, .webhook_secret] | map(. != null and . != "") | all')" "true"
expect_eq "  total_amount 1500.00 USDC; the deposit address is EIP-55 (0x + 40 hex)" \
  "$(j '.total_amount + " " + (.deposit_address | test("^0x[0-9a-fA-F]{40}$") | tostring)')" "1500.00 true"
expect_eq "  invoice_url is the hosted page, pdf_url Kibble's path" \
  "$(j '[(.invoice_url == "'"$PUBLIC_URL"'/i/" + .slug), (.pdf_url == "'"$PUBLIC_URL"'/api/invoices/" + .invoice_id + "/pdf")] | all')" "true"
expect_eq "  webhook_secret (whsec_…) is given once; sent_at null until the relay accepts the e-mail" \
  "$(j '(.webhook_secret | startswith("whsec_") | tostring) + " " + (.sent_at | tostring)')" "true null"
ID=$(j .invoice_id)
expect_eq "  the merchant's name, e-mail and address as given are on the invoice; its e-mail is queued" \
  "$(q "select merchant->>'name' || ' / ' || (merchant->>'address') || ' ' || status from invoices.invoices where id = '$ID'") $(q "select count(*) from invoices.emails where invoice_id = '$ID'")" \
  "Acme SaaS / 123 Main St, San Francisco, CA 94105 pending 1"

section "Kibble: webhooks at partial, paid and excess"
deposit=$(q "select address from invoices.invoices where id = '$ID'")
pay() {  # txid amount: a USDC transfer to the deposit address, recorded as the worker records a poll
  q "select invoices_internal.record_chain_poll('$CHAIN_BASE', jsonb_build_object(
       'tip', jsonb_build_object('height', 10, 'hash', 'h10'), 'blocks', '[]'::jsonb, 'transfers', '[]'::jsonb,
       'mempool', jsonb_build_array(jsonb_build_object('txid', '$1', 'index', 0, 'address', '$deposit',
         'asset', 'USDC', 'amount_base', ($2 * 1000000)::bigint::text, 'amount', '$2', 'block', null))))" > /dev/null
}
pay 0xkibble1 700
pay 0xkibble2 900
wait_for 15 "select count(*) = 2 from invoices.webhook_deliveries d join invoices.events e on e.id = d.event_id
             where e.invoice_id = '$ID' and d.status = 'delivered'" \
  && ok "  two callbacks, nothing for created, finalized or received" || bad "  two callbacks, nothing for created, finalized or received" \
       "$(q "select string_agg(e.event || ':' || d.status, ' ') from invoices.webhook_deliveries d join invoices.events e on e.id = d.event_id where e.invoice_id = '$ID'")"
expect_eq "  partial at 700 of 1500, then excess at 1600" \
  "$(jq -rs 'map(select(.invoice_id == "'"$ID"'")) | map(.event + ":" + .amount_paid) | sort | join(" ")' "$work/callbacks.log" 2>/dev/null)" \
  "excess:1600.00 partial:700.00"

section "Kibble: send, the PDF"
call POST "/api/invoices/$ID/send" --header "X-API-Key: $KEY"
expect_eq "POST /api/invoices/{id}/send queues it again" "$status $(j .status) $(q "select count(*) from invoices.emails where invoice_id = '$ID'")" "200 queued 2"
curl -s -o "$work/inv.pdf" -D "$work/pdfh" -w '%{http_code}' "$HOST/api/invoices/$ID/pdf" > "$work/pdfstatus"
expect_eq "GET /api/invoices/{id}/pdf: a PDF (no key needed for a finalized invoice, as its pdf_url)" \
  "$(cat "$work/pdfstatus") $(head -c 5 "$work/inv.pdf") $(grep -ci '^content-type: application/pdf' "$work/pdfh")" "200 %PDF- 1"
call GET "/api/invoices/00000000-0000-0000-0000-000000000000/pdf"
expect_eq "  an unknown id: 404 {\"error\"} in JSON" "$status $(j '.error | length > 0') $(grep -ci '^content-type: application/json' "$work/headers")" "404 true 1"

section "Kibble: bad input"
call POST "/api/invoices/00000000-0000-0000-0000-000000000000/send" --header "X-API-Key: $KEY"
expect_eq "send of an unknown invoice: 404" "$status $(j '.error | length > 0')" "404 true"
before=$(count)
call POST /api/invoices --header "X-API-Key: $KEY" --header 'Content-Type: application/json' \
  --data '{"merchant_name": "Acme", "line_items": [], "wallet_type": "byo", "wallet_address": "0xab5801a7d398351b8be11c439e05c5b3259aec9b"}'
expect_eq "every bad field named at once (field-level 400), nothing written" \
  "$status $(j '.errors | map(.field) | sort | join(",")') $(count)" \
  "400 due_date,line_items,merchant_address,merchant_email,vendor_email,vendor_name,wallet_address $before"
call POST /api/invoices --header "X-API-Key: $KEY" --header 'Content-Type: application/json' \
  --data "$(example "$due" | jq '.wallet_type = "byo" | .wallet_address = "0xAb5801a7D398351b8bE11C439e05C5B3259aeC9B"')"
expect_eq "byo with an address that is not the merchant's USDC wallet: 400 naming wallet_address" \
  "$status $(j '.errors[0].field') $(count)" "400 wallet_address $before"

section "apiforcrypto: POST /api/v1/wallets/{wallet id}/invoices"

call POST "/api/v1/wallets/$USDC_WALLET/invoices" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -d "{
  \"blockchain\": \"$CHAIN_BASE\", \"symbol\": \"USDC\", \"value\": \"25.50\", \"expiry\": 30, \"confirmations\": 2,
  \"pause\": 60, \"secret_key\": \"my-secret\", \"order_id\": \"order-7\", \"title\": \"Order 7\",
  \"description\": \"Two widgets\", \"url_callback\": \"http://127.0.0.1:$CALLBACK_PORT/callback\", \"attempts_callback\": 3,
  \"url_success\": \"https://shop.example/ok\", \"url_failed\": \"https://shop.example/failed\", \"user_data\": \"u-1\",
  \"data\": {\"cart\": [1, 2]}}"
expect_eq "in crypto (USDC on Base): 200, NOT_PAID, value 25.50, the token's contract" \
  "$status $(j '[.status, .value, .symbol, .blockchain, .contract_address, .confirmations, .active] | join(" ")')" \
  "200 NOT_PAID 25.500000 USDC $CHAIN_BASE 0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913 2 true"
expect_eq "  address, url_pay, expiry, txs, data; never the secret key" \
  "$(j '[(.address | test("^0x")), (.url_pay | test("/i/")), (.expiry != null), (.txs | length), (.data.cart | length), (has("secret_key"))] | map(tostring) | join(" ")')" \
  "true true true 0 2 false"
UUID=$(j .id)
call POST "/api/v1/wallets/$BTC_WALLET/invoices" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -d "{
  \"blockchain\": \"$CHAIN_BTC\", \"symbol\": \"BTC\", \"fiatCurrency\": {\"currency\": \"EUR\", \"value\": 100, \"percent\": 2},
  \"expiry\": 15, \"confirmations\": 1}"
expect_eq "in fiat with a 2 % markup: 102 EUR at 61,919.68 → 0.00164730 BTC" \
  "$status $(j '[.value, .fiat_currency.currency, .fiat_currency.value] | join(" ")')" "200 0.00164730 EUR 100.00"

wait_for 15 "select count(*) >= 2 from invoices.webhook_deliveries d join invoices.events e on e.id = d.event_id
             where e.invoice_id = '$UUID' and d.status = 'delivered'" \
  && ok "  its callbacks reach url_callback" || bad "  its callbacks reach url_callback"
expect_eq "  the callback carries the invoice in apiforcrypto's shape and its secret_key" \
  "$(jq -rs 'map(select(.event == "invoice.finalized"))[0] | [.id == "'"$UUID"'", .status, .symbol, .secret_key, .wallet_id == "'"$USDC_WALLET"'", has("url_callback")] | map(tostring) | join(" ")' "$work/callbacks.log" 2>/dev/null)" \
  "true NOT_PAID USDC my-secret true false"

section "apiforcrypto: GET /api/v1/wallets/invoices/{UUID}, public"
call GET "/api/v1/wallets/invoices/$UUID"
expect_eq "no key needed; no wallet id, secret key or callback URL" \
  "$status $(j '[.id == "'"$UUID"'", has("wallet_id"), has("secret_key"), has("url_callback")] | map(tostring) | join(" ")')" \
  "200 true false false false"
call GET "/api/v1/wallets/invoices/f4ae3bd1-a031-4b4c-84cb-96a425aab4c8"
expect_eq "an unknown UUID: 404" "$status" "404"

section "apiforcrypto: the documented errors"
before=$(count)
call POST "/api/v1/wallets/00000000-0000-0000-0000-000000000000/invoices" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
  -d "{\"blockchain\": \"$CHAIN_BASE\", \"symbol\": \"USDC\", \"value\": 1, \"expiry\": 30, \"confirmations\": 1}"
expect_eq "a wallet that does not exist: 404 Wallet not found" "$status $(j .error)" "404 wallet not found"
call POST "/api/v1/wallets/$USDC_WALLET/invoices" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
  -d "{\"blockchain\": \"$CHAIN_BTC\", \"symbol\": \"USDC\", \"value\": 1, \"expiry\": 30, \"confirmations\": 1}"
expect_eq "a currency not active on that chain: 403" "$status $(j '.error | test("not active")')" "403 true"
call POST "/api/v1/wallets/$USDC_WALLET/invoices" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
  -d "{\"blockchain\": \"$CHAIN_BASE\", \"symbol\": \"USDC\", \"value\": 1, \"expiry\": 41, \"confirmations\": 1, \"attempts_callback\": 21}"
expect_eq "expiry 41 and attempts_callback 21: 400 naming both; nothing written" \
  "$status $(j '.errors | map(.field) | sort | join(",")') $(count)" "400 attempts_callback,expiry $before"
finish
