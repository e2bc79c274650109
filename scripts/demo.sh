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
\echo '== a BTC rate (manual) and an invoice quoted in BTC, rounded up to the satoshi =='
select invoices.set_rate('BTC', 'USD', 67187.33, 'demo') ->> 'median_rate' as btc_usd;
select j ->> 'invoice_number' as invoice, j ->> 'total' as total_usd, j ->> 'asset_amount' as btc,
       j ->> 'rate' as rate, j ->> 'expires_at' as pay_before
  from invoices.create_invoice(lines => '[{"description": "Roastery audit", "unit_price": "220.00"}]',
                               asset => 'BTC', customer_email => 'bob@example.com', send => true) j;
\echo
\echo '== the background worker =='
select task, runs, failures, last_run_at, last_result from invoices.worker_status order by task;
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

# The HTTP door: a demo API key (a new one each run; earlier ones stay valid until revoked).
KEY=$(psql_ -tA <<'SQL'
select invoices.act_as(id) is not null as acting from invoices_internal.merchants where name = 'Demo Coffee Roasters' limit 1 \gset
select invoices.create_api_key('demo ' || now()::text, '{read,write}') ->> 'api_key';
SQL
)
echo
echo "== over HTTP: POST $PGRST_URL/rpc/create_invoice with X-API-Key (the Living Invoices payload) =="
curl -s "$PGRST_URL/rpc/create_invoice" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
  -d '{"to_email": "customer@example.com", "items": [{"description": "Web Design", "unit_price": 500}], "send": true}' \
  | tee "$LOCAL_DIR/demo-invoice.json" \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); print({k: d[k] for k in ("invoice_number", "status", "total", "hosted_url")})'
slug=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["slug"])' "$LOCAL_DIR/demo-invoice.json")
echo
echo "== its PDF and hosted page, public by slug through the web front ($PUBLIC_URL) =="
curl -s -o "$LOCAL_DIR/demo-invoice.pdf" -w "PDF  $PUBLIC_URL/rpc/invoice_pdf?ref=$slug -> %{http_code} %{content_type}, %{size_download} bytes (.local/demo-invoice.pdf)\n" \
  "$PUBLIC_URL/rpc/invoice_pdf?ref=$slug"
curl -s -o /dev/null -w "page $PUBLIC_URL/i/$slug -> %{http_code} %{content_type}\n" "$PUBLIC_URL/i/$slug"
echo
echo "== GET $PGRST_URL/invoices?status=eq.pending&limit=3 with Authorization: Bearer (rate-limit headers shown) =="
curl -s -D - "$PGRST_URL/invoices?status=eq.pending&limit=3&select=invoice_number,status,total&order=created_at.desc" \
  -H "Authorization: Bearer $KEY" | grep -i -E '^x-ratelimit|^\[' || true
echo
echo "API key for trying it yourself (shown once): $KEY"
