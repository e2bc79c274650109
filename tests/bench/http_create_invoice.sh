#!/usr/bin/env bash
# Benchmark: create invoices through PostgREST over HTTP. wrk (Debian package), 8 connections,
# 30 s (BENCH_SECONDS, BENCH_CONNECTIONS to change), POST /rpc/create_invoice with 3 lines and
# send => true, X-API-Key of 8 merchants in turn (keys created with a raised rate limit).
# Then the same call at the SQL level (pgbench, 8 clients, same merchants) for the ratio.
# Prints invoices/s, p50 and p99 latency, and HTTP/SQL. Targets: HTTP/SQL >= 0.85, p99 <= 3 x p50.
# Its own database (invoices_bench_http) and PostgREST (127.0.0.1:3124): nothing is left in the
# demo database, and the e-mails these invoices queue are dropped with the database.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SECONDS_EACH="${BENCH_SECONDS:-30}"
CONNS="${BENCH_CONNECTIONS:-8}"
command -v wrk >/dev/null || sudo_ apt-get install -y -qq wrk >/dev/null
bash "$ROOT/scripts/setup.sh" >/dev/null 2>&1 || bash "$ROOT/scripts/setup.sh"
export PGDATABASE=invoices_bench_http
API_PORT="${BENCH_API_PORT:-3124}"
work=$(mktemp -d)
cleanup() {
  bench_postgrest_stop http
  psql_ -d postgres -c "drop database if exists $PGDATABASE with (force)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql_ -d postgres -c "drop database if exists $PGDATABASE with (force)" -c "create database $PGDATABASE" >/dev/null
psql_ -c "create extension invoices" >/dev/null
bench_postgrest http "$PGPORT" "$PGDATABASE" "$API_PORT"
PGRST_URL="http://127.0.0.1:$API_PORT"
# 8 merchants, one key each with the rate limit raised for the run
psql_ -tA > "$work/keys" <<'SQL'
select invoices_internal.insert_api_key((invoices.create_merchant('HTTP bench ' || g)->>'id')::uuid,
                                        'bench', '{read,write}', 100000000)->>'api_key'
  from generate_series(1, 8) g;
SQL
mids=$(psql_ -tA -c "select string_agg(merchant_id::text, ' ') from invoices_internal.api_keys where key_hash in (select encode(sha256(convert_to(k, 'UTF8')), 'hex') from unnest(string_to_array('$(paste -sd, "$work/keys")', ',')) k)")
bench_create_lua "$work/keys" > "$work/bench.lua"
echo "HTTP: wrk, $CONNS connections, ${SECONDS_EACH}s, POST /rpc/create_invoice (3 lines, send => true)"
quiet() { psql_ -qc "vacuum analyze" -c "checkpoint" >/dev/null 2>&1 || true; sleep 2; }   # a quiet start
quiet
out=$(wrk -t 2 -c "$CONNS" -d "${SECONDS_EACH}s" -s "$work/bench.lua" "$PGRST_URL")
read -r _ reqs dur p50 p99 mean non2xx <<< "$(grep '^RESULT' <<< "$out")"
http_rate=$(awk -v r="$reqs" -v d="$dur" 'BEGIN { printf "%d", r / (d / 1e6) }')
echo "  invoices/s: $http_rate   p50: ${p50} ms   p99: ${p99} ms   mean: ${mean} ms   non-2xx: $non2xx"
# The SQL door on the same merchants, for the ratio.
cat > "$work/sql.sql" <<SQL
\set m random(1, 8)
select invoices.create_invoice(lines => '[{"description": "Consulting", "quantity": 2, "unit_price": "150.00"}, {"description": "Hosting", "quantity": 1, "unit_price": "19.99"}, {"description": "Setup", "quantity": 3, "unit_price": "33.33"}]', customer_email => 'alice@example.com', tax_rate => 10, send => true)
  from (select set_config('invoices.merchant_id', (string_to_array('$mids', ' '))[:m], false)) acting;
SQL
quiet
sql_rate=$("$PG_BIN/pgbench" -n -c "$CONNS" -j 2 -T "$SECONDS_EACH" -f "$work/sql.sql" "$PGDATABASE" 2>&1 | awk '/^tps/ {print int($3)}')
echo "SQL: pgbench, $CONNS clients, same call: $sql_rate invoices/s"
awk -v a="$http_rate" -v b="$sql_rate" -v p50="$p50" -v p99="$p99" 'BEGIN {
  printf "ratio HTTP/SQL: %.2f (target >= 0.85)\n", a / b
  printf "p99 / p50: %.2f (target <= 3)\n", p99 / p50 }'
