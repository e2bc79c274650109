#!/usr/bin/env bash
# End-to-end through the running PostgREST with curl: auth headers, scopes, revocation,
# tenants, webhook endpoints, the rate limit (101st request), idempotency, validation errors, the public view and
# the OpenAPI description.
# Usage: tests/http/curl.sh   (FIXTURE=<file> to reuse a fixture from tests/http/fixture.sh)
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
fixture="${FIXTURE:-}"
if [ -z "$fixture" ]; then fixture=$(mktemp); bash "$here/fixture.sh" curl > "$fixture"; fi
j() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'d': d}))" "$@"; }
URL=$(j "$fixture" "d['url']")
A_KEY=$(j "$fixture" "d['a']['key']")
B_KEY=$(j "$fixture" "d['b']['key']")
B_ID=$(j "$fixture" "d['b']['invoice']['id']")
B_SLUG=$(j "$fixture" "d['b']['invoice']['slug']")
B_NUMBER=$(j "$fixture" "d['b']['invoice']['invoice_number']")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# call METHOD PATH [curl args...]: sets $status, body in $work/body, headers in $work/headers
call() {
  local method=$1 path=$2; shift 2
  status=$(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' -X "$method" "$URL$path" "$@")
}
header() { grep -i "^$1:" "$work/headers" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'d': d}))" "$work/body" "$1"; }
expect_status() {  # name expected
  if [ "$status" = "$2" ]; then ok "$1"; else bad "$1" "HTTP $status, expected $2: $(head -c 400 "$work/body")"; fi
}
json=(-H 'Content-Type: application/json')

echo "auth headers"
call POST /rpc/create_invoice -H "X-API-Key: $A_KEY" "${json[@]}" \
  -d '{"to_email": "customer@example.com", "items": [{"description": "Web Design", "unit_price": 500}]}'
expect_status "X-API-Key creates an invoice (Living Invoices payload)" 200
expect_eq "  its total" "$(field "d['total']")" "500.00"
expect_eq "  its customer_email (to_email alias)" "$(field "d['customer_email']")" "customer@example.com"
call POST /rpc/create_invoice -H "Authorization: Bearer $A_KEY" "${json[@]}" \
  -d '{"lines": [{"description": "Widget", "quantity": 1, "unit_price": "150.00"}, {"description": "Gadget", "quantity": 2, "unit_price": "25.00"}], "tax_rate": 10, "send": true}'
expect_status "Authorization: Bearer creates an invoice (BTPay example)" 200
expect_eq "  total 220.00" "$(field "d['total']")" "220.00"
expect_eq "  sent: pending" "$(field "d['status']")" "pending"
A_INVOICE=$(field "d['invoice_number']")
call GET /invoices -H "X-API-Key: $A_KEY"
expect_status "keyed GET succeeds" 200
for h in X-RateLimit-Limit X-RateLimit-Remaining X-RateLimit-Reset; do
  [ -n "$(header $h)" ] && ok "  $h on a keyed response" || bad "  $h on a keyed response"
done
call GET /invoices
expect_status "no key: 401" 401
expect_eq "  code 28000" "$(field "d['code']")" "28000"
call GET /invoices -H "X-API-Key: not-a-key"
expect_status "unknown X-API-Key: 401" 401
call GET /invoices -H "Authorization: Bearer not.a.jwt"
expect_status "malformed Bearer token: 401" 401

