-- ============================================================================================
-- invoices — watch-only wallets and the address carousel
-- ============================================================================================
-- A wallet is an account-level extended public key (never a private key) or one
-- bring-your-own address. Finalizing an invoice with an asset takes a deposit address from the
-- merchant's wallet for that asset: the oldest free address whose pause is over, else the next
-- derived index (within the gap limit). Expiry, cancellation and confirmation release it after
-- the invoice's pause_minutes. A live invoice (pending, partial, paid, overdue) holds its
-- address alone: a unique index on the invoices enforces it.
--
-- Needs: 05_errors (raise, raise_error); 10_tables (invoices, merchants); 15_tenancy
--   (authorize, may_read, readable_merchants, require_merchant, session_scope); 25_rates_quotes (lock_quote)
-- Provides (API): create_wallet(), wallets, addresses
-- Provides (internal): wallets, wallet_keys, addresses, address_assignments, assign_address(), release_address(), open_for_payment()

create table invoices_internal.wallets (
  merchant_id  uuid not null references invoices_internal.merchants (id),
  id           uuid not null default invoices_internal.uuid_v7(),
  asset        text not null check (asset in ('BTC', 'ETH', 'USDC', 'KAS')),
  network      text not null default 'mainnet'
               check (network in ('mainnet', 'testnet', 'regtest', 'devnet', 'simnet')),
  xpub         text,                      -- account-level extended public key, or null (byo)
  gap_limit    integer not null default 20 check (gap_limit between 1 and 1000),
  next_index   integer not null default 0 check (next_index >= 0),
  active       boolean not null default true,
  created_at   timestamptz not null default now(),
  primary key (merchant_id, id)
);

-- one active wallet per merchant and asset
create unique index wallets_active_asset on invoices_internal.wallets (merchant_id, asset) where active;

-- A wallet belongs to one merchant: its account key (or bring-your-own address) is routed to
-- that merchant's wallet here, keyed by the key's receive address 0 (which the xpub, zpub and
-- other encodings of one account key all derive alike) and the asset. Another merchant's key
-- is refused, so no address string can be dealt out by two wallets; the merchant's own key
-- reactivates its old wallet, which goes on from its next index. On Citus a routing table,
-- distributed by first_address.
create table invoices_internal.wallet_keys (
  first_address text not null,            -- receive address 0 of the key, or the byo address
  asset         text not null,
  merchant_id   uuid not null,
  wallet_id     uuid not null,
  created_at    timestamptz not null default now(),
  primary key (first_address, asset)
);

create table invoices_internal.addresses (
  merchant_id      uuid not null,
  wallet_id        uuid not null,
  id               bigint generated always as identity,
  address          text not null,
  derivation_index integer,               -- null for a bring-your-own address
  invoice_id       uuid,                  -- the live invoice holding it; null when free
  last_invoice_id  uuid,                  -- the invoice that used it last (late payments)
  available_at     timestamptz not null default now(),  -- free again after the pause
  times_assigned   integer not null default 0,
  first_paid_at    timestamptz,           -- set by payment detection: the address is "used"
  created_at       timestamptz not null default now(),
  primary key (merchant_id, wallet_id, id),
  unique (merchant_id, wallet_id, address),
  foreign key (merchant_id, wallet_id) references invoices_internal.wallets (merchant_id, id)
);

create unique index addresses_id_key on invoices_internal.addresses (merchant_id, id);

-- the carousel's pick: free addresses of a wallet, oldest freed first
create index addresses_free_idx on invoices_internal.addresses (wallet_id, available_at, id)
  where invoice_id is null;

create unique index addresses_one_invoice on invoices_internal.addresses (merchant_id, invoice_id)
  where invoice_id is not null;

-- payment detection finds the address of an output
create index addresses_address_idx on invoices_internal.addresses (address);

-- No address is ever assigned to two live invoices.
create unique index invoices_one_live_invoice_per_address on invoices_internal.invoices (merchant_id, address_id)
  where status in ('pending', 'partial', 'paid', 'overdue') and address_id is not null;

