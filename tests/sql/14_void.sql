-- Void and uncollectible: a finalized invoice is never edited. void_invoice is for one issued by
-- mistake with nothing received; mark_uncollectible writes off what is still due (a payment in
-- full still settles it). Both through the status machine (audited, events), and the journal
-- books them: the void reversed, the write-off to bad_debt, the recovery when paid after all.
\set SHOW_CONTEXT never
select (invoices.create_merchant('Ledger Ltd') ->> 'id') as mid \gset
select invoices.act_as(:'mid'::uuid) ->> 'name' as acting;
select invoices.set_rate('BTC', 'NOK', 1000000) is not null as rate;
select invoices.create_wallet('BTC', address => 'bc1qq3n6a2p90ee2rhlznkawne66m0u3gkl2eafdzh') is not null as wallet;
-- A: a mistake, voided; B: 100 NOK in BTC, 40 paid, written off, then paid in full
select invoices.create_invoice(lines => '[{"description": "Wrong client", "unit_price": 50}]', currency => 'NOK', send => true)
       ->> 'invoice_number' as a \gset
select invoices.create_invoice(lines => '[{"description": "Service", "unit_price": 100}]', currency => 'NOK', asset => 'BTC', send => true)
       ->> 'invoice_number' as b \gset
select invoices.create_invoice(lines => '[{"description": "Draft", "unit_price": 1}]', currency => 'NOK') ->> 'invoice_number' as c \gset
select invoices.void_invoice(:'a') ->> 'status' as a_voided;
select invoices.void_invoice(:'a');
select invoices.void_invoice(:'c');
select invoices.void_invoice('INV-9999');
-- B receives 0.00004 BTC (40 NOK): it cannot be voided any more
select i.id as bid, i.address_id as baddr, i.deposit_address as baddress from invoices_internal.invoices i
 where i.merchant_id = :'mid' and i.invoice_number = :'b' \gset
insert into invoices_internal.payments (merchant_id, chain, txid, output_index, address, address_id, invoice_id, asset,
                                        amount_base, amount, status, block_height, block_hash, confirmed_at)
values (:'mid', 'regtest-void', 'tx1', 0, :'baddress', :'baddr', :'bid', 'BTC', 4000, 0.00004, 'confirmed', 1, 'h1', now());
select invoices_internal.settle_invoice(:'mid', :'bid');
select status, amount_paid from invoices_internal.invoices where id = :'bid';
select invoices.void_invoice(:'b');
select invoices.mark_uncollectible(:'b') ->> 'status' as b_uncollectible;
select written_off, marked_uncollectible_at is not null as stamped from invoices_internal.invoices where id = :'bid';
select invoices.mark_uncollectible(:'b');
-- a part payment leaves it written off; the rest settles it
insert into invoices_internal.payments (merchant_id, chain, txid, output_index, address, address_id, invoice_id, asset,
                                        amount_base, amount, status, block_height, block_hash, confirmed_at)
values (:'mid', 'regtest-void', 'tx2', 0, :'baddress', :'baddr', :'bid', 'BTC', 1000, 0.00001, 'confirmed', 2, 'h2', now());
select invoices_internal.settle_invoice(:'mid', :'bid');
select status, amount_paid from invoices_internal.invoices where id = :'bid';
insert into invoices_internal.payments (merchant_id, chain, txid, output_index, address, address_id, invoice_id, asset,
                                        amount_base, amount, status, block_height, block_hash, confirmed_at)
values (:'mid', 'regtest-void', 'tx3', 0, :'baddress', :'baddr', :'bid', 'BTC', 5000, 0.00005, 'confirmed', 3, 'h3', now());
select invoices_internal.settle_invoice(:'mid', :'bid');
select status, amount_paid from invoices_internal.invoices where id = :'bid';
-- audited and announced
select string_agg(a.from_status || '>' || a.to_status, ' ' order by a.id) as audited from invoices_internal.audit_log a
 where a.merchant_id = :'mid' and a.invoice_id in (select id from invoices_internal.invoices where merchant_id = :'mid' and invoice_number in (:'a', :'b'));
select string_agg(event, ', ' order by id) as events from invoices_internal.events
 where merchant_id = :'mid' and event in ('invoice.voided', 'invoice.marked_uncollectible');
-- the journal: every entry balances, receivables end at zero, bad debt written off and recovered
select entry_type, account, sum(debit) as debit, sum(credit) as credit from invoices.journal_entries
 where entry_type in ('void', 'write_off', 'recovery') group by entry_type, account order by entry_type, account;
select count(*) filter (where not balanced) as unbalanced
  from (select entry_id, sum(debit) = sum(credit) as balanced from invoices.journal_entries group by entry_id) e;
select invoice_number, sum(debit) - sum(credit) as receivable from invoices.journal_entries
 where account = 'accounts_receivable' group by invoice_number order by invoice_number;
select sum(debit) - sum(credit) as bad_debt from invoices.journal_entries where account = 'bad_debt';
