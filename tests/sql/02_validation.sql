-- Bad input: a clear error naming each bad field (SQLSTATE 22023 / 23514, JSON detail),
-- and no row written.
\set SHOW_CONTEXT never
\set VERBOSITY default
select invoices.create_merchant('Validation Ltd') ->> 'id' as m \gset
select invoices.act_as(:'m') is not null as acting;

-- missing lines
select invoices.create_invoice(customer_email => 'a@example.com');
-- empty lines
select invoices.create_invoice(lines => '[]');
-- more than 100 lines
select invoices.create_invoice(lines => (select jsonb_agg(jsonb_build_object('description', 'l' || g, 'unit_price', 1)) from generate_series(1, 101) g));
-- negative and non-numeric quantity / price, empty description
select invoices.create_invoice(lines => '[{"description": "a", "quantity": -1, "unit_price": "abc"},
                                          {"description": "", "quantity": "two", "unit_price": -5}]');
-- unknown currency
select invoices.create_invoice(lines => '[{"description": "a", "unit_price": 1}]', currency => 'XYZ');
-- discount above subtotal
select invoices.create_invoice(lines => '[{"description": "a", "unit_price": 10}]', discount_amount => 10.01);
-- bad email and due date before issue date, reported together
select invoices.create_invoice(lines => '[{"description": "a", "unit_price": 10}]', customer_email => 'not-an-email',
                               issue_date => '2026-05-10', due_date => '2026-05-01');
-- tax rate out of range, too many decimals for the currency
select invoices.create_invoice(lines => '[{"description": "a", "unit_price": 10}]', tax_rate => 101);
select invoices.create_invoice(lines => '[{"description": "a", "unit_price": 10}]', currency => 'JPY', discount_amount => 1.5);
-- lines and items together; lines not an array; a line that is not an object
select invoices.create_invoice(lines => '[{"description": "a", "unit_price": 1}]', items => '[{"description": "b", "unit_price": 1}]');
select invoices.create_invoice(lines => '{"description": "a"}');
select invoices.create_invoice(lines => '[42]');
-- bad callback URL and out-of-range settings
select invoices.create_invoice(lines => '[{"description": "a", "unit_price": 1}]', callback_url => 'ftp://x', attempts_callback => 21, expiry_minutes => 0);
-- bad merchant input
select invoices.create_merchant('', email => 'nope', default_currency => 'ABC', invoice_prefix => 'has space');

-- Nothing was written: no invoice, no line, no audit row, and the counter did not move.
select count(*) as invoices from invoices.invoices;
select count(*) as lines from invoices.invoice_lines;
select count(*) as audit_rows from invoices.audit_log;
select inv->>'invoice_number' as first_number_after_failures
  from invoices.create_invoice(lines => '[{"description": "ok", "unit_price": 1}]') inv;

-- The table itself refuses inconsistent totals (its row trigger, not just the function).
\set VERBOSITY terse
insert into invoices_internal.invoices (merchant_id, number_seq, invoice_number, currency, exponent,
       subtotal, discount_amount, tax_rate, tax_amount, total, merchant_snapshot)
values (:'m', 99, 'X-99', 'USD', 2, 100.00, 0.00, 10, 10.00, 111.00, '{}');
insert into invoices_internal.invoices (merchant_id, number_seq, invoice_number, currency, exponent,
       subtotal, discount_amount, tax_rate, tax_amount, total, merchant_snapshot)
values (:'m', 99, 'X-99', 'USD', 2, 100.00, 0.00, 7.25, 7.26, 107.26, '{}');
insert into invoices_internal.invoices (merchant_id, number_seq, invoice_number, currency, exponent,
       subtotal, discount_amount, tax_rate, tax_amount, total, merchant_snapshot)
values (:'m', 99, 'X-99', 'USD', 2, 100.00, 0.00, 0, 0.00, 100.00, '{}');
-- … and an invoice whose lines do not add up to its subtotal fails at commit.
begin;
insert into invoices_internal.invoices (merchant_id, number_seq, invoice_number, currency, exponent,
       subtotal, discount_amount, tax_rate, tax_amount, total, merchant_snapshot)
values (:'m', 99, 'X-99', 'USD', 2, 100.00, 0.00, 0, 0.00, 100.00, '{}')
returning invoice_number;
insert into invoices_internal.invoice_lines (merchant_id, invoice_id, position, description, quantity, unit_price, amount)
select :'m', id, 1, 'x', 1, 99.99, 99.99 from invoices_internal.invoices where invoice_number = 'X-99';
commit;
select count(*) as x99_rows from invoices_internal.invoices where invoice_number = 'X-99';