bench_figure "HTTP create through PostgREST / the same SQL call" "$(awk -v a="$http_rate" -v b="$sql_rate" 'BEGIN { printf "%.3f", a / b }')" ">= 0.85"
bench_figure "HTTP create, p99 / p50 latency" "$(awk -v a="$p99" -v b="$p50" 'BEGIN { printf "%.3f", a / b }')" "<= 3"
bench_figure "HTTP create, invoices/s (absolute, this machine)" "$http_rate"
# Where the difference goes: the statements PostgREST sends for one such request (as its log
# shows them: BEGIN, the request settings, the pre-request check, the call wrapped in its JSON
# body parsing and response, COMMIT), replayed by pgbench with the same keys. The database's
# share of a request is this rate against the bare call's; the rest is PostgREST and HTTP.
body_sql=$(printf '%s' "$BENCH_CREATE_BODY" | sed "s/'/''/g")
n=0; files=()
while read -r key; do
  n=$((n + 1))
  headers=$(printf '{"content-type":"application/json","accept":"*/*","x-api-key":"%s"}' "$key")
  cat > "$work/request.$n.sql" <<SQL
BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE;
select set_config('search_path', '"invoices", "public"', true), set_config('role', 'invoices_api', true), set_config('request.jwt.claims', '{"role":"invoices_api"}', true), set_config('request.method', 'POST', true), set_config('request.path', '/rpc/create_invoice', true), set_config('request.headers', '$headers', true), set_config('request.cookies', '{}', true);
select "invoices_internal"."http_pre_request"();
WITH pgrst_source AS (SELECT pgrst_call.pgrst_scalar FROM (SELECT '$body_sql'::json AS json_data) pgrst_payload, LATERAL (SELECT CASE WHEN json_typeof(pgrst_payload.json_data) = 'array' THEN pgrst_payload.json_data ELSE json_build_array(pgrst_payload.json_data) END AS val) pgrst_uniform_json, LATERAL (SELECT "lines", "customer_email", "tax_rate", "send" FROM json_to_recordset(pgrst_uniform_json.val) AS _("lines" jsonb, "customer_email" text, "tax_rate" numeric, "send" boolean) LIMIT 1) pgrst_body , LATERAL (SELECT "invoices"."create_invoice"("lines" := pgrst_body."lines", "customer_email" := pgrst_body."customer_email", "tax_rate" := pgrst_body."tax_rate", "send" := pgrst_body."send") pgrst_scalar) pgrst_call) SELECT null::bigint AS total_result_set, 1 AS page_total, coalesce(json_agg(_postgrest_t.pgrst_scalar)->0, 'null') AS body, nullif(current_setting('response.headers', true), '') AS response_headers, nullif(current_setting('response.status', true), '') AS response_status, '' AS response_inserted FROM (SELECT "create_invoice".* FROM "pgrst_source" AS "create_invoice" LIMIT 100 OFFSET 0) _postgrest_t;
COMMIT;
SQL
  files+=(-f "$work/request.$n.sql@1")
done < "$work/keys"
quiet
req_rate=$("$PG_BIN/pgbench" -n -M prepared -c "$CONNS" -j 2 -T "$SECONDS_EACH" "${files[@]}" "$PGDATABASE" 2>&1 | awk '/^tps/ {print int($3)}')
echo "the request's statements replayed by pgbench (prepared, as PostgREST sends them): $req_rate requests/s"
awk -v a="$req_rate" -v b="$sql_rate" -v h="$http_rate" 'BEGIN {
  printf "  in the database, a request costs the bare call x %.2f; HTTP reaches %.2f of what the database allows\n", b / a, h / a }'
bench_figure "HTTP create: the request's statements in the database / the bare SQL call" "$(awk -v a="$req_rate" -v b="$sql_rate" 'BEGIN { printf "%.3f", a / b }')"
bench_figure "HTTP create through PostgREST / its statements replayed in the database" "$(awk -v a="$http_rate" -v b="$req_rate" 'BEGIN { printf "%.3f", a / b }')"
