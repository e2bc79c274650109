#!/usr/bin/env bash
# The extension on a real Citus cluster (scripts/citus.sh start): the tables distributed as the
# plan says, tenancy over SQL and HTTP (0 rows of another merchant, row-level security on the
# worker nodes), gapless numbers under concurrent creators, and the hot statements routed to one
# shard: with citus.multi_task_query_log_level = error any statement touching several shards
# fails, so create, finalize, the status poll by slug, a filtered list, the API-key check and
# the worker's claim of one merchant's deliveries each run on a single shard.
set -euo pipefail
export PGPORT="${CITUS_COORDINATOR_PORT:-5440}" PGRST_PORT="${CITUS_PGRST_PORT:-3100}"
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
URL="http://127.0.0.1:$PGRST_PORT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
call() {  # METHOD PATH [curl args]: $status, body in $work/body
  local method=$1 path=$2; shift 2
  status=$(curl -s -o "$work/body" -w '%{http_code}' -X "$method" "$URL$path" "$@")
}
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'d': d}))" "$work/body" "$1"; }
json=(-H 'Content-Type: application/json')

section "the cluster"
expect_eq "two active workers" "$(q "select count(*) from pg_dist_node where noderole = 'primary' and isactive and groupid > 0")" 2
expect_eq "every table of the plan distributed as it says" \
  "$(q "select count(*) from invoices_internal.distribution_plan p
         where p.kind <> 'local' and not exists (
           select 1 from pg_dist_partition d where d.logicalrelid = p.table_name::regclass
              and d.partmethod = case p.kind when 'reference' then 'n' else 'h' end)")" 0
expect_eq "the local tables stay on the coordinator" \
  "$(q "select count(*) from invoices_internal.distribution_plan p join pg_dist_partition d on d.logicalrelid = p.table_name::regclass where p.kind = 'local'")" 0
expect_eq "tenant tables colocated with merchants" \
  "$(q "select count(distinct d.colocationid) from invoices_internal.distribution_plan p join pg_dist_partition d on d.logicalrelid = p.table_name::regclass where p.kind = 'tenant'")" 1
expect_eq "the background worker runs on the coordinator" \
  "$(q "select count(*) from pg_stat_activity where backend_type = 'invoices worker'")" 1
for port in ${CITUS_WORKER_PORTS:-5441 5442}; do
  expect_eq "  and not on the worker node :$port" \
    "$("$PG_BIN/psql" -X -h 127.0.0.1 -p "$port" -U postgres -d invoices -tAc "select count(*) from pg_stat_activity where backend_type = 'invoices worker'")" 0
done

section "two merchants"
run=$(date +%s%N)
A=$(q "select invoices.create_merchant('citus A $run')->>'id'")
B=$(q "select invoices.create_merchant('citus B $run')->>'id'")
A_KEY=$(q "select invoices_internal.insert_api_key('$A', 'citus', '{read,write,webhooks,admin}', 100000)->>'api_key'")
B_KEY=$(q "select invoices_internal.insert_api_key('$B', 'citus', '{read,write,webhooks,admin}', 100000)->>'api_key'")
call POST /rpc/create_invoice -H "X-API-Key: $B_KEY" "${json[@]}" \
  -d '{"lines": [{"description": "Secret work of B", "unit_price": "999.00"}], "send": true}'
expect_eq "B creates and finalizes an invoice over HTTP" "$status $(field "d['status']")" "200 pending"
B_ID=$(field "d['id']"); B_SLUG=$(field "d['slug']")
RECEIVER_PORT="${WEBHOOK_RECEIVER_PORT:-18950}"
python3 "$(dirname "${BASH_SOURCE[0]}")/../stubs/webhook_receiver.py" "$RECEIVER_PORT" "$work/received.jsonl" &
receiver=$!
trap 'kill $receiver 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -s "http://127.0.0.1:$RECEIVER_PORT/control/secret?name=probe&secret=x" >/dev/null 2>&1 && break; sleep 0.1; done
call POST /rpc/create_webhook_endpoint -H "X-API-Key: $A_KEY" "${json[@]}" \
  -d "{\"url\": \"http://127.0.0.1:$RECEIVER_PORT/ok/citus\"}"