-- Who held which address when: payment detection credits a payment to the invoice that held
-- the address at that time (a late payment of an expired invoice stays with that invoice).
create table invoices_internal.address_assignments (
  merchant_id  uuid not null,
  address_id   bigint not null,
  invoice_id   uuid not null,
  -- when it happened (clock_timestamp(), not the transaction's start: a holding ends before the
  -- next begins even when the next transaction started first, or on another node)
  assigned_at  timestamptz not null default clock_timestamp(),
  released_at  timestamptz,
  primary key (merchant_id, address_id, assigned_at, invoice_id)
);

create function invoices.create_wallet(asset text, xpub text default null, address text default null,
                                       gap_limit integer default 20, network text default 'mainnet')
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_wallet');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  checked jsonb;
  key text;
  owner invoices_internal.wallet_keys;
  w invoices_internal.wallets;
begin
  if (xpub is null) = (address is null) then
    perform invoices_internal.raise('22023', 'invalid wallet: give xpub or address, not both or neither',
      '{"errors":[{"field":"xpub","message":"give an account extended public key, or address for a bring-your-own address"}]}',
      'create_wallet(''BTC'', xpub => ''zpub…'') or create_wallet(''ETH'', address => ''0x…'')');
  end if;
  if gap_limit is null or gap_limit not between 1 and 1000 then
    perform invoices_internal.raise('22023', 'invalid wallet: gap_limit must be between 1 and 1000',
      '{"errors":[{"field":"gap_limit","message":"must be between 1 and 1000 (BIP44 uses 20)"}]}', null);
  end if;
  checked := case when xpub is not null
                  then invoices_internal.derive_wallet_address(asset, network, xpub, 0)
                  else invoices_internal.check_wallet_address(asset, network, address) end;
  if checked ? 'error' then
    perform invoices_internal.raise_error(checked);
  end if;
  -- one merchant per key: payments to a shared key's addresses could not be told apart
  key := checked ->> 'address';
  select * into owner from invoices_internal.wallet_keys k
   where k.first_address = key and k.asset = create_wallet.asset;
  if found and owner.merchant_id <> mid then
    perform invoices_internal.raise('23505',
      format('this %s %s belongs to a wallet of another merchant', create_wallet.asset,
             case when xpub is null then 'address' else 'account key' end),
      jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
        'field', case when xpub is null then 'address' else 'xpub' end,
        'message', 'already a wallet of another merchant: a key or address can belong to one merchant only')))::text,
      'give each merchant an account key of its own (another account index, e.g. m/84''/0''/1''), or another address');
  end if;
  if not found and xpub is null and exists (
       select 1 from invoices_internal.addresses a
         join invoices_internal.wallets x on x.merchant_id = a.merchant_id and x.id = a.wallet_id
        where a.address = key and x.asset = create_wallet.asset) then
    perform invoices_internal.raise('23505',
      format('this %s address is a deposit address of another wallet', create_wallet.asset),
      '{"errors":[{"field":"address","message":"already dealt out by a wallet derived from an account key"}]}',
      'give an address no wallet derives');
  end if;
  -- the new (or reactivated) wallet replaces the merchant's active one for that asset
  update invoices_internal.wallets set active = false
   where merchant_id = mid and wallets.asset = create_wallet.asset and active
     and id is distinct from owner.wallet_id;
  if owner.wallet_id is not null then
    -- the merchant's own key again: its wallet, with the addresses it derived
    update invoices_internal.wallets
       set active = true, gap_limit = create_wallet.gap_limit, network = create_wallet.network
     where merchant_id = mid and id = owner.wallet_id
    returning * into w;
  else
    insert into invoices_internal.wallets (merchant_id, asset, network, xpub, gap_limit)
    values (mid, create_wallet.asset, create_wallet.network, btrim(create_wallet.xpub), create_wallet.gap_limit)
    returning * into w;
    begin
      insert into invoices_internal.wallet_keys (first_address, asset, merchant_id, wallet_id)
      values (key, create_wallet.asset, mid, w.id);
    exception when unique_violation then
      -- another merchant registered the same key in a concurrent transaction
      perform invoices_internal.raise('23505',
        format('this %s key or address was just registered by another wallet', create_wallet.asset),
        jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
          'field', case when xpub is null then 'address' else 'xpub' end,
          'message', 'already a wallet of another merchant: a key or address can belong to one merchant only')))::text,
        'give each merchant an account key of its own');
    end;
    if address is not null then
      insert into invoices_internal.addresses (merchant_id, wallet_id, address)
      values (mid, w.id, key);
    end if;
  end if;
  return (select to_jsonb(v) from invoices.wallets v where v.merchant_id = mid and v.id = w.id);
