#!/usr/bin/env bash
# Security, tried as an attacker would: through PostgREST with a merchant's (non-admin) key and
# with no key, and in SQL as the role PostgREST runs requests as. Secrets (API keys and their
# hashes, webhook secrets, the JWT secret) must never come back from any view or endpoint;
# invoices_internal must be out of reach; the HTTP roles must own nothing; every SECURITY
# DEFINER function must pin its search_path.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
URL="$PGRST_URL"

# two merchants; A has a webhook endpoint (a secret to leak) and a payment link
read -r a_id a_key b_id < <(psql_ -tA -F ' ' <<'SQL' | tail -1
select (invoices.create_merchant('Attacked A') ->> 'id') as a \gset
select (invoices.create_merchant('Other B') ->> 'id') as b \gset
select invoices.act_as(:'a') is not null as acting \gset
select invoices.create_webhook_endpoint('http://127.0.0.1:9/a') is not null as hook \gset
select invoices.create_invoice(lines => '[{"description": "x", "unit_price": 1}]', send => true) is not null as inv \gset
select :'a', invoices_internal.insert_api_key(:'a', 'attacker', '{read,write,webhooks}', 100000) ->> 'api_key', :'b';
SQL
)
admin_key=$(psql_ -tA -c "select invoices_internal.insert_api_key('$a_id', 'admin', '{admin}', 100000) ->> 'api_key'")

echo "over HTTP"
code() { curl -s -o "$work/body" -w '%{http_code}' "$@"; }
expect_eq "GET /api_keys with a non-admin key: 403" "$(code "$URL/api_keys" -H "X-API-Key: $a_key")" "403"
expect_eq "Accept-Profile: invoices_internal is refused (406)" \
  "$(code "$URL/api_keys" -H "X-API-Key: $admin_key" -H 'Accept-Profile: invoices_internal')" "406"
expect_eq "Content-Profile: invoices_internal on an RPC is refused (406)" \
  "$(code -X POST "$URL/rpc/jwt_secret" -H "X-API-Key: $admin_key" -H 'Content-Profile: invoices_internal' -H 'Content-Type: application/json' -d '{}')" "406"
expect_eq "internal functions are not reachable: POST /rpc/postgrest_config gives 404" \
  "$(code -X POST "$URL/rpc/postgrest_config" -H "X-API-Key: $admin_key" -H 'Content-Type: application/json' -d '{}')" "404"
expect_eq "a secret column cannot be selected: GET /webhook_endpoints?select=secret gives 400" \
  "$(code "$URL/webhook_endpoints?select=secret" -H "X-API-Key: $a_key")" "400"
curl -s "$URL/invoices?merchant_id=eq.$b_id" -H "X-API-Key: $a_key" > "$work/body"
expect_eq "filtering on another merchant's id gives nothing" "$(cat "$work/body")" "[]"
expect_eq "no key, a merchant view: 401" "$(code "$URL/webhook_deliveries")" "401"

# every view and every reading function, with the admin key: no secret material anywhere
secrets=$(psql_ -tA <<SQL
select secret from invoices_internal.webhook_endpoints where merchant_id = '$a_id'
union all select key_hash from invoices_internal.api_keys where merchant_id = '$a_id';
-- (a statement of its own: on Citus the one above runs on a worker node)
select invoices_internal.jwt_secret();
SQL
)
views=$(curl -s "$URL/" | python3 -c "import json,sys; print(' '.join(p.strip('/') for p in json.load(sys.stdin)['paths'] if not p.startswith('/rpc/') and p != '/'))")
: > "$work/all"
for v in $views; do
  curl -s "$URL/$v?limit=50" -H "X-API-Key: $admin_key" >> "$work/all"
done
for s in $(curl -s -X POST "$URL/rpc/invoice_status" -H "X-API-Key: $admin_key" -H 'Content-Type: application/json' -d '{"ref": "INV-0001"}'); do echo "$s" >> "$work/all"; done
expect_eq "  (looking for $(grep -c . <<< "$secrets") secrets in $(wc -c < "$work/all") bytes of answers)" "$([ "$(grep -c . <<< "$secrets")" -ge 3 ] && echo yes)" "yes"
leaks=0
while read -r s; do [ -n "$s" ] && grep -qF "$s" "$work/all" && leaks=$((leaks + 1)); done <<< "$secrets"
expect_eq "no webhook secret, key hash or JWT secret in any of $(wc -w <<< "$views") views" "$leaks" "0"
expect_eq "  nor the API keys themselves" "$(grep -cF "$a_key" "$work/all" || true)" "0"