expect_eq "A registers a webhook endpoint" "$status" 200
call POST /rpc/create_invoice -H "X-API-Key: $A_KEY" "${json[@]}" \
  -d '{"lines": [{"description": "Widget", "quantity": 2, "unit_price": "25.00"}], "tax_rate": 10}'
expect_eq "A creates a draft over HTTP" "$status $(field "d['total']")" "200 55.00"
A_NUMBER=$(field "d['invoice_number']")
call POST /rpc/finalize_invoice -H "X-API-Key: $A_KEY" "${json[@]}" -d "{\"ref\": \"$A_NUMBER\"}"
expect_eq "A finalizes it" "$status $(field "d['status']")" "200 pending"

if wait_for 20 "select count(*) = 2 from invoices_internal.webhook_deliveries where merchant_id = '$A' and status = 'delivered'"; then
  ok "the worker delivers A's two events from the cluster"
else
  bad "the worker delivers A's two events from the cluster" "$(q "select status, attempts, last_error from invoices_internal.webhook_deliveries where merchant_id = '$A'")"
fi
expect_eq "  the receiver got invoice.created and invoice.finalized" \
  "$(python3 -c "import json,sys; print(','.join(sorted(json.loads(json.loads(l)['body'])['event'] for l in open(sys.argv[1]) if l.strip())))" "$work/received.jsonl" 2>&1)" \
  "invoice.created,invoice.finalized"

section "tenancy over HTTP"
call GET "/invoices?select=id" -H "X-API-Key: $A_KEY"
expect_eq "A lists only its own invoice" "$status $(field "len(d)")" "200 1"
call GET "/invoices?id=eq.$B_ID" -H "X-API-Key: $A_KEY"
expect_eq "A reading B's invoice by id: 0 rows" "$status $(field "len(d)")" "200 0"
call GET "/audit_log?invoice_id=eq.$B_ID" -H "X-API-Key: $A_KEY"
expect_eq "A reading B's audit log: 0 rows" "$status $(field "len(d)")" "200 0"
call POST /rpc/finalize_invoice -H "X-API-Key: $A_KEY" "${json[@]}" -d "{\"ref\": \"$B_SLUG\"}"
expect_eq "A finalizing B's invoice by its slug: 404" "$status" 404
call POST /rpc/cancel_invoice -H "X-API-Key: $A_KEY" "${json[@]}" -d "{\"ref\": \"$B_ID\"}"
expect_eq "A cancelling B's invoice by its id: 404" "$status" 404
call GET "/invoices?select=id" -H "X-API-Key: not-a-key"
expect_eq "an unknown key: 401" "$status" 401
call POST /rpc/invoice_status "${json[@]}" -d "{\"ref\": \"$B_SLUG\"}"
expect_eq "the payer's status poll by slug, without a key" "$status $(field "d['status']")" "200 pending"
call POST /rpc/create_invoice -H "X-API-Key: $A_KEY" "${json[@]}" -d '{"lines": [{"description": "x", "unit_price": "-1"}]}'
expect_eq "bad input: the same error as on one node" "$status $(field "d['code']")" "400 22023"

section "tenancy over SQL"
expect_eq "act_as(A): B's invoice is not in invoices.invoices" \
  "$(psql_ -tA -c "select invoices.act_as('$A')" -c "select count(*) from invoices.invoices where id = '$B_ID'" | tail -1)" 0
expect_eq "act_as(A): A's own invoice is" \
  "$(psql_ -tA -c "select invoices.act_as('$A')" -c "select count(*) from invoices.invoices" | tail -1)" 1
expect_eq "act_as(A): every view and analytics answer (multi-shard is fine there)" \
  "$(psql_ -tA -c "select invoices.act_as('$A')" -c "select (select count(*) from invoices.receivables_aging) >= 0 and (select count(*) from invoices.revenue_by_month) >= 0 and (select count(*) from invoices.events) = 2 and (select count(*) from invoices.unmatched_payments) = 0" | tail -1)" t
