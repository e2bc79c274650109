#!/usr/bin/env bash
# Benchmark (never a timed test): does the create path or a status read by slug slow down as
# the tables grow? In a database of its own, the invoices table is grown to each of BENCH_SIZES
# (default 10,000, 1,000,000 and 10,000,000 invoices, each with 3 lines, 2 events, 2 audit rows
# and its slug row, in 8 merchants). The rows past the first 10,000 (made through
# create_invoice) are made by a generator inside the database, set-based, with triggers off
# (copies of real rows with new ids, numbers and slugs, in every status), not through the API.
# At each size, after a quiet start (vacuum analyze, checkpoint), BENCH_RUNS (3) runs measure
#   - create + finalize (pgbench, prepared, 8 clients, one merchant each, BENCH_SECONDS = 10);
#   - invoices.invoice_status(slug) of random existing invoices (pgbench, 8 clients).
# Figures: each size's create rate / the rate at 10,000 and the status latency at 10,000 / the
# latency at that size, run by run (target >= 0.8 at the largest size).
# 10,000,000 invoices take about 25 GB of disk and half an hour to generate on 2 cores.
# Usage: BENCH_SIZES="10000 1000000" bash tests/bench/growth.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/env.sh"
source "$here/lib.sh"
SIZES="${BENCH_SIZES:-10000 1000000 10000000}"
RUNS="${BENCH_RUNS:-3}"
SECONDS_EACH="${BENCH_SECONDS:-10}"
CLIENTS=8
bash "$ROOT/scripts/setup.sh" >/dev/null 2>&1 || bash "$ROOT/scripts/setup.sh"
export PGDATABASE=invoices_bench_growth   # (after setup: it writes the demo's settings for PGDATABASE)
work=$(mktemp -d)
cleanup() { psql_ -d postgres -c "drop database if exists $PGDATABASE with (force)" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
psql_ -d postgres -c "drop database if exists $PGDATABASE with (force)" -c "create database $PGDATABASE" >/dev/null
psql_ -qc "create extension invoices" -c "select invoices.create_merchant('Growth ' || g) from generate_series(1, $CLIENTS) g" >/dev/null
LINES='[{"description": "Consulting", "quantity": 2, "unit_price": "150.00"}, {"description": "Hosting", "quantity": 1, "unit_price": "19.99"}, {"description": "Setup", "quantity": 3, "unit_price": "33.33"}]'
cat > "$work/create.sql" <<SQL
\set m :client_id % $CLIENTS
select invoices.create_invoice(lines => '$LINES', customer_email => 'alice@example.com', tax_rate => 10, send => true)
  from (select set_config('invoices.merchant_id', (select id::text from invoices_internal.merchants order by id offset :m limit 1), false)) acting;
SQL
cat > "$work/status.sql" <<'SQL'
\set k random(1, :n)
select invoices.invoice_status((select slug from bench_slugs where k = :k));
SQL

# the first 10,000 through the API, in every status the generator copies
psql_ -q <<SQL >/dev/null
select count(invoices.create_invoice(lines => '$LINES', customer_email => 'alice@example.com', tax_rate => 10, send => true))
  from invoices_internal.merchants m, generate_series(1, 10000 / $CLIENTS) g,
       lateral (select set_config('invoices.merchant_id', m.id::text, false)) acting;
SQL

grow_to() {  # TOTAL: copies of the API-made rows until the table holds TOTAL invoices
  psql_ -q -v total="$1" <<'SQL' >/dev/null
set session_replication_role = replica;   -- a generator, not a door: no triggers, no key checks
create temp table tmpl as
select distinct on (merchant_id) * from invoices_internal.invoices order by merchant_id, number_seq;
create temp table more as
select m.id as merchant_id, m.next_invoice_number + g - 1 as seq, invoices_internal.uuid_v7() as id,
       invoices_internal.new_slug() as slug,
       (array['pending', 'paid', 'confirmed', 'expired', 'cancelled', 'partial', 'overdue', 'draft'])[1 + g % 8] as status
  from invoices_internal.merchants m,
       generate_series(1, greatest(0, (:total - (select count(*) from invoices_internal.invoices)) / (select count(*) from invoices_internal.merchants))) g;
insert into invoices_internal.invoices (merchant_id, id, number_seq, invoice_number, slug, status, currency, exponent,
  subtotal, discount_amount, tax_rate, tax_amount, total, amount_paid, asset_paid, customer_email, merchant_snapshot,
  issue_date, metadata, expiry_minutes, overpaid, paid_late, created_at, updated_at, finalized_at, lines)
select n.merchant_id, n.id, n.seq, invoices_internal.format_invoice_number(m.invoice_prefix, n.seq), n.slug, n.status,
       t.currency, t.exponent, t.subtotal, t.discount_amount, t.tax_rate, t.tax_amount, t.total, 0, 0, t.customer_email,
       t.merchant_snapshot, t.issue_date, t.metadata, t.expiry_minutes, false, false, now(), now(),
       case when n.status <> 'draft' then now() end, t.lines
  from more n join invoices_internal.merchants m on m.id = n.merchant_id join tmpl t on t.merchant_id = n.merchant_id;
insert into invoices_internal.invoice_lines (merchant_id, invoice_id, position, description, quantity, unit_price, amount)
select n.merchant_id, n.id, l.position, l.description, l.quantity, l.unit_price, l.amount
  from more n cross join (values (1, 'Consulting', 2, 150.00, 300.00), (2, 'Hosting', 1, 19.99, 19.99), (3, 'Setup', 3, 33.33, 99.99))
       l(position, description, quantity, unit_price, amount);
insert into invoices_internal.invoice_slugs (slug, merchant_id, invoice_id) select slug, merchant_id, id from more;
insert into invoices_internal.events (merchant_id, id, event, invoice_id, data)
select n.merchant_id, invoices_internal.uuid_v7(), e, n.id, jsonb_build_object('id', n.id, 'status', n.status)
  from more n cross join unnest('{invoice.created,invoice.finalized}'::text[]) e;
insert into invoices_internal.audit_log (merchant_id, invoice_id, from_status, to_status, event, actor)
select n.merchant_id, n.id, f, t, e, 'generator'
  from more n cross join (values (null, 'draft', 'invoice.created'), ('draft', 'pending', 'invoice.finalized')) v(f, t, e);
update invoices_internal.merchants m set next_invoice_number = x.next
  from (select merchant_id, max(seq) + 1 as next from more group by 1) x where x.merchant_id = m.id;
SQL
}
sample() {  # 10,000 random finalized invoices' slugs, for the status reads
  psql_ -qc "drop table if exists bench_slugs" \
        -c "create table bench_slugs as select row_number() over () as k, slug from
              (select slug from invoices_internal.invoices where status <> 'draft' order by random() limit 10000) s" \
        -c "create index on bench_slugs (k)" >/dev/null 2>&1
  psql_ -tAc "select count(*) from bench_slugs"
}
measure() {  # -> "create_tps status_latency_ms"
  psql_ -qc "vacuum analyze" -c "checkpoint" >/dev/null 2>&1
  sleep 2
  local c s
  c=$("$PG_BIN/pgbench" -n -M prepared -c $CLIENTS -j 2 -T "$SECONDS_EACH" -f "$work/create.sql" 2>&1 | awk '/^tps/ {print int($3)}')
  s=$("$PG_BIN/pgbench" -n -M prepared -c $CLIENTS -j 2 -T "$SECONDS_EACH" -D n="$sampled" -f "$work/status.sql" 2>&1 | awk '/^latency average/ {print $4}')
  echo "$c $s"
}
declare -A creates statuses
first=""
for size in $SIZES; do
  grow_to "$size"
  have=$(psql_ -tAc "select count(*) from invoices_internal.invoices")
  disk=$(psql_ -tAc "select pg_size_pretty(pg_database_size(current_database()))")
  echo "size $size: $have invoices, database $disk"
  sampled=$(sample)
  for r in $(seq "$RUNS"); do
    read -r c s <<< "$(measure)"
    creates[$size.$r]=$c; statuses[$size.$r]=$s
    echo "  run $r: create + finalize $c tx/s, invoice_status by slug ${s} ms on average"
  done
  if [ -z "$first" ]; then first=$size; continue; fi
  cr=(); sr=()
  for r in $(seq "$RUNS"); do
    cr+=("$(awk -v a="${creates[$size.$r]}" -v b="${creates[$first.$r]}" 'BEGIN { printf "%.3f", a / b }')")
    sr+=("$(awk -v a="${statuses[$first.$r]}" -v b="${statuses[$size.$r]}" 'BEGIN { printf "%.3f", a / b }')")
    bench_figure "growth: create rate at $size invoices / at $first" "${cr[-1]}" ">= 0.8"
    bench_figure "growth: status-by-slug latency at $first / at $size invoices" "${sr[-1]}" ">= 0.8"
  done
  echo "  create rate at $size / at $first: $(bench_stats "${cr[@]}"); status latency at $first / at $size: $(bench_stats "${sr[@]}")"
done
