-- Watch-only wallets and the address carousel: derivation (BIP84, EIP-55, Kaspa), reuse of
-- freed addresses, pause, gap limit, bring-your-own, one live invoice per address.
\set SHOW_CONTEXT never
select invoices.create_merchant('Carousel Co') ->> 'id' as carousel \gset
select invoices.act_as(:'carousel') ->> 'name' as acting;
select invoices.set_rate('ETH', 'USD', 3000) is not null as eth_rate, invoices.set_rate('KAS', 'USD', 0.1) is not null as kas_rate;
-- bad wallets: each error names the field, nothing is written
select invoices.create_wallet('BTC');
select invoices.create_wallet('BTC', xpub => 'zpub-nope');
select invoices.create_wallet('BTC', xpub => 'zprvAdG4iTXWBoARxkkzNpNh8r6Qag3irQB8PzEMkAFeTRXxHpbF9z4QgEvBRmfvqWvGp42t42nvgGpNgYSJA9iefm1yYNZKEm7z6qUWCroSQnE');
select invoices.create_wallet('BTC', xpub => 'zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs', network => 'regtest');
select invoices.create_wallet('ETH', address => '0xd1220a0cf47c7b9be7a2e6ba89f429762e7b9adb');
select invoices.create_wallet('DOGE', address => 'x');
select count(*) as wallets from invoices.wallets;

-- BTC from the BIP84 account zpub: receive addresses 0, 1, ...
select asset, network, bring_your_own, gap_limit, derived_addresses
  from jsonb_populate_record(null::invoices.wallets, invoices.create_wallet('BTC',
    xpub => 'zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs',
    gap_limit => 3));
select invoices.create_invoice(lines => '[{"description": "a", "unit_price": 100}]', asset => 'BTC', send => true) ->> 'address' as first;
select invoices.create_invoice(lines => '[{"description": "b", "unit_price": 100}]', asset => 'BTC', send => true) ->> 'address' as second;
-- a draft has no address until it is finalized
select invoices.create_invoice(lines => '[{"description": "c", "unit_price": 100}]', asset => 'BTC') ->> 'invoice_number' as c \gset
select address from invoices.invoices where invoice_number = :'c';
select invoices.finalize_invoice(:'c') ->> 'address' as third;
select address, derivation_index, state, invoice_number from invoices.addresses order by derivation_index;
-- gap limit 3: a fourth live invoice would need a fourth unused address
select invoices.create_invoice(lines => '[{"description": "d", "unit_price": 100}]', asset => 'BTC') ->> 'invoice_number' as d \gset
select invoices.finalize_invoice(:'d');
select status, address from invoices.invoices where invoice_number = :'d';
-- cancelling releases an address after the pause, a day by default (invoices.address_pause_minutes);
-- an operator who sets it to 0 sees the next invoice reuse the oldest freed one at once
-- (SET LOCAL in a transaction: on Citus a session's SET stays on the coordinator, while the
-- status trigger that releases the address runs on a worker; SET LOCAL reaches it)
begin;
set local invoices.address_pause_minutes = 0;
select invoices.cancel_invoice('INV-0001') ->> 'status' as cancelled;
select address, state from invoices.addresses where derivation_index = 0;
select invoices.finalize_invoice(:'d') ->> 'address' as reused;
-- a pause keeps an address out of use after its invoice ends
select invoices.cancel_invoice('INV-0002') ->> 'status' as cancelled;
select invoices.create_invoice(lines => '[{"description": "e", "unit_price": 100}]', asset => 'BTC',
                               pause_minutes => 60, send => true) ->> 'invoice_number' as e \gset
select a.address, a.derivation_index from invoices.invoices i join invoices.addresses a on a.invoice_id = i.id
 where i.invoice_number = :'e';
select invoices.cancel_invoice(:'e') ->> 'status' as cancelled;
select derivation_index, state, available_at > now() + interval '59 minutes' as paused_an_hour
  from invoices.addresses order by derivation_index;
commit;
-- one live invoice per address, whatever writes the row
\set VERBOSITY terse
select address_id as d_address from invoices_internal.invoices where merchant_id = :'carousel' and invoice_number = :'d' \gset
update invoices_internal.invoices set address_id = :d_address
 where merchant_id = :'carousel' and invoice_number = 'INV-0003';
\set VERBOSITY default
-- the default: a cancelled invoice's address rests a day
select invoices.cancel_invoice('INV-0003') ->> 'status' as cancelled;
select state, available_at between now() + interval '23 hours 59 minutes' and now() + interval '1 day' as paused_a_day
  from invoices.addresses where derivation_index = 2;
-- an invoice's own pause is at least 10 minutes
select invoices.create_invoice(lines => '[{"description": "x", "unit_price": 1}]', pause_minutes => 5);
-- who held which address, for late payments
select i.invoice_number, a.address_id is not null as had_address, a.released_at is not null as released
  from invoices_internal.address_assignments a
  join invoices.invoices i on i.id = a.invoice_id order by a.assigned_at;