reader="citus_reader_$run"
q "create role $reader login; grant usage on schema invoices_internal to $reader; grant select on invoices_internal.invoices to $reader" >/dev/null
# (a schema belonging to an extension is not Citus' to propagate: its grants are made per node)
q "select run_command_on_workers('grant usage on schema invoices_internal to $reader')" >/dev/null
expect_eq "a role granted the table directly: row-level security on the workers shows it nothing" \
  "$("$PG_BIN/psql" -X -h 127.0.0.1 -p "$PGPORT" -U "$reader" -d invoices -tAc "select count(*) from invoices_internal.invoices")" 0
q "drop owned by $reader; drop role $reader" >/dev/null

section "gapless numbers under 8 concurrent creators"
pids=()
for n in $(seq 8); do
  psql_ -tA -c "select invoices.act_as('$A')" \
    -c "select invoices.create_invoice('[{\"description\": \"c$n\", \"unit_price\": \"1.00\"}]'::jsonb)->>'invoice_number' from generate_series(1, 5)" \
    > "$work/creator-$n" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
expect_eq "41 invoices of A, numbered 1 to 41 without a gap" \
  "$(q "select count(*) || ' ' || min(number_seq) || ' ' || max(number_seq) || ' ' || count(distinct number_seq) from invoices_internal.invoices where merchant_id = '$A'")" "41 1 41 41"
expect_eq "each invoice's slug routes to it" \
  "$(q "select string_agg(slug || ' ' || invoice_id, ',' order by slug) from invoices_internal.invoice_slugs where merchant_id = '$A'" | md5sum)" \
  "$(q "select string_agg(slug || ' ' || id, ',' order by slug) from invoices_internal.invoices where merchant_id = '$A'" | md5sum)"

section "the hot statements touch one shard"
routed() {  # NAME SQL...: runs the statements with multi-shard statements refused
  local name=$1; shift
  local args=() s
  for s in "$@"; do args+=(-c "$s"); done
  if out=$(PGOPTIONS="-c citus.multi_task_query_log_level=error" psql_ -tA "${args[@]}" 2>&1); then ok "$name"
  else bad "$name" "$(echo "$out" | grep -m3 -i 'error\|detail')"; fi
}
routed "create an invoice" "select invoices.act_as('$A')" \
  "select invoices.create_invoice('[{\"description\": \"routed\", \"unit_price\": \"3.00\"}]'::jsonb)"
last=$(q "select invoice_number from invoices_internal.invoices where merchant_id = '$A' order by number_seq desc limit 1")
routed "finalize it" "select invoices.act_as('$A')" "select invoices.finalize_invoice('$last')"
routed "the status poll by slug, without a key" "select invoices.invoice_status('$B_SLUG')"
routed "a filtered list of one merchant's invoices" "select invoices.act_as('$A')" \
  "select count(*) from invoices.invoices where merchant_id = '$A' and status = 'pending'"
routed "the API-key check of a request" \
  "begin" "select set_config('request.method', 'GET', true), set_config('request.headers', '{\"x-api-key\": \"$A_KEY\"}', true), set_config('request.path', '/invoices', true)" \
  "select invoices_internal.http_pre_request()" "commit"
due=$(q "select coalesce(array_agg(id), '{}') from invoices_internal.webhook_deliveries where merchant_id = '$A' and status = 'pending'")
routed "the worker's claim of one merchant's deliveries" \
  "select count(*) from invoices_internal.claim_merchant_deliveries('$A', '$due'::bigint[], now() + interval '1 minute')"
explain=$(psql_ -tA -c "explain select status from invoices_internal.invoices where merchant_id = '$A' and invoice_number = '$last'")
case "$explain" in *"Task Count: 1"*) ok "EXPLAIN: a router plan, one task" ;; *) bad "EXPLAIN: a router plan, one task" "$explain" ;; esac

finish
