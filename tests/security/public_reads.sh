#!/usr/bin/env bash
# Public reads are no oracle, anonymous callers are rate-limited, a key cannot lift its own
# rate limit. A refused filter on the public views answers the same whether or not a row
# matches it (slug=like.a* once recovered every slug, prefix by prefix).
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

read -r slug link admin_key < <(psql_ -tA -F ' ' <<'SQL' | tail -1
select (invoices.create_merchant('Public reads') ->> 'id') as m \gset
select invoices.act_as(:'m') is not null as acting \gset
select invoices.create_invoice(lines => '[{"description": "x", "unit_price": 1}]', send => true) ->> 'slug' as slug \gset
select invoices.create_payment_link('Oracle test ' || gen_random_uuid(), amount => 5) ->> 'slug' as link \gset
select :'slug', :'link', invoices_internal.insert_api_key(:'m', 'admin', '{admin}', 100000) ->> 'api_key';
SQL
)
n=0
get() {  # base path: status and body, each call from another client address
  n=$((n + 1))
  curl -s -o "$work/body" -w '%{http_code}' -H "X-Real-IP: 203.0.113.$((n % 250 + 1))" "$1$2"
}
absent=$(python3 -c "import string,sys; s=sys.argv[1]; print(next(c for c in string.ascii_letters + string.digits if not any(x.startswith(c) for x in [s])))" "$slug")
for base in "$PGRST_URL" "$PUBLIC_URL"; do
  echo "public_invoices through $base"
  a=$(get "$base" "/public_invoices?slug=like.${slug:0:1}*"); body_a=$(cat "$work/body")
  b=$(get "$base" "/public_invoices?slug=like.${absent}*"); body_b=$(cat "$work/body")
  expect_eq "  a prefix some slug has: 400" "$a" "400"
  expect_eq "  a prefix no slug has: the same 400" "$b" "400"
  expect_eq "  and the same body" "$body_a" "$body_b"
  expect_eq "  a listing without a filter: 400" "$(get "$base" "/public_invoices?limit=5")" "400"
  expect_eq "  an exact slug plus another filter: 400" "$(get "$base" "/public_invoices?slug=eq.$slug&status=eq.pending")" "400"
  expect_eq "  one exact lookup by slug: 200" "$(get "$base" "/public_invoices?slug=eq.$slug")" "200"
  expect_eq "    with the invoice" "$(python3 -c "import json; print(len(json.load(open('$work/body'))))")" "1"
  expect_eq "  an unknown slug: 200 and nothing" "$(get "$base" "/public_invoices?slug=eq.nope-$RANDOM")$(cat "$work/body")" "200[]"
  a=$(get "$base" "/public_payment_links?slug=like.${link:0:1}*"); body_a=$(cat "$work/body")
  b=$(get "$base" "/public_payment_links?slug=like.zzzz-none*"); body_b=$(cat "$work/body")
  expect_eq "  public_payment_links: a matching prefix and none give the same 400" "$a $b $([ "$body_a" = "$body_b" ] && echo same)" "400 400 same"
  expect_eq "  public_payment_links by exact slug: 200" "$(get "$base" "/public_payment_links?slug=eq.$link")" "200"
done

echo "anonymous callers: 100 requests a minute per client address"
# client addresses of this run's own (documentation prefix, only ever header values): the
# counters live in shared memory, so a reused address would start the run already counted
run_prefix="2001:db8:$(printf %x $RANDOM):$(printf %x $RANDOM)"
port_no=0
for base in "$PGRST_URL" "$PUBLIC_URL"; do
  port_no=$((port_no + 1)); client="$run_prefix::$port_no"
  codes=""
  for i in $(seq 101); do
    codes="$codes $(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' -H "X-Real-IP: $client" "$base/public_invoices?slug=eq.$slug")"
  done
  expect_eq "  through $base: the first 100 answered, the 101st 429" \
    "$(tr ' ' '\n' <<< "$codes" | grep -c '^200$') $(tr ' ' '\n' <<< "$codes" | tail -1)" "100 429"
  expect_eq "    with Retry-After" "$(grep -ci '^retry-after: [0-9]' "$work/headers")" "1"
  expect_eq "    another client address is still served" "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Real-IP: $run_prefix::ff$port_no" "$base/public_invoices?slug=eq.$slug")" "200"
done
# from anyone but the trusted proxy (loopback here), the web front ignores a client's X-Real-IP:
# nginx's own config says so (set_real_ip_from 127.0.0.1 only)
expect_eq "  the web front believes X-Real-IP from loopback only" \
  "$(grep -c 'set_real_ip_from' "$LOCAL_DIR/nginx/nginx.conf") $(grep -o 'set_real_ip_from [^;]*' "$LOCAL_DIR/nginx/nginx.conf")" "1 set_real_ip_from 127.0.0.1"

echo "a key cannot lift its own rate limit"
code=$(curl -s -o "$work/body" -w '%{http_code}' -X POST "$PGRST_URL/rpc/create_api_key" -H "X-API-Key: $admin_key" \
  -H 'Content-Type: application/json' -d '{"name": "unlimited", "scopes": ["read"], "rate_limit_per_minute": 10000000}')
expect_eq "  create_api_key(rate_limit_per_minute => 10000000): 400" "$code" "400"
expect_eq "    naming the field" "$(python3 -c "import json; print(json.loads(json.load(open('$work/body'))['details'])['errors'][0]['field'])")" "rate_limit_per_minute"
finish