-- EVM: bring-your-own EIP-55 address; one live invoice at a time
select address, bring_your_own from jsonb_to_record(invoices.create_wallet('ETH', address => '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed'))
  as w(address text, bring_your_own boolean);
select invoices.create_wallet('ETH', address => '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed', xpub => 'xpub…');
select invoices.create_invoice(lines => '[{"description": "f", "unit_price": 30}]', asset => 'ETH', send => true) ->> 'address' as eth_address;
select invoices.create_invoice(lines => '[{"description": "g", "unit_price": 30}]', asset => 'ETH', send => true);
-- EVM from the account xpub (m/44'/60'/0'): 0x9858EfFD… first
select invoices.create_wallet('USDC', xpub => 'xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt') ->> 'asset' as usdc_wallet;
select invoices.set_rate('USDC', 'USD', 1) is not null as usdc_rate;
select j ->> 'address' as usdc_address, j ->> 'asset_amount' as usdc
  from invoices.create_invoice(lines => '[{"description": "h", "unit_price": "12.34"}]', asset => 'USDC', send => true) j;
-- Kaspa testnet from the rusty-kaspa ktub: index 1 is the published vector
select invoices.create_wallet('KAS', xpub => 'ktub23beJLczbxoS4emYHxm5H2rPnXJPGTwjNLAc8JyjHnSFLPMJBj5h3U8oWbn1x1jayZRov6uhvGd4zUGrWH6PkYZMWsykUsQWYqjbLnHrzUE', network => 'testnet') ->> 'network' as kas_wallet;
select invoices.create_invoice(lines => '[{"description": "i", "unit_price": 1}]', asset => 'KAS', send => true) ->> 'address' as kas_0;
select invoices.create_invoice(lines => '[{"description": "j", "unit_price": 1}]', asset => 'KAS', send => true) ->> 'address' as kas_1;
select asset, network, bring_your_own, derived_addresses, addresses_in_use from invoices.wallets where active order by asset;

-- a key or address belongs to one merchant: another merchant's create_wallet is refused
select invoices.create_merchant('Copycat') ->> 'id' as copycat \gset
select invoices.act_as(:'copycat') ->> 'name' as acting;
select invoices.create_wallet('BTC', xpub => 'zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs');
-- the same account key as an xpub (other version bytes, same addresses)
select invoices.create_wallet('BTC', xpub => 'xpub6CatWdiZiodmUeTDp8LT5or8nmbKNcuyvz7WyksVFkKB4RHwCD3XyuvPEbvqAQY3rAPshWcMLoP2fMFMKHPJ4ZeZXYVUhLv1VMrjPC7PW6V');
select invoices.create_wallet('ETH', address => '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed');
-- ... and so are its key's first address and an address its key derived (index 1)
select invoices.create_wallet('BTC', address => 'bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu');
select invoices.create_wallet('BTC', address => 'bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g');
select count(*) as copycat_wallets from invoices_internal.wallets where merchant_id = :'copycat';
-- the same key for another asset is another wallet (an ETH and a USDC wallet may share one)
select invoices.create_wallet('USDC', address => '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed') ->> 'asset' as other_asset;
-- the merchant's own earlier key reactivates its wallet, which goes on from its next index
select invoices.act_as(:'carousel') ->> 'name' as acting;
select invoices.create_wallet('BTC', address => 'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4') ->> 'bring_your_own' as byo_btc;
select asset, bring_your_own, gap_limit, derived_addresses, active
  from jsonb_populate_record(null::invoices.wallets, invoices.create_wallet('BTC',
    xpub => 'zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs',
    gap_limit => 5));
select count(*) filter (where asset = 'BTC') as btc_wallets, count(*) filter (where asset = 'BTC' and active) as active_btc
  from invoices.wallets;
select invoices.create_invoice(lines => '[{"description": "k", "unit_price": 100}]', asset => 'BTC', send => true) ->> 'address' as next_btc;
-- an address another merchant registered first is skipped when the key reaches it
select invoices_internal.derive_wallet_address('USDC', 'mainnet', 'xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt', 1) ->> 'address' as usdc_1 \gset
select invoices.act_as(:'copycat') ->> 'name' as acting;
select invoices.create_wallet('USDC', address => :'usdc_1') ->> 'address' = :'usdc_1' as copycat_took_index_1;
select invoices.act_as(:'carousel') ->> 'name' as acting;
select j ->> 'address' <> :'usdc_1' as not_index_1
  from invoices.create_invoice(lines => '[{"description": "l", "unit_price": 5}]', asset => 'USDC', send => true) j;
select derivation_index, state from invoices.addresses where asset = 'USDC' order by derivation_index;