end
$$;

comment on function invoices.create_wallet(text, text, text, integer, text) is
  'Watch-only wallet for an asset (BTC, ETH, USDC, KAS) of the current merchant: xpub = the account-level extended public key (BTC zpub/xpub at m/84''/0''/0'', vpub/tpub on test networks; EVM xpub at m/44''/60''/0''; Kaspa kpub/ktub at m/44''/111111''/0''), receive addresses <account>/0/i; or address = one bring-your-own address (EVM: EIP-55 checksummed). Never a private key. gap_limit: derived addresses without a payment allowed at once (default 20). network: mainnet, testnet, regtest, devnet, simnet. Replaces the active wallet of that asset. A key or address belongs to one merchant: another merchant''s raises 23505; the merchant''s own earlier key reactivates that wallet (its derived addresses and next index kept, gap_limit and network as given).';

create view invoices.wallets with (security_barrier) as
select w.merchant_id, w.id, w.asset, w.network, w.xpub, w.xpub is null as bring_your_own,
       case when w.xpub is null then
         (select a.address from invoices_internal.addresses a
           where a.merchant_id = w.merchant_id and a.wallet_id = w.id limit 1) end as address,
       w.gap_limit, w.next_index as derived_addresses, w.active, w.created_at,
       (select count(*) from invoices_internal.addresses a
         where a.merchant_id = w.merchant_id and a.wallet_id = w.id and a.invoice_id is not null) as addresses_in_use
  from invoices_internal.wallets w
 where w.merchant_id = any ((select invoices_internal.readable_merchants('wallets', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.wallets is
  'Watch-only wallets of the current merchant: asset, network, the extended public key or the bring-your-own address (nothing more secret exists), gap limit, how many addresses were derived and how many are held by live invoices.';

create view invoices.addresses with (security_barrier) as
select a.merchant_id, a.wallet_id, w.asset, w.network, a.id, a.address, a.derivation_index,
       case when a.invoice_id is not null then 'assigned'
            when a.available_at > now() then 'paused'
            else 'free' end as state,
       i.invoice_number, a.invoice_id, a.last_invoice_id, a.available_at, a.times_assigned,
       a.first_paid_at, a.created_at
  from invoices_internal.addresses a
  join invoices_internal.wallets w on w.merchant_id = a.merchant_id and w.id = a.wallet_id
  left join invoices_internal.invoices i on i.merchant_id = a.merchant_id and i.id = a.invoice_id
 where a.merchant_id = any ((select invoices_internal.readable_merchants('addresses', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.addresses is
  'Deposit addresses of the current merchant''s wallets with their derivation index and state: assigned (to the live invoice shown), paused (free again at available_at) or free.';

-- Takes a deposit address for a just-finalized invoice from the merchant's active wallet of
-- its asset. No wallet: no address (the invoice cannot be paid on a chain yet).
create function invoices_internal.assign_address(mid uuid, inv_id uuid) returns void
language plpgsql volatile
as $$
declare
  inv invoices_internal.invoices;
  w invoices_internal.wallets;
  a invoices_internal.addresses;
  derived jsonb;
  unused integer;
begin
  select * into inv from invoices_internal.invoices where merchant_id = mid and id = inv_id;
  if inv.asset is null then
    return;
  end if;
  select * into w from invoices_internal.wallets
   where merchant_id = mid and asset = inv.asset and active;
  if not found then
    return;
  end if;
  -- 1. the oldest free address whose pause is over (concurrent finalizers skip each other's)
  select * into a from invoices_internal.addresses
   where merchant_id = mid and wallet_id = w.id and invoice_id is null and available_at <= now()
   order by available_at, id
   limit 1
   for update skip locked;
  if not found then
    -- 2. derive the next index; the wallet row serializes derivation
    select * into w from invoices_internal.wallets where merchant_id = mid and id = w.id for update;
    if w.xpub is null then
      perform invoices_internal.raise('55000',
        format('the %s address of this merchant is in use by another live invoice', inv.asset), null,
        'a bring-your-own wallet has one address: wait until its invoice is paid, expires or is cancelled, or create_wallet with an xpub');
    end if;
    select count(*) into unused from invoices_internal.addresses
     where merchant_id = mid and wallet_id = w.id and derivation_index is not null and first_paid_at is null
       and derivation_index > coalesce((select max(derivation_index) from invoices_internal.addresses
                                         where merchant_id = mid and wallet_id = w.id and first_paid_at is not null), -1);
    if unused >= w.gap_limit then
      perform invoices_internal.raise('55000',
        format('gap limit reached: %s derived %s addresses have no payment yet', unused, inv.asset),
        jsonb_build_object('errors', jsonb_build_array(jsonb_build_object('field', 'gap_limit',
          'message', format('%s unused addresses in a row; a wallet scanning %s would miss the next', unused, w.gap_limit))))::text,
        'wait for payments or expiries to free addresses, or raise the wallet''s gap_limit');
    end if;
    loop
      derived := invoices_internal.derive_wallet_address(w.asset, w.network, w.xpub, w.next_index);
      if derived ? 'error' then
        perform invoices_internal.raise_error(derived);
      end if;
      -- an index whose address another wallet holds (as its bring-your-own address) is skipped
      exit when not exists (select 1 from invoices_internal.wallet_keys k
                             where k.first_address = derived ->> 'address' and k.asset = w.asset
                               and k.wallet_id <> w.id);
      w.next_index := w.next_index + 1;
    end loop;
    insert into invoices_internal.addresses (merchant_id, wallet_id, address, derivation_index)
    values (mid, w.id, derived->>'address', w.next_index)
    returning * into a;
    update invoices_internal.wallets set next_index = w.next_index + 1 where merchant_id = mid and id = w.id;
  end if;
  update invoices_internal.addresses
     set invoice_id = inv_id, last_invoice_id = inv_id, times_assigned = times_assigned + 1
   where merchant_id = mid and wallet_id = a.wallet_id and id = a.id;
  insert into invoices_internal.address_assignments (merchant_id, address_id, invoice_id)
  values (mid, a.id, inv_id);
  update invoices_internal.invoices set address_id = a.id, deposit_address = a.address
   where merchant_id = mid and id = inv_id;
end
$$;

-- Called by the status trigger when an invoice expires, is cancelled or confirmed.
create function invoices_internal.release_address(mid uuid, inv_id uuid, addr_id bigint, pause_minutes integer)
returns void
language plpgsql volatile
as $$
declare
  available timestamptz := now() + make_interval(mins => pause_minutes);
  released timestamptz := clock_timestamp();  -- (Citus takes no volatile function in an UPDATE)
begin
  update invoices_internal.addresses
     set invoice_id = null, available_at = available
   where merchant_id = mid and id = addr_id and invoice_id = inv_id;
  update invoices_internal.address_assignments set released_at = released
   where merchant_id = mid and address_id = addr_id and invoice_id = inv_id and released_at is null;
end
$$;

-- An invoice opens for payment: its quote and its deposit address.
create function invoices_internal.open_for_payment(mid uuid, inv_id uuid) returns void
language plpgsql volatile
as $$
begin
  perform invoices_internal.lock_quote(mid, inv_id);
  perform invoices_internal.assign_address(mid, inv_id);
end
$$;
