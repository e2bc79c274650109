-- The journal for accountants (invoices.journal_entries): double-entry lines per invoice,
-- cancellation, payment, FX difference and unapplied receipt; every entry balances.
\set SHOW_CONTEXT never
select (invoices.create_merchant('Journal AB') ->> 'id') as mid \gset
select invoices.act_as(:'mid'::uuid) ->> 'name' as acting;
-- (SEK: a pair no other file of the suite quotes)
select invoices.set_rate('BTC', 'SEK', 500000) is not null as rate;
select invoices.create_wallet('BTC', address => 'bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el') ->> 'bring_your_own' as byo;
-- A: 1,000 SEK + 25 % VAT = 1,250 SEK in BTC (0.0025 BTC due); B: 200 SEK, cancelled
select invoices.create_invoice(lines => '[{"description": "Licence", "unit_price": 1000}]', currency => 'SEK', tax_rate => 25,
                               asset => 'BTC', send => true) ->> 'invoice_number' as a \gset
select invoices.create_invoice(lines => '[{"description": "Support", "unit_price": 200}]', currency => 'SEK', send => true)
       ->> 'invoice_number' as b \gset
select invoices.cancel_invoice(:'b') ->> 'status' as b_cancelled;
select i.id as aid, i.address_id as addr_id, i.deposit_address as addr, (select id from invoices_internal.invoices where merchant_id = :'mid' and invoice_number = :'b') as bid
  from invoices_internal.invoices i where i.merchant_id = :'mid' and i.invoice_number = :'a' \gset
create temporary table ctx as select :'mid'::uuid as mid, :'addr_id'::bigint as addr_id, :'addr'::text as addr;
-- a confirmed payment, as the worker records it (then the invoice settles)
create function pg_temp.pay(n int, inv uuid, amount numeric) returns text language plpgsql as $$
declare
  c record;
begin
  select * into c from ctx;
  insert into invoices_internal.payments (merchant_id, chain, txid, output_index, address, address_id, invoice_id,
                                          asset, amount_base, amount, status, block_height, block_hash, confirmed_at)
  values (c.mid, 'regtest-journal', 'tx' || n, 0, c.addr, c.addr_id, inv, 'BTC',
          trunc(amount * 100000000), amount, 'confirmed', 100 + n, 'h' || n, clock_timestamp());
  if inv is not null then
    perform invoices_internal.settle_invoice(c.mid, inv);
  end if;
  return (select i.status || ' ' || i.amount_paid || ' SEK' from invoices_internal.invoices i where i.merchant_id = c.mid and i.id = inv);
end
$$;
-- 0.001 BTC at the quote's rate: 500 SEK of the 1,250
select pg_temp.pay(1, :'aid', 0.001) as first_payment;
-- the rate moves to 520,000 SEK/BTC; 0.002 BTC more: 750 SEK settle the invoice, 250 SEK are
-- over-paid (a credit for the customer), and the 0.002 BTC are worth 1,040 SEK: 40 SEK FX gain
select invoices.set_rate('BTC', 'SEK', 520000) is not null as rate_moved;
select pg_temp.pay(2, :'aid', 0.002) as second_payment;
-- money to the cancelled invoice, and to no invoice: unapplied receipts
select pg_temp.pay(3, :'bid', 0.0001) is null as to_cancelled;
select pg_temp.pay(4, null, 0.0002) is null as to_nothing;

select entry_type, invoice_number = :'a' as is_a, line, account, debit, credit, currency, asset, asset_amount
  from invoices.journal_entries
 order by entry_date, entry_type = 'fx', line;
-- every entry balances; the receivable of each invoice is settled (A paid, B cancelled)
select count(distinct entry_id) as entries,
       count(*) filter (where not balanced) as unbalanced
  from (select entry_id, sum(debit) = sum(credit) as balanced from invoices.journal_entries group by entry_id) e;
select invoice_number = :'a' as is_a, sum(debit) - sum(credit) as receivable
  from invoices.journal_entries where account = 'accounts_receivable' group by invoice_number order by 1;
select account, sum(credit) - sum(debit) as balance, currency
  from invoices.journal_entries where account in ('customer_credit', 'fx_gain', 'unapplied_receipts', 'revenue', 'tax_payable')
 group by account, currency order by account, currency;
-- another merchant sees none of it
select invoices.act_as((invoices.create_merchant('Other AB') ->> 'id')::uuid) is not null as acting;
select count(*) as visible_rows from invoices.journal_entries;
