-- Analytics views for data teams: aging, revenue, conversion, days to pay, exposure, FX.
select invoices.act_as((invoices.create_merchant('Analytics Ltd') ->> 'id')::uuid) is not null as acting;
select invoices.set_rate('ETH', 'GBP', 2000, 'regress') is not null as rate;
-- A: 100 GBP, 45 days past due; B: 200 GBP, due in 10 days; C: 300 GBP paid in ETH; D: 100 GBP in ETH, open
select invoices.create_invoice(currency => 'GBP', lines => '[{"description": "A", "unit_price": 100}]', issue_date => current_date - 60,
                               due_date => current_date - 45, send => true) is not null as a;
select invoices.create_invoice(currency => 'GBP', lines => '[{"description": "B", "unit_price": 200}]', due_date => current_date + 10,
                               send => true) is not null as b;
select (invoices.create_invoice(currency => 'GBP', lines => '[{"description": "C", "unit_price": 300}]', asset => 'ETH', send => true) ->> 'id') as c_id \gset
select invoices.create_invoice(currency => 'GBP', lines => '[{"description": "D", "unit_price": 100}]', asset => 'ETH', send => true) is not null as d;

select currency, open_invoices, total_due, current, days_1_30, days_31_60, days_61_90, days_90_plus
  from invoices.receivables_aging;

-- C is paid (as payment detection would settle it) after the rate moved to 2,200
select invoices.set_rate('ETH', 'GBP', 2200, 'regress') is not null as rate_moved;
update invoices_internal.invoices set asset_paid = 0.15, amount_paid = 300, status = 'paid' where id = :'c_id';
update invoices_internal.invoices set status = 'confirmed' where id = :'c_id';

select month = date_trunc('month', current_date)::date as this_month, currency, asset, paid_invoices, revenue,
       asset_received, fiat_value_at_quote
  from invoices.revenue_by_month;
select finalized, paid, expired, cancelled, open, paid_vs_expired from invoices.payment_conversion;
select paid_invoices, same_day, days_1_6, days_7_29, days_30_plus from invoices.days_to_pay;
-- D still expects 0.05 ETH: 100 GBP at the quote, 110 GBP at today's rate
select asset, currency, open_invoices, outstanding_asset, value_at_quote, rate_today, value_today
  from invoices.open_exposure;
select invoice_number, asset_paid, quoted_rate, rate_at_confirmation, gain_loss from invoices.fx_gain_loss;
-- another merchant sees none of it
select invoices.act_as((invoices.create_merchant('Other Ltd') ->> 'id')::uuid) is not null as acting;
select (select count(*) from invoices.receivables_aging) + (select count(*) from invoices.revenue_by_month)
     + (select count(*) from invoices.open_exposure) + (select count(*) from invoices.fx_gain_loss) as visible_rows;
