-- Rates, the median of fresh sources, quotes locked at finalization, expiry and requote.
\set SHOW_CONTEXT never
-- bad input names each field
select invoices.set_rate('DOGE', 'USD', 1);
select invoices.set_rate('BTC', 'XXX', -5, '');
-- three sources for BTC/USD: the median is used
select source, rate, fresh, median_rate from invoices.set_rate('BTC', 'USD', 67000, 'source-a') as r(j),
  lateral jsonb_to_record(r.j) as x(source text, rate numeric, fresh boolean, median_rate numeric);
select invoices.set_rate('BTC', 'USD', 67300, 'source-c') ->> 'median_rate' as median_of_two;
select invoices.set_rate('BTC', 'USD', 67100, 'source-b') ->> 'median_rate' as median_of_three;
-- a stale source does not count
insert into invoices_internal.rate_observations (asset, currency, source, rate, observed_at)
values ('BTC', 'USD', 'source-stale', 1, now() - interval '2 hours'),
       ('KAS', 'USD', 'only-stale', 0.12, now() - interval '2 hours');
select asset, currency, source, rate, fresh, median_rate from invoices.rates order by asset, currency, source;

select invoices.act_as((invoices.create_merchant('Quote Shop') ->> 'id')::uuid) ->> 'name' as acting;
-- the BTPay example in BTC: 220.00 USD / 67100 = 0.0032786885... rounded up to the satoshi
select invoices.create_invoice(lines => '[{"description": "Consulting", "quantity": 1, "unit_price": "150.00"},
                                          {"description": "Setup", "quantity": 2, "unit_price": "25.00"}]',
                               tax_rate => 10, asset => 'BTC') ->> 'invoice_number' as n \gset
select j ->> 'status' as status, j ->> 'total' as total, j ->> 'asset' as asset, j ->> 'asset_amount' as asset_amount,
       j ->> 'rate' as rate, (j ->> 'expires_at')::timestamptz - (j ->> 'finalized_at')::timestamptz as window
  from invoices.finalize_invoice(:'n') j;
select asset, currency, amount, rate, rate_sources, markup_percent, asset_amount, expires_at - created_at as window, current
  from invoices.quotes where invoice_number = :'n';
-- markup (apiforcrypto percent): +2 % -> 224.40 USD -> 0.00334427 BTC; -5 % discount
select j ->> 'asset_amount' as plus_2_percent
  from invoices.create_invoice(lines => '[{"description": "x", "unit_price": "220.00"}]', asset => 'BTC',
                               markup_percent => 2, send => true) j;
select j ->> 'asset_amount' as minus_5_percent
  from invoices.create_invoice(lines => '[{"description": "x", "unit_price": "220.00"}]', asset => 'BTC',
                               markup_percent => -5, expiry_minutes => 15, send => true) j;
-- a crypto-denominated invoice needs no rate
select j ->> 'total' as total, j ->> 'asset_amount' as asset_amount, j ->> 'rate' as rate
  from invoices.create_invoice(currency => 'BTC', lines => '[{"description": "x", "unit_price": "0.0025"}]', send => true) j;
-- a fiat invoice without an asset is not quoted
select j ->> 'status' as status, j ->> 'asset_amount' as asset_amount, j ->> 'expires_at' as expires_at
  from invoices.create_invoice(lines => '[{"description": "x", "unit_price": 5}]', send => true) j;

-- no fresh rate: finalizing fails and changes nothing; creating with send => true writes nothing
select invoices.create_invoice(lines => '[{"description": "x", "unit_price": 10}]', asset => 'ETH') ->> 'invoice_number' as eth \gset
select invoices.finalize_invoice(:'eth');
select status, (select count(*) from invoices.quotes q where q.invoice_number = :'eth') as quotes
  from invoices.invoices where invoice_number = :'eth';
select count(*) as invoices_before from invoices.invoices \gset
select invoices.create_invoice(lines => '[{"description": "x", "unit_price": 10}]', asset => 'KAS', send => true);
select count(*) = :invoices_before as nothing_written from invoices.invoices;

-- quotes are immutable
update invoices_internal.quotes set rate = 1;
delete from invoices_internal.quotes;

-- expiry (what the worker runs on every tick) and requote
select invoices.requote_invoice(:'n');
update invoices_internal.invoices set expires_at = now() - interval '1 second' where invoice_number = :'n';
select expired, overdue from invoices_internal.expire_and_mark_overdue();
select status, expired_at is not null as stamped from invoices.invoices where invoice_number = :'n';
select invoices.set_rate('BTC', 'USD', 70000, 'source-b') ->> 'median_rate' as new_median;
select j ->> 'status' as status, j ->> 'asset_amount' as asset_amount, j ->> 'rate' as rate
  from invoices.requote_invoice(:'n') j;
select rate, asset_amount, current from invoices.quotes where invoice_number = :'n' order by created_at;
select from_status, to_status, event from invoices.audit_log where invoice_number = :'n' order by id;
