#!/usr/bin/env bash
# Benchmark: pgbench, 8 clients, 30 s each (BENCH_SECONDS, BENCH_CLIENTS to change):
#   (a) create + finalize an invoice with 3 lines through invoices.create_invoice(send => true)
#   (b) a bare INSERT of the same rows into plain tables, in one statement: the rows (a) writes
#       (the invoice, its 3 lines, its 2 audit entries, its 2 outbox events, the queued e-mail
#       to the customer, and the merchant's number counter), with no trigger, check or key
#       beyond a primary key
# Prints both rates and their ratio (target: a/b >= 0.6), and for reference the ratio against
# a bare INSERT of the invoice and its lines alone.
# (a) is run twice: all clients on one merchant (its gapless counter serializes creators), and
# one merchant per client (how a multi-tenant deployment sees it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SECONDS_EACH="${BENCH_SECONDS:-30}"
CLIENTS="${BENCH_CLIENTS:-8}"
DB=invoices_bench
psql_ -d postgres -c "drop database if exists $DB" -c "create database $DB" >/dev/null 2>&1
psql_ -d $DB >/dev/null <<'SQL'
create extension invoices;
-- (b) plain tables with the same columns, no triggers, checks or keys beyond a primary key
create schema plain;
create table plain.invoices (like invoices_internal.invoices including defaults);
alter table plain.invoices add primary key (merchant_id, id);
create table plain.invoice_lines (like invoices_internal.invoice_lines including defaults);
alter table plain.invoice_lines add primary key (merchant_id, invoice_id, position);
create table plain.audit_log (merchant_id uuid, id bigint generated always as identity, invoice_id uuid,
  from_status text, to_status text, event text, actor text, at timestamptz default clock_timestamp(),
  primary key (merchant_id, id));
create table plain.events (like invoices_internal.events including defaults);
alter table plain.events add primary key (merchant_id, id);
create table plain.emails (like invoices_internal.emails including defaults including identity);
alter table plain.emails add primary key (merchant_id, id);
create table plain.counters (merchant_id uuid primary key, next_invoice_number bigint not null);
select invoices.create_merchant('Bench ' || g) from generate_series(1, 8) g;
SQL
work=$(mktemp -d)
LINES='[{"description": "Consulting", "quantity": 2, "unit_price": "150.00"}, {"description": "Hosting", "quantity": 1, "unit_price": "19.99"}, {"description": "Setup", "quantity": 3, "unit_price": "33.33"}]'
FIRST=$(psql_ -d $DB -tAc "select id from invoices_internal.merchants order by created_at, id limit 1")
# The merchant is chosen in the same statement (one round trip, like the bare INSERT): a
# volatile set_config in a FROM subquery runs before the call.
cat > "$work/one_merchant.sql" <<SQL
select invoices.create_invoice(lines => '$LINES', customer_email => 'alice@example.com', tax_rate => 10, send => true)
  from (select set_config('invoices.merchant_id', '$FIRST', false)) acting;
SQL
cat > "$work/per_client.sql" <<SQL
\set m :client_id % 8
select invoices.create_invoice(lines => '$LINES', customer_email => 'alice@example.com', tax_rate => 10, send => true)
  from (select set_config('invoices.merchant_id', (select id::text from invoices_internal.merchants order by id offset :m limit 1), false)) acting;
SQL
EVENT='{"id": "x", "invoice_number": "INV-1", "status": "pending", "currency": "USD", "total": "461.98"}'
# one merchant (counter row) per client, like (a) with 8 merchants
cat > "$work/plain.sql" <<SQL
\\set m :client_id % 8
with c as (
  update plain.counters set next_invoice_number = next_invoice_number + 1
   where merchant_id = (select merchant_id from plain.counters order by merchant_id offset :m limit 1)
  returning merchant_id, next_invoice_number - 1 as seq),
i as (
  insert into plain.invoices (merchant_id, id, number_seq, invoice_number, slug, status, currency, exponent,
    subtotal, discount_amount, tax_rate, tax_amount, total, customer_email, merchant_snapshot, finalized_at)
  select c.merchant_id, gen_random_uuid(), c.seq, 'INV-' || c.seq, md5(random()::text),
    'pending', 'USD', 2, 419.98, 0.00, 10, 42.00, 461.98, 'alice@example.com', '{"name": "Bench"}', now()
    from c
  returning merchant_id, id),
a as (
  insert into plain.audit_log (merchant_id, invoice_id, from_status, to_status, event, actor)
  select i.merchant_id, i.id, f, t, e, session_user
    from i, (values (null, 'draft', 'invoice.created'), ('draft', 'pending', 'invoice.finalized')) v(f, t, e)),
ev as (
  insert into plain.events (merchant_id, id, event, invoice_id, data)
  select i.merchant_id, gen_random_uuid(), e, i.id, '$EVENT'
    from i, (values ('invoice.created'), ('invoice.finalized')) v(e)),
em as (
  insert into plain.emails (merchant_id, invoice_id, recipient, max_attempts)
  select i.merchant_id, i.id, 'alice@example.com', 6 from i)
insert into plain.invoice_lines (merchant_id, invoice_id, position, description, quantity, unit_price, amount)
select i.merchant_id, i.id, p, d, q, u, a
  from i, (values (1, 'Consulting', 2, 150.00, 300.00), (2, 'Hosting', 1, 19.99, 19.99), (3, 'Setup', 3, 33.33, 99.99)) v(p, d, q, u, a);