echo "scopes and revocation"
call POST /rpc/create_api_key -H "X-API-Key: $A_KEY" "${json[@]}" -d '{"name": "reader", "scopes": ["read"]}'
expect_status "admin key creates a read-only key" 200
READ_KEY=$(field "d['api_key']"); READ_ID=$(field "d['id']")
expect_eq "  scopes" "$(field "d['scopes']")" "['read']"
call POST /rpc/create_invoice -H "X-API-Key: $READ_KEY" "${json[@]}" -d '{"items": [{"description": "x", "unit_price": 1}]}'
expect_status "read-only key cannot create: 403" 403
expect_eq "  code 42501" "$(field "d['code']")" "42501"
call POST /rpc/create_api_key -H "X-API-Key: $READ_KEY" "${json[@]}" -d '{"name": "escalate", "scopes": ["admin"]}'
expect_status "read-only key cannot create keys: 403" 403
call GET /api_keys -H "X-API-Key: $A_KEY"
expect_status "admin key lists keys" 200
if grep -q "$READ_KEY" "$work/body"; then bad "  api_keys never shows a key"; else ok "  api_keys never shows a key"; fi
expect_eq "  the reader key is listed with its prefix" \
  "$(field "[k['prefix'].startswith('inv_') for k in d if k['id'] == '$READ_ID']")" "[True]"
call GET /invoices -H "Authorization: Bearer $READ_KEY"
expect_status "read-only key reads (Bearer)" 200
call GET "/rpc/cancel_invoice?ref=INV-0001" -H "X-API-Key: $READ_KEY"
expect_status "read-only key cannot call a writing function through GET: 403" 403
call GET /api_keys -H "X-API-Key: $A_KEY"
expect_eq "  api_keys shows when the reader key was last used" \
  "$(field "[k['last_used_at'] is not None for k in d if k['id'] == '$READ_ID']")" "[True]"
call POST /rpc/revoke_api_key -H "X-API-Key: $A_KEY" "${json[@]}" -d "{\"id\": \"$READ_ID\"}"
expect_status "admin key revokes it" 200
call GET /invoices -H "Authorization: Bearer $READ_KEY"
expect_status "revoked key, next request (Bearer): 401" 401
call GET /invoices -H "X-API-Key: $READ_KEY"
expect_status "revoked key, next request (X-API-Key): 401" 401
expect_eq "  says revoked" "$(field "d['message']")" "this API key was revoked"

echo "tenants"
call GET "/invoices?id=eq.$B_ID" -H "X-API-Key: $A_KEY"
expect_status "A reads B's invoice by id: 200 ..." 200
expect_eq "  ... with 0 rows" "$(field "len(d)")" "0"
call GET "/invoice_lines?invoice_id=eq.$B_ID" -H "X-API-Key: $A_KEY"
expect_eq "A reads B's lines: 0 rows" "$(field "len(d)")" "0"
call GET "/audit_log?invoice_id=eq.$B_ID" -H "X-API-Key: $A_KEY"
expect_eq "A reads B's audit log: 0 rows" "$(field "len(d)")" "0"
if grep -q "Secret work of B\|b-callback-secret\|client-of-b" "$work/body"; then bad "no B data in A's listing"; fi
call GET /invoices -H "X-API-Key: $A_KEY"
if grep -q "Secret work of B\|client-of-b" "$work/body"; then bad "A's list holds none of B's data"; else ok "A's list holds none of B's data"; fi
for fn in invoice_status cancel_invoice finalize_invoice; do
  for ref in "$B_ID" "$B_SLUG" "$B_NUMBER"; do
    call POST "/rpc/$fn" -H "X-API-Key: $A_KEY" "${json[@]}" -d "{\"ref\": \"$ref\"}"
    if [ "$ref" != "$B_NUMBER" ]; then
      expect_status "A calls $fn on B's invoice ($ref): 404" 404
    else
      # A has its own INV-0001 etc.: the same number names A's invoice, never B's
      [ "$(field "d.get('id')")" != "$B_ID" ] && ok "A's $fn($B_NUMBER) never reaches B's invoice" \
        || bad "A's $fn($B_NUMBER) reached B's invoice"
    fi
  done
