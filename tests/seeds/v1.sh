#!/usr/bin/env bash
# The seed APIs through the web front, Living Invoices and BTPay (/api/v1): every example request
# their documents print, exactly as printed, with only the host changed (and the documents'
# placeholder API key replaced by a real one); then the documented status codes and response
# fields, the errors in the seeds' shape with nothing written, auth, the rate limit, 404 and 405.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
HOST="$PUBLIC_URL"   # the documents' https://kaspa-invoices.com and http://localhost:5000

btc_xpub=$(fresh_xpub zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs)
kas_xpub=$(fresh_xpub ktub23beJLczbxoS4emYHxm5H2rPnXJPGTwjNLAc8JyjHnSFLPMJBj5h3U8oWbn1x1jayZRov6uhvGd4zUGrWH6PkYZMWsykUsQWYqjbLnHrzUE)
read -r MID KEY READ_KEY SLOW_KEY < <(psql_ -tA -F ' ' -v btc="$btc_xpub" -v kas="$kas_xpub" <<'SQL'
select (invoices.create_merchant('Seeds v1 ' || clock_timestamp(), 'seeds@example.com') ->> 'id') as mid \gset
select invoices.act_as(:'mid') is not null as acting \gset
select invoices.set_rate('BTC', 'USD', 70862.71) is not null as r1, invoices.set_rate('KAS', 'USD', 0.12) is not null as r2 \gset
select invoices.create_wallet('BTC', xpub => :'btc') is not null as w1, invoices.create_wallet('KAS', xpub => :'kas', network => 'testnet') is not null as w2 \gset
select :'mid',
       invoices_internal.insert_api_key(:'mid', 'seeds', '{read,write}', 10000) ->> 'api_key',
       invoices_internal.insert_api_key(:'mid', 'seeds read', '{read}', 10000) ->> 'api_key',
       invoices_internal.insert_api_key(:'mid', 'seeds limited', '{read}', 3) ->> 'api_key';
SQL
)
count() { q "select count(*) from invoices.invoices where merchant_id = '$MID'"; }
# call METHOD PATH [curl args]: $status, the body in $work/body, headers in $work/headers
call() {
  local method=$1 path=$2; shift 2
  status=$(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' -X "$method" "$HOST$path" "$@")
}
j() { jq -r "$1" "$work/body"; }
expect_status() { if [ "$status" = "$2" ]; then ok "$1"; else bad "$1" "HTTP $status, expected $2: $(head -c 400 "$work/body")"; fi; }

section "Living Invoices: Quick Start, as printed"
# curl -X POST https://kaspa-invoices.com/api/v1/invoices -H "X-API-Key: liv_your_api_key" ...
call POST /api/v1/invoices \
  -H "X-API-Key: $KEY" \
  -H "Content-Type: application/json" \
  -d '{
    "to_email": "customer@example.com",
    "items": [
      { "description": "Web Design", "unit_price": 500 }
    ]
  }'
expect_status "POST /api/v1/invoices creates the invoice: 201" 201
expect_eq "  to_email, one item of quantity 1, total 500" \
  "$(j '[.to_email, (.lines | length), .lines[0].quantity, .total] | join(" ")')" "customer@example.com 1 1 500.00"
expect_eq "  a draft (send defaults to false), due in 7 days" "$(j '.status + " " + .due_date')" \
  "draft $(date -u -d '+7 days' +%F)"
expect_eq "  the shareable URL is the hosted page, by slug" "$(j .url)" "$PUBLIC_URL/i/$(j .slug)"
expect_eq "  a draft's page is not public until it is sent" "$(curl -s -o /dev/null -w '%{http_code}' "$(j .url)")" "404"

section "Living Invoices: the Create Invoice example, with a Bearer token"
call POST /api/v1/invoices -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" -d '{
  "to_email": "alice@example.com",
  "to_name": "Alice Smith",
  "items": [
    {
      "description": "Logo Design",
      "unit_price": 300
    },
    {
      "description": "Business Cards (500)",
      "unit_price": 75,
      "quantity": 2
    }
  ],
  "notes": "Thank you for your business!",
  "send": true
}'
expect_status "201" 201
expect_eq "  sent: pending, 450 USD, paid in KAS at 0.12 (3750 KAS) to a Kaspa address" \
  "$(j '[.status, .total, .currency, .asset, .asset_amount, (.address | startswith("kaspatest:"))] | join(" ")')" \
  "pending 450.00 USD KAS 3750.00000000 true"
expect_eq "  to_name and notes" "$(j '.to_name + " / " + .notes')" "Alice Smith / Thank you for your business!"
expect_eq "  its shareable URL answers: the hosted page" "$(curl -s -o /dev/null -w '%{http_code}' "$(j .url)")" "200"

