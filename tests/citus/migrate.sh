#!/usr/bin/env bash
# Moving from one node (scripts/citus.sh start first): a database that holds data on one
# PostgreSQL (merchants, invoices in every state, payments, webhook deliveries in flight) is
# distributed in place with invoices.distribute_on_citus(). Nothing is lost: every table's
# count and every money total are the same before and after, and the rules still hold after.
set -euo pipefail
export PGPORT="${CITUS_COORDINATOR_PORT:-5440}"
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
DB=invoices_migrate
bash "$ROOT/scripts/citus.sh" database $DB --undistributed
psql_ -d $DB -c "alter database $DB set invoices.allow_private_destinations = on" >/dev/null

section "a single-node database with data"
psql_ -d $DB -q <<'SQL'
\set QUIET on
select invoices.set_rate('BTC', 'USD', 50000) \gset
select invoices.configure_chain('regtest-migrate', 'bitcoin', 'http://127.0.0.1:9', '{BTC}', active => false) \gset
select (invoices.create_merchant(m)) ->> 'id' as mid from (values ('Moving A')) v(m) \gset
select invoices.act_as(:'mid') \gset
select invoices.create_wallet('BTC', address => 'bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq') \gset
select invoices.create_webhook_endpoint('http://127.0.0.1:9/in-flight') \gset
select invoices.create_invoice('[{"description": "draft", "unit_price": "12.50"}]'::jsonb, tax_rate => 20) \gset
select invoices.create_invoice('[{"description": "cancelled", "unit_price": "30.00"}]'::jsonb, send => true) ->> 'id' as c \gset
select invoices.cancel_invoice(:'c') \gset
select invoices.create_invoice('[{"description": "paid in BTC", "unit_price": "100.00"}]'::jsonb, asset => 'BTC', send => true) ->> 'id' as p \gset
insert into invoices_internal.payments (merchant_id, chain, txid, output_index, address, address_id, invoice_id,
                                        asset, amount_base, amount, status, block_height, block_hash)
select i.merchant_id, 'regtest-migrate', 'tx-migrate', 0, i.deposit_address, i.address_id, i.id, 'BTC', 200000, 0.002,
       'in_block', 100, 'h'
  from invoices_internal.invoices i where i.id = :'p';
select invoices_internal.settle_invoice(:'mid', :'p') \gset
select (invoices.create_merchant('Moving B')) ->> 'id' as mid2 \gset
select invoices.act_as(:'mid2') \gset
select invoices.create_invoice('[{"description": "B", "quantity": 3, "unit_price": "9.99"}]'::jsonb, send => true) \gset
SQL
facts() {
  psql_ -d $DB -tA <<'SQL'
select string_agg(t || '=' || n, ' ' order by t) from (
  select 'merchants' t, count(*)::text n from invoices_internal.merchants
  union all select 'invoices', count(*) || '/' || sum(total) || '/' || sum(amount_paid) from invoices_internal.invoices
  union all select 'statuses', string_agg(status, ',' order by status) from invoices_internal.invoices
  union all select 'lines', count(*) || '/' || sum(amount) from invoices_internal.invoice_lines
  union all select 'quotes', count(*) || '/' || sum(asset_amount) from invoices_internal.quotes
  union all select 'payments', count(*) || '/' || sum(amount) from invoices_internal.payments
  union all select 'audit', count(*)::text from invoices_internal.audit_log
  union all select 'events', count(*)::text from invoices_internal.events
  union all select 'deliveries', count(*) || '/' || count(*) filter (where status = 'pending') from invoices_internal.webhook_deliveries
  union all select 'slugs', count(*)::text from invoices_internal.invoice_slugs
  union all select 'keys', count(*)::text from invoices_internal.api_keys
  union all select 'wallets', count(*)::text from invoices_internal.wallets
  union all select 'addresses', count(*)::text from invoices_internal.addresses) f
SQL
}
before=$(facts)
echo "  $before"
check "it holds every kind of row (a paid invoice, deliveries in flight)" \
  bash -c 'grep -q "statuses=cancelled,draft,paid,pending" <<< "$1" && grep -q "deliveries=[1-9][0-9]*/[1-9]" <<< "$1"' _ "$before"

section "distributed in place"
psql_ -d $DB -tAc "select invoices.distribute_on_citus()" > /dev/null
expect_eq "every table is on the workers now" \
  "$(psql_ -d $DB -tAc "select count(*) from invoices_internal.distribution_plan p where p.kind <> 'local' and not exists (select 1 from pg_dist_partition d where d.logicalrelid = p.table_name::regclass)")" 0
expect_eq "every count and total is the same" "$(facts)" "$before"
expect_eq "the coordinator's local copies are emptied" \
  "$(psql_ -d $DB -tAc "select sum(pg_relation_size(table_name::regclass)) from invoices_internal.distribution_plan where kind <> 'local'")" 0
expect_eq "the rules still hold: a draft cannot become paid" \
  "$(psql_ -d $DB -tAc "update invoices_internal.invoices set status = 'paid' where status = 'draft'" 2>&1 | grep -o 'illegal invoice status transition' | head -1)" \
  "illegal invoice status transition"
m=$(psql_ -d $DB -tAc "select id from invoices_internal.merchants where name = 'Moving A'")
expect_eq "and the merchant works on: a new invoice gets the next number" \
  "$(psql_ -d $DB -tA -c "select invoices.act_as('$m')" -c "select invoices.create_invoice('[{\"description\": \"after\", \"unit_price\": \"1.00\"}]'::jsonb)->>'invoice_number'" | tail -1)" "INV-0004"
bash "$ROOT/scripts/citus.sh" drop-database $DB
finish
