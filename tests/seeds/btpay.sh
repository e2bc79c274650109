#!/usr/bin/env bash
# BTPay's other calls through the web front (payment links, rates, webhook endpoints), and the
# webhook formats: a BTPay endpoint delivers BTPay's body with X-BTPay-Event and
# X-BTPay-Signature, checked by a receiver with BTPay's own Python snippet; a Living Invoices
# endpoint delivers Living Invoices' body, checked with its own Node snippet. Bad input is a 400
# naming the field, and writes nothing.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
HOST="$PUBLIC_URL"
BTPAY_PORT=$((PGPORT + 2100)); LIVING_PORT=$((PGPORT + 2101))

btc_xpub=$(fresh_xpub zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs)
read -r MID KEY READ_KEY < <(psql_ -tA -F ' ' -v btc="$btc_xpub" <<'SQL'
select (invoices.create_merchant('Seeds BTPay ' || clock_timestamp(), 'btpay@example.com') ->> 'id') as mid \gset
select invoices.act_as(:'mid') is not null as acting \gset
select invoices.set_rate('BTC', 'GBP', 53545.32) is not null as r1 \gset
select invoices.create_wallet('BTC', xpub => :'btc') is not null as w1 \gset
select :'mid',
       invoices_internal.insert_api_key(:'mid', 'seeds', '{read,write,webhooks}', 10000) ->> 'api_key',
       invoices_internal.insert_api_key(:'mid', 'seeds read', '{read}', 10000) ->> 'api_key';
SQL
)
call() {
  local method=$1 path=$2; shift 2
  status=$(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' -X "$method" "$HOST$path" "$@")
}
j() { jq -r "$1" "$work/body"; }
auth=(-H "Authorization: Bearer $KEY")
json=(-H "Content-Type: application/json")

section "webhooks: POST, GET and DELETE /api/v1/webhooks"
call POST /api/v1/webhooks "${auth[@]}" "${json[@]}" \
  -d "{\"url\": \"http://127.0.0.1:$BTPAY_PORT/webhook\", \"events\": [\"invoice.created\", \"invoice.cancelled\"], \"description\": \"Production webhook\"}"
expect_eq "POST /api/v1/webhooks: 201 {id, url, secret (whsec_), events, is_active}" \
  "$status $(j '[(.id | length > 0), .url, (.secret | startswith("whsec_")), (.events | join(",")), .is_active] | join(" ")')" \
  "201 true http://127.0.0.1:$BTPAY_PORT/webhook true invoice.created,invoice.cancelled true"
HOOK=$(j .id); SECRET=$(j .secret)
call GET /api/v1/webhooks "${auth[@]}"
expect_eq "GET /api/v1/webhooks: listed, the secret not shown again" \
  "$status $(j "[.webhooks[] | select(.id == \"$HOOK\") | (.secret == null), .description] | join(\" \")")" "200 true Production webhook"
call POST /api/v1/webhooks "${auth[@]}" "${json[@]}" -d '{"events": "all"}'
expect_eq "no url, events not an array: 400 naming both" "$status $(j '.errors | map(.field) | join(",")')" "400 url,events"
call POST /api/v1/webhooks -H "X-API-Key: $READ_KEY" "${json[@]}" -d '{"url": "https://example.com/h"}'
expect_eq "a key without the webhooks scope: 403" "$status" "403"

section "a BTPay endpoint delivers BTPay's format, checked with BTPay's snippet"
python3 "$here/receiver_btpay.py" "$BTPAY_PORT" "$SECRET" "$work/btpay.log" & pids+=($!)
LIVING=$(q "select invoices.act_as('$MID') is not null;
            select (invoices.create_webhook_endpoint('http://127.0.0.1:$LIVING_PORT/webhook', '{invoice.created}', null, 'living_invoices'))::text" | tail -1)
node "$here/receiver_living.mjs" "$LIVING_PORT" "$(jq -r .secret <<< "$LIVING")" "$work/living.log" & pids+=($!)
sleep 0.5
call POST /api/v1/invoices "${auth[@]}" "${json[@]}" -d '{"currency": "GBP", "customer_email": "bob@example.com",
  "lines": [{"description": "Widget", "quantity": 2, "unit_price": "49.99"}]}'
NUMBER=$(j .invoice_number)
call DELETE "/api/v1/invoices/$NUMBER" "${auth[@]}"
wait_for 15 "select count(*) = 2 from invoices.webhook_deliveries where endpoint_id = '$HOOK' and status = 'delivered'" \
  && ok "  invoice.created and invoice.cancelled delivered" || bad "  invoice.created and invoice.cancelled delivered"
expect_eq "  X-BTPay-Event names the event; X-BTPay-Signature verifies (hmac.compare_digest)" \
  "$(jq -rs 'map(.event + "=" + (.valid | tostring)) | sort | join(" ")' "$work/btpay.log" 2>/dev/null)" \
  "invoice.cancelled=true invoice.created=true"
expect_eq "  the body is {event, data: {invoice_number, status, total, amount_paid, currency, btc_amount}, timestamp}" \
  "$(jq -rs 'map(select(.event == "invoice.cancelled"))[0].body | [(keys | join(",")), (.data | keys | join(",")), .data.invoice_number, .data.status, .data.total, (.timestamp | test("^[0-9-]{10}T[0-9:]{8}Z$"))] | join(" ")' "$work/btpay.log" 2>/dev/null)" \
  "data,event,timestamp amount_paid,btc_amount,currency,invoice_number,status,total $NUMBER cancelled 99.98 true"

section "a Living Invoices endpoint delivers Living Invoices' format, checked with its snippet"
wait_for 15 "select count(*) >= 1 from invoices.webhook_deliveries where endpoint_id = '$(jq -r .id <<< "$LIVING")' and status = 'delivered'" \
  && ok "  invoice.created delivered" || bad "  invoice.created delivered"
expect_eq "  X-Webhook-Signature verifies (crypto.createHmac)" "$(jq -rs '.[0].valid' "$work/living.log" 2>/dev/null)" "true"
expect_eq "  {event, timestamp, invoice: {id (the number), status, amount: {total, currency}, payment: {kas_amount, tx_id}}}" \
  "$(jq -rs '.[0].body | [.event, .invoice.id, .invoice.status, .invoice.amount.total, .invoice.amount.currency, (.invoice.payment | keys | join(","))] | join(" ")' "$work/living.log" 2>/dev/null)" \
  "invoice.created $NUMBER draft 99.98 GBP kas_amount,tx_id"

call DELETE "/api/v1/webhooks/$HOOK" "${auth[@]}"
expect_eq "DELETE /api/v1/webhooks/<id>: {\"ok\":true}" "$status $(jq -c . "$work/body")" '200 {"ok":true}'
call DELETE "/api/v1/webhooks/1" "${auth[@]}"
expect_eq "  a BTPay-style number is not an id here: 400 naming id" "$status $(j '.errors[0].field')" "400 id"

section "payment links: POST, GET and DELETE /api/v1/payment-links"
links=$(q "select count(*) from invoices.payment_links where merchant_id = '$MID'")
call POST /api/v1/payment-links "${auth[@]}" "${json[@]}" -d '{"description": "Support our project", "amount": "lots"}'
expect_eq "no title, a bad amount: 400 naming both, nothing written" \
  "$status $(j '.errors | map(.field) | join(",")') $(q "select count(*) from invoices.payment_links where merchant_id = '$MID'")" \
  "400 title,amount $links"
slug="donate-$(date +%s%N | tail -c 7)"
call POST /api/v1/payment-links "${auth[@]}" "${json[@]}" \
  -d "{\"title\": \"Donate\", \"slug\": \"$slug\", \"description\": \"Support our project\", \"amount\": null, \"currency\": \"GBP\"}"
expect_eq "201: the payment link object" \
  "$status $(j '[.slug, .title, .description, (.amount | tostring), .currency, .is_active, (.created_at | type)] | join(" ")')" \
  "201 $slug Donate Support our project null GBP true number"
call GET /api/v1/payment-links "${auth[@]}"
expect_eq "GET /api/v1/payment-links lists it" "$status $(j "[.payment_links[] | select(.slug == \"$slug\")] | length")" "200 1"
call DELETE "/api/v1/payment-links/no-such-link" "${auth[@]}"
expect_eq "DELETE of a slug that is not a link: 404" "$status $(j '.error | length > 0')" "404 true"
call DELETE "/api/v1/payment-links/$slug" "${auth[@]}"
expect_eq "DELETE /api/v1/payment-links/<slug>: {\"ok\":true}, deactivated" \
  "$status $(jq -c . "$work/body") $(q "select active from invoices.payment_links where slug = '$slug'")" '200 {"ok":true} f'

section "a wire: the merchant's bank-transfer instructions on the invoice, its PDF and its page"
bash "$ROOT/tests/documents/install_tools.sh" >/dev/null   # pdftotext
before=$(q "select count(*) from invoices.invoices where merchant_id = '$MID'")
wire='{"currency": "GBP", "payment_methods": ["onchain_btc", "wire"], "lines": [{"description": "Audit", "quantity": 1, "unit_price": "300.00"}]}'
call POST /api/v1/invoices "${auth[@]}" "${json[@]}" -d "$wire"
expect_eq "no instructions set yet: 400 naming payment_methods, nothing written" \
  "$status $(j '.errors[0].field') $(q "select count(*) from invoices.invoices where merchant_id = '$MID'")" "400 payment_methods $before"
q "select invoices.act_as('$MID') is not null; select invoices.set_bank_instructions(E'IBAN GB33 BUKB 2020 1555 5555 55\nReference: your invoice number') is not null" > /dev/null
call POST /api/v1/invoices "${auth[@]}" "${json[@]}" -d "$wire"
expect_eq "once set: 201" "$status" "201"
WIRE=$(j .invoice_number); WIRE_SLUG=$(j .slug)
call POST "/api/v1/invoices/$WIRE/finalize" "${auth[@]}"
curl -s -H "X-API-Key: $KEY" -H 'Accept: application/pdf' "$PGRST_URL/rpc/invoice_pdf?ref=$WIRE" -o "$work/wire.pdf"
expect_eq "  the PDF prints them" "$(pdftotext "$work/wire.pdf" - 2>/dev/null | grep -c 'Pay by bank transfer\|IBAN GB33 BUKB 2020 1555 5555 55')" "2"
expect_eq "  the hosted page shows them" \
  "$(curl -s "$PUBLIC_URL/i/$WIRE_SLUG" | grep -c 'IBAN GB33 BUKB 2020 1555 5555 55<br>Reference: your invoice number')" "1"

section "rates: GET /api/v1/rates"
call GET /api/v1/rates "${auth[@]}"
expect_eq "the median of the fresh BTC sources per currency" "$status $(j '.rates[] | select(.currency == "GBP") | .rate')" "200 53545.32"
finish