section "Living Invoices: List Invoices, as printed"
call GET "/api/v1/invoices?status=pending&limit=10" -H "X-API-Key: $KEY"
expect_status "GET /api/v1/invoices?status=pending&limit=10: 200" 200
expect_eq "  only pending ones, limit 10, page 1" "$(j '[(.invoices | map(.status) | unique | join(",")), .limit, .page] | join(" ")')" "pending 10 1"
call GET "/api/v1/invoices?limit=1&page=2" -H "X-API-Key: $KEY"
expect_eq "  page 2 of 1 per page is the older invoice" "$(j '[.page, .offset, (.invoices | length), .invoices[0].to_email] | join(" ")')" \
  "2 1 1 customer@example.com"

section "BTPay: Create, as printed (Authorization: Bearer)"
# curl -X POST http://localhost:5000/api/v1/invoices -H "Authorization: Bearer YOUR_API_KEY" ...
call POST /api/v1/invoices \
-H "Authorization: Bearer $KEY" \
-H "Content-Type: application/json" \
-d '{
"customer_email": "alice@example.com",
"customer_name": "Alice",
"customer_company": "Acme Inc",
"currency": "USD",
"tax_rate": 10,
"lines": [
{"description": "Consulting (1 hour)", "quantity": 1, "unit_price": "150.00"},
{"description": "Hardware wallet setup", "quantity": 2, "unit_price": "25.00"}
],
"notes": "Payment due within 30 days"
}'
expect_status "Response (201)" 201
expect_eq "  {ref, invoice_number, status: draft, total: 220.00, lines}" \
  "$(j '[(.ref | length > 0), (.invoice_number | test("^INV-[0-9]{4}$")), .status, .total, (.lines | length)] | join(" ")')" \
  "true true draft 220.00 2"
REF=$(j .ref); NUMBER=$(j .invoice_number)

section "BTPay: the invoice, its finalization, status and cancellation"
for ref in "$REF" "$NUMBER" "$(j .slug)"; do
  call GET "/api/v1/invoices/$ref" -H "Authorization: Bearer $KEY"
  expect_eq "GET /api/v1/invoices/<ref> by $( [ "$ref" = "$NUMBER" ] && echo number || echo reference)" "$status $(j .invoice_number)" "200 $NUMBER"
done
call GET "/api/v1/invoices/$NUMBER?include_payments=true" -H "Authorization: Bearer $KEY"
expect_eq "  include_payments=true adds payments (none yet)" "$(j '.payments | length')" "0"
expect_eq "  created_at in Unix seconds, amounts as strings" "$(j '[(.created_at | type), (.subtotal | type)] | join(" ")')" "number string"
call POST "/api/v1/invoices/$NUMBER/finalize" -H "Authorization: Bearer $KEY"
expect_status "POST /api/v1/invoices/<ref>/finalize: 200" 200
expect_eq "  pending, with btc_rate, btc_amount and the payment address" \
  "$(j '[.status, .btc_rate, .btc_amount, (.address | startswith("bc1q"))] | join(" ")')" \
  "pending 70862.71 0.00310460 true"
call POST "/api/v1/invoices/$NUMBER/finalize" -H "Authorization: Bearer $KEY"
expect_eq "  again: 400, the invoice is not a draft" "$status $(j '.error | test("draft")')" "400 true"
call GET "/api/v1/invoices/$NUMBER/status" -H "Authorization: Bearer $KEY"
expect_eq "GET /api/v1/invoices/<ref>/status: the documented fields" \
  "$(j '[.invoice_number, .status, .total, .amount_paid, .amount_due, .currency] | join(" ")')" \
  "$NUMBER pending 220.00 0.00 220.00 USD"
call DELETE "/api/v1/invoices/$NUMBER" -H "Authorization: Bearer $KEY"
expect_eq "DELETE /api/v1/invoices/<ref>: {\"ok\":true,\"status\":\"cancelled\"}" "$status $(jq -c . "$work/body")" '200 {"ok":true,"status":"cancelled"}'
call GET "/api/v1/invoices?status=cancelled" -H "Authorization: Bearer $KEY"
expect_eq "GET /api/v1/invoices: {invoices, total, limit (50), offset}" \
  "$(j '[(.invoices | length), .total, .limit, .offset, .invoices[0].ref] | join(" ")')" "1 1 50 0 $REF"