done
call PATCH "/invoices?id=eq.$B_ID" -H "X-API-Key: $A_KEY" "${json[@]}" -d '{"status": "cancelled"}'
expect_status "PATCH on a view: 405 (views are read-only)" 405
[ -n "$(header X-RateLimit-Remaining)" ] && ok "  with the rate-limit headers" || bad "  with the rate-limit headers"
call DELETE "/invoices?id=eq.$B_ID" -H "X-API-Key: $A_KEY"
expect_status "DELETE on a view: 405" 405
call POST "/invoices" -H "X-API-Key: $A_KEY" "${json[@]}" -d '{"total": 1}'
expect_status "POST (insert) on a view: 405" 405
call POST /rpc/invoice_status -H "X-API-Key: $B_KEY" "${json[@]}" -d "{\"ref\": \"$B_ID\"}"
expect_eq "B's invoice is still pending" "$(field "d['status']")" "pending"

echo "validation errors (400, each bad field named, nothing written)"
count() { psql_ -tAc "select count(*) from invoices.invoices where merchant_id = '$(j "$fixture" "d['a']['id']")'"; }
before=$(count)
check_400() {  # name body field...
  local name=$1 body=$2; shift 2
  call POST /rpc/create_invoice -H "X-API-Key: $A_KEY" "${json[@]}" -d "$body"
  expect_status "$name: 400" 400
  local fields; fields=$(field "sorted(e['field'] for e in __import__('json').loads(d['details'])['errors'])" 2>/dev/null || echo "?")
  for f in "$@"; do
    case "$fields" in *"'$f'"*) ok "  names $f" ;; *) bad "  names $f" "details fields: $fields" ;; esac
  done
}
check_400 "missing lines" '{"customer_email": "a@example.com"}' lines
check_400 "101 lines" "{\"lines\": [$(printf '{"description": "x", "unit_price": 1},%.0s' $(seq 100)){\"description\": \"x\", \"unit_price\": 1}]}" lines
check_400 "negative quantity" '{"lines": [{"description": "x", "quantity": -1, "unit_price": 1}]}' 'lines[0].quantity'
check_400 "non-numeric price" '{"lines": [{"description": "x", "unit_price": "ten"}]}' 'lines[0].unit_price'
check_400 "unknown currency" '{"currency": "XXX", "lines": [{"description": "x", "unit_price": 1}]}' currency
check_400 "discount above subtotal" '{"discount_amount": 50, "lines": [{"description": "x", "unit_price": 10}]}' discount_amount
check_400 "bad email" '{"customer_email": "not-an-email", "lines": [{"description": "x", "unit_price": 1}]}' customer_email
check_400 "due date before issue date" '{"issue_date": "2026-01-10", "due_date": "2026-01-01", "lines": [{"description": "x", "unit_price": 1}]}' due_date
check_400 "several at once" '{"customer_email": "nope", "currency": "XXX", "lines": []}' lines customer_email currency
check_400 "lines and items together" '{"lines": [{"description": "x", "unit_price": 1}], "items": [{"description": "x", "unit_price": 1}]}' items
expect_eq "no invoice was written by the bad requests" "$(count)" "$before"
call POST /rpc/cancel_invoice -H "X-API-Key: $A_KEY" "${json[@]}" -d "{\"ref\": \"$A_INVOICE\"}"
expect_status "cancel a pending invoice" 200
call POST /rpc/cancel_invoice -H "X-API-Key: $A_KEY" "${json[@]}" -d "{\"ref\": \"$A_INVOICE\"}"
expect_status "cancel it again: 409 (illegal transition)" 409
expect_eq "  code 23514" "$(field "d['code']")" "23514"
call POST /rpc/invoice_status -H "X-API-Key: $A_KEY" "${json[@]}" -d '{"ref": "INV-9999"}'
expect_status "unknown invoice: 404" 404

