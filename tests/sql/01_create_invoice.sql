\set SHOW_CONTEXT never
select invoices.create_merchant('Acme SaaS', 'billing@acme.test', '123 Main St, San Francisco', 'USD') ->> 'id' as acme \gset
select invoices.act_as(:'acme') ->> 'name' as acting_for;

-- The BTPay example: 1 x 150.00 + 2 x 25.00 at tax_rate 10 -> 220.00
select inv->>'invoice_number' as number, inv->>'status' as status, inv->>'currency' as currency,
       inv->>'subtotal' as subtotal, inv->>'tax_amount' as tax, inv->>'discount_amount' as discount,
       inv->>'total' as total, inv->>'amount_paid' as paid, inv->>'amount_due' as due,
       inv->'lines' as lines
  from invoices.create_invoice(
         lines => '[{"description": "Consulting (1 hour)", "quantity": 1, "unit_price": "150.00"},
                    {"description": "Hardware wallet setup", "quantity": 2, "unit_price": "25.00"}]',
         customer_email => 'alice@example.com', customer_name => 'Alice',
         customer_company => 'Acme Inc', currency => 'USD', tax_rate => 10,
         notes => 'Payment due within 30 days') as inv;

-- The invoice object carries the field names of the original contract.
select string_agg(k, ', ' order by k) as invoice_object_fields
  from jsonb_object_keys(invoices.invoice_status('INV-0001')) k;
select array_agg(k order by k) @> array['id','merchant_id','invoice_number','slug','status','currency',
       'subtotal','tax_rate','tax_amount','discount_amount','total','amount_paid','amount_due','lines',
       'customer_email','customer_name','customer_company','issue_date','due_date','notes','metadata',
       'hosted_url','pdf_url','created_at','finalized_at','paid_at','confirmed_at','expired_at',
       'cancelled_at','asset','asset_amount','rate','address','expires_at','confirmations'] as has_spec_fields,
       array_agg(k order by k) @> array['callback_secret'] as leaks_secret
  from invoices.invoices i, jsonb_object_keys(to_jsonb(i)) k
 where i.invoice_number = 'INV-0001';

-- Hosted URL from invoices.public_base_url, slug random and URL-safe, UUIDv7 id.
select hosted_url = 'http://127.0.0.1:3000/i/' || slug as hosted_url_ok,
       slug ~ '^[2-9a-z]{16}$' as slug_ok,
       substr(id::text, 15, 1) = '7' as uuid_v7,
       merchant->>'name' as merchant_name, issue_date = current_date as issued_today
  from invoices.invoices where invoice_number = 'INV-0001';

-- Living Invoices payload: items + to_email, numbers as plain JSON numbers, quantity default 1.
select inv->>'invoice_number' as number, inv->>'total' as total, inv->>'customer_email' as email,
       inv->>'status' as status
  from invoices.create_invoice(
         items => '[{"description": "Logo Design", "unit_price": 300},
                    {"description": "Business Cards (500)", "unit_price": 75, "quantity": 2}]',
         to_email => 'alice@example.com', to_name => 'Alice Smith', send => true) as inv;

-- JPY has exponent 0: 3 x 333.33 = 999.99 -> 1000; 8 % tax = 80.
select inv->>'total' as total, inv->>'subtotal' as subtotal, inv->>'tax_amount' as tax, inv->'lines'->0->>'amount' as line
  from invoices.create_invoice(lines => '[{"description": "Tea", "quantity": 3, "unit_price": "333.33"}]',
                               currency => 'JPY', tax_rate => 8) as inv;

-- Rounding edge cases: half away from zero on lines and on tax; discount before tax.
select inv->>'subtotal' as subtotal, inv->>'discount_amount' as discount, inv->>'tax_amount' as tax, inv->>'total' as total
  from invoices.create_invoice(lines => '[{"description": "half cent", "quantity": "0.5", "unit_price": "0.01"},
                                          {"description": "thirds", "quantity": 3, "unit_price": "0.333"},
                                          {"description": "base", "unit_price": 100}]',
                               currency => 'usd', tax_rate => 7.25, discount_amount => 10) as inv;

-- 3-decimal currency and an 8-decimal crypto invoice (asset defaults to its currency).
select inv->>'total' as total, inv->>'asset' as asset
  from invoices.create_invoice(lines => '[{"description": "KWD", "quantity": 1, "unit_price": "1.2345"}]', currency => 'KWD') as inv;
select inv->>'total' as total, inv->>'asset' as asset, inv->>'currency' as currency
  from invoices.create_invoice(lines => '[{"description": "sats", "quantity": 3, "unit_price": "0.00000001"}]', currency => 'btc') as inv;

-- Stored totals are numeric with the currency's scale, and consistent.
select invoice_number, currency, subtotal, discount_amount, tax_amount, total,
       total = subtotal - discount_amount + tax_amount as consistent
  from invoices.invoices order by invoice_number;
select invoice_number, position, quantity, unit_price, amount from invoices.invoice_lines
 order by invoice_number, position;

-- Metadata, dates, order id and the merchant snapshot are kept.
select inv->'metadata' as metadata, inv->>'due_date' as due, inv->>'order_id' as order_id
  from invoices.create_invoice(lines => '[{"description": "x", "unit_price": 1}]',
                               issue_date => '2026-05-01', due_date => '2026-05-31',
                               metadata => '{"customer_id": "cus_42", "plan": "pro"}', order_id => 'ORD-9') as inv;

-- create_invoice builds the object of a new invoice without reading it back: it is the same
-- object invoice_object() reads from the tables (draft, sent, fiat, JPY, crypto, every option).
create temp table made (o jsonb);
insert into made
select invoices.create_invoice(lines => '[{"description": "A", "quantity": 2, "unit_price": "150.00"}, {"description": "B", "quantity": "1.5", "unit_price": "19.99"}]',
                               customer_email => 'a@example.com', customer_name => 'A', customer_company => 'Co',
                               customer_address => '1 Road', tax_rate => 10, send => true)
union all
select invoices.create_invoice(lines => '[{"description": "A", "unit_price": 1000}]', currency => 'JPY', notes => 'n',
                               metadata => '{"k": 1}', due_date => '2026-06-30', issue_date => '2026-06-01',
                               discount_amount => 100, tax_rate => 8.25)
union all
select invoices.create_invoice(lines => '[{"description": "A", "unit_price": "0.5"}]', asset => 'BTC', markup_percent => 1.5,
                               callback_url => 'https://example.com/cb', callback_secret => 'cb-secret-1',
                               order_id => 'o1', success_url => 'https://example.com/ok', failed_url => 'https://example.com/no',
                               confirmations => 2, expiry_minutes => 60, pause_minutes => 10, attempts_callback => 3)
union all
select invoices.create_invoice(lines => '[{"description": "sats", "quantity": 3, "unit_price": "0.00000001"}]', currency => 'BTC', send => true);
select m.o ->> 'currency' as currency, m.o ->> 'status' as status,
       m.o = invoices_internal.invoice_object((m.o ->> 'merchant_id')::uuid, (m.o ->> 'id')::uuid) as same_object,
       not m.o ? 'callback_secret' as secret_hidden
  from made m order by m.o ->> 'invoice_number';
