#!/usr/bin/env bash
# The main job for now: a merchant and an invoice created through the SQL API, printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
psql_ <<'SQL'
\pset pager off
\echo
\echo '== a merchant (reused on later runs) =='
select coalesce(
         (select id from invoices_internal.merchants where name = 'Demo Coffee Roasters' limit 1),
         (invoices.create_merchant('Demo Coffee Roasters', 'billing@coffee.example',
                                   '1 Roastery Lane, Portland', 'USD', 'DEMO') ->> 'id')::uuid) as merchant_id \gset
select invoices.act_as(:'merchant_id');
\echo
\echo '== an invoice: 2 x 18.50 + 1 x 42.00, 10% discount off 79.00, 8.25% tax, finalized at once =='
select jsonb_pretty(invoices.create_invoice(
  lines => '[{"description": "Ethiopia Yirgacheffe 1 kg", "quantity": 2, "unit_price": "18.50"},
             {"description": "Grinder service", "unit_price": 42}]',
  customer_email => 'alice@example.com', customer_name => 'Alice Smith', customer_company => 'Acme Inc',
  discount_amount => 7.90, tax_rate => 8.25, due_date => current_date + 30,
  notes => 'Thank you for your business!', metadata => '{"order": "demo"}', send => true)) as invoice;
\echo
\echo '== the invoices view (what PostgREST will list) =='
select invoice_number, status, currency, subtotal, discount_amount, tax_amount, total, amount_due, hosted_url
  from invoices.invoices order by created_at desc limit 5;
\echo
\echo '== the audit log of the newest invoice =='
select invoice_number, from_status, to_status, event, actor, at
  from invoices.audit_log
 where invoice_id = (select id from invoices.invoices order by created_at desc limit 1)
 order by id;
SQL