echo "idempotency"
idem="test-$(date +%s%N)"
body='{"items": [{"description": "Once only", "unit_price": 42}], "to_email": "once@example.com"}'
before=$(count)
call POST /rpc/create_invoice -H "X-API-Key: $A_KEY" -H "Idempotency-Key: $idem" "${json[@]}" -d "$body"
expect_status "first request with an Idempotency-Key" 200
first_id=$(field "d['id']"); cp "$work/body" "$work/first"
call POST /rpc/create_invoice -H "Authorization: Bearer $A_KEY" -H "Idempotency-Key: $idem" "${json[@]}" -d "$body"
expect_status "replay" 200
expect_eq "  returns the first response" "$(field "d['id']")" "$first_id"
expect_eq "  marked Idempotent-Replayed" "$(header Idempotent-Replayed)" "true"
cmp -s "$work/body" "$work/first" && ok "  byte-identical body" || bad "  byte-identical body"
expect_eq "  created one invoice" "$(count)" "$((before + 1))"
call POST /rpc/create_invoice -H "X-API-Key: $A_KEY" -H "Idempotency-Key: $idem" "${json[@]}" \
  -d '{"items": [{"description": "Something else", "unit_price": 43}]}'
expect_status "same key, different body: 409" 409
expect_eq "  code 23505" "$(field "d['code']")" "23505"
call POST /rpc/create_invoice -H "X-API-Key: $B_KEY" -H "Idempotency-Key: $idem" "${json[@]}" -d "$body"
expect_status "another merchant may use the same key string" 200
[ "$(field "d['id']")" != "$first_id" ] && ok "  and gets its own invoice" || bad "  and gets its own invoice"

echo "public view (no key)"
call GET "/public_invoices?slug=eq.$B_SLUG"
expect_status "public invoice by slug without a key" 200
expect_eq "  one row" "$(field "len(d)")" "1"
grep -q '"total":999.00' "$work/body" && ok "  its total, numeric 999.00" || bad "  its total" "$(cat "$work/body")"
for private in merchant_id customer_email customer_address metadata order_id callback_url callback_secret; do
  [ "$(field "'$private' in d[0]")" = False ] && ok "  hides $private" || bad "  hides $private"
done
if grep -q "b-callback-secret\|client-of-b\|B only" "$work/body"; then bad "  no secret anywhere in the body"; else ok "  no secret anywhere in the body"; fi
call GET "/public_invoices?id=eq.$B_ID"
expect_eq "public invoice by id" "$(field "d[0]['slug']")" "$B_SLUG"
call GET "/invoices?id=eq.$B_ID"
expect_status "but the invoices view needs a key" 401
call GET "/public_invoices?select=invoice_number,total&limit=3"
expect_status "listing public invoices is refused: 400" 400
call GET "/public_invoices?id=gt.00000000-0000-0000-0000-000000000000&limit=1&order=id"
expect_status "ranging over ids is refused: 400" 400
call GET "/public_invoices?or=(slug.eq.$B_SLUG,id.gt.00000000-0000-0000-0000-000000000000)&limit=1"
expect_status "an OR around a slug lookup is refused: 400" 400
call GET "/public_invoices?slug=eq.$B_SLUG" -H 'Prefer: count=exact'
expect_status "a lookup with Prefer: count=exact works" 200
call POST /rpc/create_invoice -H "X-API-Key: $A_KEY" "${json[@]}" -d '{"items": [{"description": "never sent", "unit_price": 5}]}'
draft_id=$(field "d['id']")
call POST /rpc/cancel_invoice -H "X-API-Key: $A_KEY" "${json[@]}" -d "{\"ref\": \"$draft_id\"}"
call GET "/public_invoices?id=eq.$draft_id"
expect_eq "a draft cancelled before it was sent is not public" "$(field "len(d)")" "0"

echo "OpenAPI"
call GET /
expect_status "GET / (OpenAPI) without a key" 200
field "d['paths']" > /dev/null
missing=$(python3 - "$work/body" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
out = []
for path, ops in d["paths"].items():
    if path == "/":
        continue
    for verb, op in ops.items():
        if verb in ("get", "post") and not (op.get("summary") or op.get("description")):
            out.append(f"{verb} {path}")
print(" ".join(out))
PY
)
expect_eq "every function and view is described (COMMENT ON)" "$missing" ""
for p in /invoices /public_invoices /rpc/create_invoice /rpc/create_api_key; do
  [ "$(field "'$p' in d['paths']")" = True ] && ok "  $p listed" || bad "  $p listed"