echo "in SQL, as the role PostgREST runs requests as"
# (on Citus the role is granted the tables, as Citus checks it on the shards: row-level security
# then shows it nothing outside an HTTP request)
for t in api_keys server_secrets webhook_endpoints invoices payments; do
  if ! rows=$(psql_ -tA -c "set role invoices_api" -c "select count(*) from invoices_internal.$t" 2>/dev/null); then
    ok "invoices_internal.$t: permission denied to invoices_api"
  elif [ "$rows" = 0 ] && [ "$(q "select count(*) from pg_extension where extname = 'citus'")" = 1 ]; then
    ok "invoices_internal.$t: invoices_api reads no row of it (Citus: granted behind row-level security)"
  else
    bad "invoices_internal.$t is readable by invoices_api" "$rows rows"
  fi
done
if psql_ -c "set role invoices_api" -c "select invoices_internal.jwt_secret()" >/dev/null 2>&1; then
  bad "jwt_secret() callable by invoices_api"; else ok "invoices_internal.jwt_secret(): permission denied"; fi
if psql_ -c "set role invoices_api" -c "update invoices.invoices set status = 'paid'" >/dev/null 2>&1; then
  bad "views writable by invoices_api"; else ok "the views are read-only for invoices_api"; fi
owned=$(q "select (select count(*) from pg_class where relowner in ('invoices_api'::regrole, 'invoices_authenticator'::regrole))
              + (select count(*) from pg_proc where proowner in ('invoices_api'::regrole, 'invoices_authenticator'::regrole))
              + (select count(*) from pg_namespace where nspowner in ('invoices_api'::regrole, 'invoices_authenticator'::regrole))")
expect_eq "the HTTP roles own no table, function or schema" "$owned" "0"
expect_eq "invoices_authenticator can do nothing but log in and read PostgREST's configuration" \
  "$(q "select count(*) from information_schema.role_routine_grants where grantee = 'invoices_authenticator' and routine_name <> 'postgrest_config'")" "0"
expect_eq "every SECURITY DEFINER function pins search_path" \
  "$(q "select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname in ('invoices', 'invoices_internal') and p.prosecdef
           and not coalesce(p.proconfig @> '{search_path=pg_catalog}', false)")" "0"
echo "a node's URL keeps its key to itself (hosted nodes put it in the path, query or user info)"
# a node on a closed loopback port: the poll fails at once, and its error is stored
chain="secret-node-$RANDOM"
q "select invoices.configure_chain('$chain', 'evm', 'http://user:PASSWORDSECRET@127.0.0.1:1/v3/PATHSECRET?apikey=QUERYSECRET', '{ETH}', network => 'devnet', chain_id => 31337)" >/dev/null
wait_for 20 "select last_error is not null from invoices_internal.chains where id = '$chain'" || true
expect_eq "  the poll failed and its error is stored" "$(q "select last_error is not null from invoices_internal.chains where id = '$chain'")" "t"
# a node library's error that repeats the whole URL, as some do
q "select invoices_internal.record_chain_error('$chain', 'POST http://user:PASSWORDSECRET@127.0.0.1:1/v3/PATHSECRET?apikey=QUERYSECRET: 401')" >/dev/null
expect_eq "  an error repeating the URL is stored with its origin only" \
  "$(q "select last_error from invoices_internal.chains where id = '$chain'")" "POST http://127.0.0.1:1: 401"
expect_eq "  GET /chains shows scheme, host and port" \
  "$(curl -s "$URL/chains?id=eq.$chain&select=rpc_url" -H "X-API-Key: $a_key")" '[{"rpc_url":"http://127.0.0.1:1"}]'
expect_eq "  no part of the secret in the view, the stored error or the worker's status" \
  "$( { curl -s "$URL/chains?id=eq.$chain" -H "X-API-Key: $a_key"; q "select last_error from invoices_internal.chains where id = '$chain'"; q "select last_error from invoices.worker_status"; } | grep -c SECRET || true)" "0"
q "delete from invoices_internal.chains where id = '$chain'" >/dev/null
finish