section "bad input: 400 in the seeds' shape, naming the field, nothing written"
before=$(count)
bad_request() {  # name body field
  call POST /api/v1/invoices -H "X-API-Key: $KEY" -H "Content-Type: application/json" -d "$2"
  expect_eq "$1" "$status $(j '.errors | map(.field) | join(",")') $(j '.error | length > 0')" "400 $3 true"
}
bad_request "Living Invoices without to_email" '{"items": [{"description": "x", "unit_price": 1}]}' to_email
bad_request "Living Invoices without items" '{"to_email": "a@example.com"}' items
bad_request "BTPay lines without quantity" '{"lines": [{"description": "x", "unit_price": 1}]}' 'lines[0].quantity'
bad_request "neither lines nor items" '{"customer_email": "a@example.com"}' lines
bad_request "an undocumented field" '{"lines": [{"description": "x", "quantity": 1, "unit_price": 1}], "amount": 5}' amount
bad_request "a bad tax rate and due date" '{"lines": [{"description": "x", "quantity": 1, "unit_price": 1}], "tax_rate": "ten", "due_date": "soon"}' 'tax_rate,due_date'
bad_request "the engine's own check: a negative price" '{"lines": [{"description": "x", "quantity": 1, "unit_price": -1}]}' 'lines[0].unit_price'
bad_request "  in a Living Invoices request, named as Living Invoices names it" '{"to_email": "a@example.com", "items": [{"description": "x", "unit_price": -1}]}' 'items[0].unit_price'
call POST /api/v1/invoices -H "X-API-Key: $KEY" -H "Content-Type: application/json" -d '{"lines": ['
expect_eq "a body that is not JSON: 400" "$status $(j .error)" "400 the request body is not valid JSON"
call GET "/api/v1/invoices?limit=1000" -H "X-API-Key: $KEY"
expect_eq "limit above 100: 400 naming limit" "$status $(j '.errors[0].field')" "400 limit"
for route in "GET /api/v1/invoices/INV-9999" "GET /api/v1/invoices/INV-9999/status" "POST /api/v1/invoices/INV-9999/finalize" "DELETE /api/v1/invoices/INV-9999"; do
  call ${route% *} "${route#* }" -H "X-API-Key: $KEY"
  expect_eq "$route: an unknown invoice, 404" "$status $(j '.error | length > 0')" "404 true"
done
call GET "/api/v1/invoices/$(j .ref 2>/dev/null || true)x?include_payments=maybe" -H "X-API-Key: $KEY"
expect_eq "include_payments=maybe: 400 naming it" "$status $(j '.errors[0].field')" "400 include_payments"
# a sent Living Invoices request with a currency nobody quotes fails at its quote: rolled back
call POST /api/v1/invoices -H "X-API-Key: $KEY" -H "Content-Type: application/json" \
  -d '{"to_email": "a@example.com", "items": [{"description": "x", "unit_price": 1}], "send": true, "currency": "ISK"}'
expect_eq "a quote that cannot be made: 400 (not 409: the seeds document 400)" "$status" "400"
expect_eq "  none of the failed requests wrote an invoice" "$(count)" "$before"

section "auth, scopes and limits as on every route, in the seeds' shape"
call GET /api/v1/invoices
expect_eq "no key: 401 {\"error\"}" "$status $(j .error)" "401 an API key is required"
call GET /api/v1/invoices -H "X-API-Key: not-a-key"
expect_eq "a bad key: 401" "$status $(j .error)" "401 invalid API key"
call POST /api/v1/invoices -H "X-API-Key: $READ_KEY" -H "Content-Type: application/json" -d '{"to_email": "a@example.com", "items": []}'
expect_eq "a read key cannot create: 403" "$status $(j '.error | test("write")')" "403 true"
for i in 1 2 3; do call GET /api/v1/invoices -H "X-API-Key: $SLOW_KEY"; done
expect_eq "within its limit: X-RateLimit-Remaining counts down" "$(grep -i '^x-ratelimit-remaining:' "$work/headers" | tr -d '\r' | awk '{print $2}')" "0"
call GET /api/v1/invoices -H "X-API-Key: $SLOW_KEY"
expect_eq "the 4th request of a 3/min key: 429 with Retry-After" \
  "$status $(j '.error | test("rate limit")') $(grep -ci '^retry-after:' "$work/headers")" "429 true 1"

section "routes"
call GET /api/v1/nothing -H "X-API-Key: $KEY"
expect_eq "an undocumented path: 404 {\"error\"}" "$status $(j '.error | length > 0')" "404 true"
call PUT /api/v1/invoices -H "X-API-Key: $KEY"
expect_eq "an undocumented method: 405 with Allow" "$status $(grep -i '^allow:' "$work/headers" | tr -d '\r' | cut -d' ' -f2-)" "405 POST, GET"
call GET "/api/v1/%69nvoices/$NUMBER%2Fstatus" -H "X-API-Key: $KEY"
expect_eq "an encoded slash is not a path separator: 404" "$status" "404"
call GET "/rpc/invoice_status?ref=$NUMBER" -H "X-API-Key: $KEY"
expect_eq "the PostgREST /rpc API stays as it is" "$status" "200"
finish