done
[ "$(field "'/rpc/act_as' in d['paths'] or '/rpc/create_merchant' in d['paths']")" = False ] \
  && ok "  admin-only SQL functions are not exposed" || bad "  admin-only SQL functions are not exposed"

echo "webhook endpoints"
call POST /rpc/create_api_key -H "X-API-Key: $A_KEY" "${json[@]}" -d '{"name": "hooks", "scopes": ["webhooks"]}'
HOOK_KEY=$(field "d['api_key']")
call POST /rpc/create_api_key -H "X-API-Key: $A_KEY" "${json[@]}" -d '{"name": "writer", "scopes": ["write"]}'
WRITE_KEY=$(field "d['api_key']")
call POST /rpc/create_webhook_endpoint -H "X-API-Key: $WRITE_KEY" "${json[@]}" -d '{"url": "http://127.0.0.1:9/hooks"}'
expect_status "a write key cannot register endpoints: 403 (webhooks scope)" 403
call POST /rpc/create_webhook_endpoint -H "X-API-Key: $HOOK_KEY" "${json[@]}" \
  -d '{"url": "http://127.0.0.1:9/hooks", "events": ["invoice.paid", "invoice.expired"], "description": "erp"}'
expect_status "a webhooks key registers an endpoint" 200
HOOK_ID=$(field "d['id']")
expect_eq "  the secret is shown once (whsec_)" "$(field "d['secret'][:6]")" "whsec_"
expect_eq "  its events" "$(field "d['events']")" "['invoice.paid', 'invoice.expired']"
call POST /rpc/create_webhook_endpoint -H "X-API-Key: $HOOK_KEY" "${json[@]}" -d '{"url": "ftp://example.com", "events": ["invoice.nope"]}'
expect_status "bad url and unknown event: 400" 400
expect_eq "  both fields named" "$(field "sorted(e['field'] for e in __import__('json').loads(d['details'])['errors'])")" "['events', 'url']"
call GET "/webhook_endpoints?id=eq.$HOOK_ID" -H "X-API-Key: $HOOK_KEY"
expect_status "GET /webhook_endpoints" 200
expect_eq "  lists it without a secret" "$(field "[sorted(r.keys()) for r in d][0].count('secret')") $(grep -c whsec_ "$work/body" || true)" "0 0"
call GET "/webhook_endpoints?id=eq.$HOOK_ID" -H "X-API-Key: $B_KEY"
expect_eq "  another merchant sees none of it" "$(field "len(d)")" "0"
call GET "/webhook_deliveries?limit=5" -H "X-API-Key: $HOOK_KEY"
expect_status "GET /webhook_deliveries" 200
call POST /rpc/redeliver -H "X-API-Key: $HOOK_KEY" "${json[@]}" -d '{"delivery_id": 999999999}'
expect_status "redeliver of an unknown delivery: 404" 404
call POST /rpc/delete_webhook_endpoint -H "X-API-Key: $HOOK_KEY" "${json[@]}" -d "{\"id\": \"$HOOK_ID\"}"
expect_status "delete_webhook_endpoint" 200
expect_eq "  inactive" "$(field "d['active']")" "False"
call POST /rpc/delete_webhook_endpoint -H "X-API-Key: $B_KEY" "${json[@]}" -d "{\"id\": \"$HOOK_ID\"}"
expect_status "  another merchant's endpoint: 404" 404

