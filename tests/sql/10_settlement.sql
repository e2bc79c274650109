-- Settlement: payments rows inserted directly (as the worker's record_chain_poll would) and the
-- invoice following them through invoices_internal.settle_invoice, whose rule is
-- domain::settlement: the merchant's tolerance, partial / paid / confirmed, the fiat share,
-- overpaid, paid_late, and a reorg taking everything back.
\set SHOW_CONTEXT never
select (invoices.create_merchant('Settlement Co') ->> 'id') as mid \gset
select invoices.act_as(:'mid'::uuid) ->> 'name' as acting;
-- (CHF: a pair no other file of the suite quotes, so the median is this one rate)
select invoices.set_rate('BTC', 'CHF', 50000) is not null as rate;
select invoices.create_wallet('BTC', address => 'bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq') ->> 'bring_your_own' as byo;
-- 100 CHF at 50,000 CHF/BTC: 0.002 BTC due
select invoices.create_invoice(lines => '[{"description": "Settle", "unit_price": 100}]', currency => 'CHF', asset => 'BTC', send => true)
       ->> 'invoice_number' as n \gset
select i.id as iid, i.address_id as aid, a.address as addr
  from invoices_internal.invoices i join invoices_internal.addresses a on a.merchant_id = i.merchant_id and a.id = i.address_id
 where i.merchant_id = :'mid' and i.invoice_number = :'n' \gset
select q.asset_amount as due from invoices_internal.quotes q where q.merchant_id = :'mid' and q.invoice_id = :'iid';
-- a bad tolerance names its field; nothing changes
select invoices.set_payment_tolerance(100);
select invoices.set_payment_tolerance(-1);
select invoices.set_payment_tolerance(null);
select payment_tolerance_percent from invoices_internal.merchants where id = :'mid';
create temporary table ctx as select :'mid'::uuid as mid, :'iid'::uuid as iid, :'aid'::bigint as aid, :'addr'::text as addr;
create function pg_temp.pay(n int, status text, amount numeric) returns text language plpgsql as $$
declare
  c record;
  shown text;
begin
  select * into c from ctx;
  insert into invoices_internal.payments (merchant_id, chain, txid, output_index, address, address_id, invoice_id,
                                          asset, amount_base, amount, status, block_height, block_hash)
  values (c.mid, 'regtest-settle', 'tx' || n, 0, c.addr, c.aid, c.iid, 'BTC',
          trunc(amount * 100000000), amount, status,
          case when status <> 'mempool' then 100 end, case when status <> 'mempool' then 'h' end);
  perform invoices_internal.settle_invoice(c.mid, c.iid);
  select i.status || ' paid ' || i.asset_paid || ' BTC = ' || i.amount_paid || ' ' || i.currency
         || case when i.overpaid then ' (overpaid)' else '' end into shown
    from invoices_internal.invoices i where i.merchant_id = c.mid and i.id = c.iid;
  return shown;
end
$$;
create function pg_temp.set_status(n int, status text) returns text language plpgsql as $$
declare
  c record;
  shown text;
  reverted timestamptz := case when set_status.status = 'reverted' then now() end;
begin
  select * into c from ctx;
  update invoices_internal.payments p set status = set_status.status, reverted_at = reverted
   where p.merchant_id = c.mid and p.txid = 'tx' || n;
  perform invoices_internal.settle_invoice(c.mid, c.iid);
  select i.status || ' paid ' || i.asset_paid || ' BTC = ' || i.amount_paid || ' ' || i.currency
         || case when i.overpaid then ' (overpaid)' else '' end into shown
    from invoices_internal.invoices i where i.merchant_id = c.mid and i.id = c.iid;
  return shown;
end
$$;
-- no tolerance: 0.00199 of 0.002 is partial
select pg_temp.pay(1, 'in_block', 0.00199) as no_tolerance;
-- a tolerance of 0.5 % (0.00001 BTC): the same payment now counts as paid at the next settle
select invoices.set_payment_tolerance(0.5) ->> 'payment_tolerance_percent' as tolerance;
select pg_temp.set_status(1, 'in_block') as within_tolerance;
-- a tolerance of 0.4 %: 0.000008 BTC short is allowed, 0.00001 is not
select invoices.set_payment_tolerance(0.4) ->> 'payment_tolerance_percent' as tolerance;
select pg_temp.set_status(1, 'in_block') as beyond_tolerance;
-- a second payment makes it paid, then over-paid
select pg_temp.pay(2, 'mempool', 0.00001) as exact;
select pg_temp.pay(3, 'mempool', 0.0005) as over;
-- confirmed only once the confirmed payments reach the due amount
select pg_temp.set_status(1, 'confirmed') as one_confirmed;
select pg_temp.set_status(2, 'confirmed') as enough_confirmed;
-- a reorg takes every payment back: pending again, nothing paid
select pg_temp.set_status(1, 'reverted') as reorg_1;
select pg_temp.set_status(2, 'reverted') as reorg_2;
select pg_temp.set_status(3, 'reverted') as reorg_3;
-- the status machine saw every step (audited)
select string_agg(a.from_status || '>' || a.to_status, ' ' order by a.id) as audited
  from invoices_internal.audit_log a where a.merchant_id = :'mid' and a.invoice_id = :'iid';
-- a cancelled invoice is never settled: its money stays in payments, to refund
select invoices.cancel_invoice(:'n') ->> 'status' as cancelled;
select pg_temp.pay(4, 'confirmed', 0.002) as after_cancel;