SQL
# for reference: the invoice and its lines alone
cat > "$work/plain_min.sql" <<SQL
with i as (
  insert into plain.invoices (merchant_id, id, number_seq, invoice_number, slug, status, currency, exponent,
    subtotal, discount_amount, tax_rate, tax_amount, total, customer_email, merchant_snapshot, finalized_at)
  values ('$FIRST', gen_random_uuid(), nextval('plain_seq'), 'INV-' || currval('plain_seq'), md5(random()::text),
    'pending', 'USD', 2, 419.98, 0.00, 10, 42.00, 461.98, 'alice@example.com', '{"name": "Bench"}', now())
  returning merchant_id, id)
insert into plain.invoice_lines (merchant_id, invoice_id, position, description, quantity, unit_price, amount)
select i.merchant_id, i.id, p, d, q, u, a
  from i, (values (1, 'Consulting', 2, 150.00, 300.00), (2, 'Hosting', 1, 19.99, 19.99), (3, 'Setup', 3, 33.33, 99.99)) v(p, d, q, u, a);
SQL
psql_ -d $DB -c "insert into plain.counters select id, 1 from invoices_internal.merchants" >/dev/null
psql_ -d $DB -c "create sequence plain_seq" >/dev/null
# Each run starts from a quiet database: the previous run's tables vacuumed and analyzed (so
# autovacuum does not work on them during the next run) and a checkpoint (so no run pays for
# another's dirty pages). (a) on 8 merchants runs after (a) on one merchant has filled the
# tables: analyzed empty, they would give its cached plans sequential scans for a while.
run() {
  psql_ -d $DB -qc "vacuum analyze" -c "checkpoint" >/dev/null
  "$PG_BIN/pgbench" -n -M "$1" -c "$CLIENTS" -j 2 -T "$SECONDS_EACH" -f "$2" "$DB" 2>&1 | awk '/^tps/ {print int($3)}'
}
echo "pgbench: $CLIENTS clients, ${SECONDS_EACH}s per run"
# Headline: pgbench's default (simple) protocol. Then prepared statements, where the bare
# INSERT no longer pays for parsing and planning its statement each time.
for mode in simple prepared; do
  plain=$(run $mode "$work/plain.sql")
  plain_min=$(run $mode "$work/plain_min.sql")
  one=$(run $mode "$work/one_merchant.sql")
  per=$(run $mode "$work/per_client.sql")
  echo "[$mode protocol]"
  echo "  (b) bare INSERT of the same rows (invoice, 3 lines, 2 audit, 2 events, e-mail, counter): $plain tx/s"
  echo "      bare INSERT of the invoice and its 3 lines only:                                 $plain_min tx/s"
  echo "  (a) create_invoice(send => true), 8 merchants:                                        $per tx/s"
  echo "  (a) create_invoice(send => true), one merchant:                                       $one tx/s"
  awk -v a="$per" -v b="$plain" 'BEGIN { printf "  ratio a/b, 8 merchants:  %.2f (target >= 0.6)\n", a / b }'
  awk -v a="$one" -v b="$plain" 'BEGIN { printf "  ratio a/b, one merchant: %.2f (bounded by the gapless counter held to commit)\n", a / b }'
  awk -v a="$per" -v b="$plain_min" 'BEGIN { printf "  ratio a / (invoice + lines only), 8 merchants: %.2f\n", a / b }'
  if [ $mode = simple ]; then target=">= 0.8"; else target=">= 0.5"; fi
  bench_figure "create + finalize / bare INSERT of the same rows, $mode protocol" "$(awk -v a="$per" -v b="$plain" 'BEGIN { printf "%.3f", a / b }')" "$target"
  bench_figure "create + finalize / bare INSERT of the invoice and lines, $mode protocol" "$(awk -v a="$per" -v b="$plain_min" 'BEGIN { printf "%.3f", a / b }')"
done
# Bytes on disk per invoice (tables, indexes, TOAST), after the runs: the rows create_invoice
# writes against the bare rows of (b). The plain invoices and lines come from both bare runs,
# the plain audit rows, events and e-mails from (b) only: each is divided by its own count.
psql_ -d $DB -qc "vacuum analyze" >/dev/null
read -r real bare < <(psql_ -d $DB -tA -F ' ' <<'SQL'
select (select sum(pg_total_relation_size(t))::numeric
          from unnest('{invoices_internal.invoices,invoices_internal.invoice_lines,invoices_internal.audit_log,
                        invoices_internal.events,invoices_internal.emails,invoices_internal.invoice_slugs}'::regclass[]) t)
       / (select count(*) from invoices_internal.invoices),
       (select sum(pg_total_relation_size(t))::numeric from unnest('{plain.invoices,plain.invoice_lines}'::regclass[]) t)
       / (select count(*) from plain.invoices)
       + (select sum(pg_total_relation_size(t))::numeric from unnest('{plain.audit_log,plain.events,plain.emails}'::regclass[]) t)
       / (select count(*) from plain.emails)
SQL
)
awk -v r="$real" -v b="$bare" 'BEGIN { printf "bytes on disk per invoice: %d, bare rows %d, ratio %.2f (target <= 1.5)\n", r, b, r / b }'
bench_figure "bytes on disk per invoice / the bare rows'" "$(awk -v r="$real" -v b="$bare" 'BEGIN { printf "%.3f", r / b }')" "<= 1.5"
rm -rf "$work"
psql_ -d postgres -c "drop database $DB" >/dev/null