echo "payment links"
call POST /rpc/create_payment_link -H "X-API-Key: $A_KEY" "${json[@]}" -d '{"title": "Curl Coffee Club", "amount": 12, "currency": "USD"}'
expect_status "a merchant creates a payment link" 200
LINK=$(field "d['slug']")
call POST /rpc/create_payment_link "${json[@]}" -d '{"title": "No key"}'
expect_status "  not without a key: 401" 401
call GET "/public_payment_links?slug=eq.$LINK"
expect_status "anyone reads an active link by slug, without a key" 200
expect_eq "  its title and amount" "$(field "(d[0]['title'], d[0]['amount'])")" "('Curl Coffee Club', 12)"
call GET "/public_payment_links"
expect_status "  listing every link: 400" 400
call POST /rpc/pay_payment_link "${json[@]}" -d "{\"slug\": \"$LINK\"}"
expect_status "anyone pays it, without a key: a finalized invoice" 200
expect_eq "  pending, 12.00 USD" "$(field "(d['status'], d['total'], d['currency'])")" "('pending', '12.00', 'USD')"
call POST /rpc/pay_payment_link "${json[@]}" -d "{\"slug\": \"$LINK\", \"amount\": 1}"
expect_status "  another amount for a fixed link: 400" 400
call POST /rpc/deactivate_payment_link -H "X-API-Key: $B_KEY" "${json[@]}" -d "{\"slug\": \"$LINK\"}"
expect_status "another merchant cannot deactivate it: 404" 404
call POST /rpc/deactivate_payment_link -H "X-API-Key: $A_KEY" "${json[@]}" -d "{\"slug\": \"$LINK\"}"
expect_status "its merchant deactivates it" 200
call POST /rpc/pay_payment_link "${json[@]}" -d "{\"slug\": \"$LINK\"}"
expect_status "  then it cannot be paid: 404" 404

echo "rate limit: 100 requests per minute per key"
call POST /rpc/create_api_key -H "X-API-Key: $A_KEY" "${json[@]}" -d '{"name": "limited", "scopes": ["read"]}'
LIM_KEY=$(field "d['api_key']")
# Stay inside one fixed one-minute window.
now=$(date +%s); left=$((60 - now % 60)); [ "$left" -lt 20 ] && sleep "$left"
codes=""
for i in $(seq 100); do
  codes+=$(curl -s -o /dev/null -w '%{http_code} ' "$URL/invoices?limit=1" -H "X-API-Key: $LIM_KEY")
done
expect_eq "requests 1-100 succeed" "$(echo $codes | tr ' ' '\n' | sort | uniq -c | xargs)" "100 200"
call GET "/invoices?limit=1" -H "X-API-Key: $LIM_KEY"
expect_status "request 101: 429" 429
expect_eq "  X-RateLimit-Limit" "$(header X-RateLimit-Limit)" "100"
expect_eq "  X-RateLimit-Remaining" "$(header X-RateLimit-Remaining)" "0"
reset=$(header X-RateLimit-Reset); retry=$(header Retry-After); now=$(date +%s)
[ "$reset" -gt "$now" ] && [ "$reset" -le $((now + 60)) ] && ok "  X-RateLimit-Reset is the window's end ($reset)" || bad "  X-RateLimit-Reset" "$reset vs now $now"
[ "$retry" -ge 1 ] && [ "$retry" -le 60 ] && ok "  Retry-After ${retry}s" || bad "  Retry-After" "[$retry]"
expect_eq "  code 54000" "$(field "d['code']")" "54000"
call GET "/invoices?limit=1" -H "Authorization: Bearer $LIM_KEY"
expect_status "request 102 (other header, same key): still 429" 429
call GET "/invoices?limit=1" -H "X-API-Key: $A_KEY"
expect_status "another key is unaffected" 200

echo "void and uncollectible"
call POST /rpc/create_invoice -H "X-API-Key: $A_KEY" "${json[@]}" -d '{"items": [{"description": "Issued by mistake", "unit_price": 70}], "send": true}'
mistake=$(field "d['invoice_number']")
call POST /rpc/void_invoice -H "X-API-Key: $A_KEY" "${json[@]}" -d "{\"ref\": \"$mistake\"}"
expect_status "void_invoice" 200
expect_eq "  void" "$(field "d['status']")" "void"
call POST /rpc/void_invoice -H "X-API-Key: $A_KEY" "${json[@]}" -d "{\"ref\": \"$mistake\"}"
expect_status "  again: 409" 409
call POST /rpc/create_invoice -H "X-API-Key: $A_KEY" "${json[@]}" -d '{"items": [{"description": "Never paid", "unit_price": 80}], "send": true}'
bad_debt=$(field "d['invoice_number']")
call POST /rpc/create_api_key -H "X-API-Key: $A_KEY" "${json[@]}" -d '{"name": "books", "scopes": ["read"]}'
BOOKS_KEY=$(field "d['api_key']")
call POST /rpc/mark_uncollectible -H "X-API-Key: $BOOKS_KEY" "${json[@]}" -d "{\"ref\": \"$bad_debt\"}"
expect_status "mark_uncollectible with a read key: 403" 403
call POST /rpc/mark_uncollectible -H "X-API-Key: $A_KEY" "${json[@]}" -d "{\"ref\": \"$bad_debt\"}"
expect_status "mark_uncollectible" 200
expect_eq "  uncollectible" "$(field "d['status']")" "uncollectible"
call GET "/journal_entries?invoice_number=in.($mistake,$bad_debt)&entry_type=in.(void,write_off)&select=entry_type,account,debit,credit&order=entry_type,line" -H "X-API-Key: $A_KEY"
expect_eq "  the journal reverses the void and writes off the rest" "$(python3 -c 'import json,sys; print(" ".join(r["entry_type"] + ":" + r["account"] + ":" + str(r["debit"] or r["credit"]) for r in json.load(open(sys.argv[1]), parse_float=str)))' "$work/body")" \
  "void:revenue:70.00 void:accounts_receivable:70.00 write_off:bad_debt:80.00 write_off:accounts_receivable:80.00"

echo "exports for accountants (Accept: text/csv)"
month_start=$(date -u +%Y-%m-01)
call GET "/journal_entries?entry_date=gte.$month_start&order=entry_date,entry_id,line" -H "X-API-Key: $A_KEY" -H "Accept: text/csv"
expect_status "the month's journal as CSV" 200
expect_eq "  Content-Type" "$(header Content-Type | cut -d';' -f1)" "text/csv"
expect_eq "  its header row" "$(head -1 "$work/body")" \
  "merchant_id,entry_id,entry_date,entry_type,invoice_id,invoice_number,line,account,debit,credit,currency,asset,asset_amount,memo"
balance=$(python3 - "$work/body" <<'PY'
import csv, sys
from decimal import Decimal
rows = list(csv.DictReader(open(sys.argv[1])))
sums = {}
for r in rows:
    d = sums.setdefault(r["entry_id"], Decimal(0))
    sums[r["entry_id"]] = d + Decimal(r["debit"]) - Decimal(r["credit"])
print(len(rows), len(sums), sum(1 for v in sums.values() if v != 0))
PY
)
read -r rows entries unbalanced <<<"$balance"
[ "$entries" -ge 1 ] && [ "$unbalanced" = 0 ] && ok "  $entries entries in $rows lines, each balanced" || bad "  entries balanced" "$balance"
mine=$(grep -c "$B_ID" "$work/body" || true)   # by id: both merchants number from INV-0001
call GET "/journal_entries?invoice_number=eq.$B_NUMBER" -H "X-API-Key: $B_KEY" -H "Accept: text/csv"
expect_status "  the other merchant's journal" 200
expect_eq "  B sees its own invoice's entry lines" "$(tail -n +2 "$work/body" | grep -c "$B_NUMBER")" "2"
[ "$mine" = 0 ] && ok "  A's export holds none of B's invoices" || bad "  A's export holds B's invoice" "$mine"
for view in invoices payments invoice_lines; do
  call GET "/$view?limit=5" -H "X-API-Key: $A_KEY" -H "Accept: text/csv"
  expect_status "  /$view as CSV" 200
done
call GET "/journal_entries" -H "Accept: text/csv"
expect_status "  no key: 401" 401

finish
