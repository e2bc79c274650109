-- ============================================================================================
-- invoices — chains and payment detection
-- ============================================================================================
-- A chain is a row: its family (evm, bitcoin, kaspa), the node's RPC URL, the assets it
-- carries, required confirmations. The worker polls each active chain on a thread (mempool,
-- tip, reorg check, new blocks), looking for transfers to the watched addresses: those of
-- live invoices and those still in their pause window (late payments). Each transfer becomes
-- one row of payments, unique per (chain, txid, output index), so a replay never counts twice.
-- The invoice's status follows the sum of its payments in the quoted asset, through the
-- status machine (audited, events in the outbox). Changing a chain row takes effect at the
-- next poll, without a restart.

create table invoices_internal.chains (
  id               text primary key check (id ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
  family           text not null check (family in ('evm', 'bitcoin', 'kaspa')),
  network          text not null default 'mainnet'
                   check (network in ('mainnet', 'testnet', 'regtest', 'devnet', 'simnet')),
  rpc_url          text not null check (rpc_url ~ '^(https?|wss?)://[^\s/]+'),
  chain_id         bigint,                  -- EVM chain id (8453 = Base), checked against the node
  assets           text[] not null,         -- what is paid on this chain: BTC / ETH, USDC / KAS
  tokens           jsonb not null default '{}'::jsonb,  -- ERC-20: {"USDC": {"contract": "0x…", "decimals": 6}}
  confirmations    integer not null default 1 check (confirmations between 0 and 1000),
  poll_interval_ms integer not null default 1000 check (poll_interval_ms between 50 and 3600000),
  max_blocks_per_poll integer not null default 100 check (max_blocks_per_poll between 1 and 10000),
  start_height     bigint check (start_height >= 0),  -- first poll scans from here (default: the tip)
  -- a mempool payment the node no longer has is gone after 3 polls and this many seconds
  mempool_grace_seconds integer not null default 30 check (mempool_grace_seconds between 0 and 86400),
  active           boolean not null default true,
  -- progress, written by the worker
  cursor_height    bigint,
  cursor_hash      text,
  tip_height       bigint,
  tip_hash         text,
  last_poll_at     timestamptz,
  last_scan_from   bigint,                  -- the first new block of the last poll
  last_watch_at    timestamptz,             -- when the last poll read its watched addresses
  last_error       text,
  last_error_at    timestamptz,
  created_at       timestamptz not null default now(),
  check (assets <@ array['BTC', 'ETH', 'USDC', 'KAS'] and cardinality(assets) > 0)
);

-- The hashes of the blocks scanned lately (the last 100 heights): a reorg is a stored hash the
-- node no longer has at that height.
create table invoices_internal.chain_blocks (
  chain   text not null references invoices_internal.chains (id) on delete cascade,
  height  bigint not null,
  hash    text not null,
  primary key (chain, height)
);

create table invoices_internal.payments (
  merchant_id   uuid not null,
  id            bigint generated always as identity,
  chain         text not null,
  txid          text not null,
  output_index  bigint not null,           -- vout (Bitcoin, Kaspa), log index (ERC-20), -1 (native EVM value)
  address       text not null,
  address_id    bigint not null,
  invoice_id    uuid,                      -- the invoice that held the address (late: the last one)
  asset         text not null,
  amount_base   numeric not null check (amount_base > 0 and scale(amount_base) = 0),  -- satoshi, wei, …
  amount        numeric not null check (amount > 0),
  block_height  bigint,
  block_hash    text,
  status        text not null check (status in ('mempool', 'in_block', 'confirmed', 'reverted')),
  late          boolean not null default false,   -- arrived after the invoice expired
  -- a mempool payment missing from the node's mempool: since when, in how many polls
  missing_since timestamptz,
  missing_polls integer not null default 0,
  detected_at   timestamptz not null default now(),
  confirmed_at  timestamptz,
  reverted_at   timestamptz,
  updated_at    timestamptz not null default now(),
  primary key (merchant_id, id),
  unique (merchant_id, chain, txid, output_index)
);
create index payments_id_idx on invoices_internal.payments (id);
create index payments_tx_idx on invoices_internal.payments (chain, txid, output_index);
create index payments_invoice_idx on invoices_internal.payments (merchant_id, invoice_id);
-- what a poll re-examines: payments not yet confirmed, and those in recent blocks (reorgs)
create index payments_open_idx on invoices_internal.payments (chain, block_height)
  where status in ('mempool', 'in_block');
create index payments_block_idx on invoices_internal.payments (chain, block_height);

-- Configuration ----------------------------------------------------------------------------

create function invoices.configure_chain(
  id               text,
  family           text,
  rpc_url          text,
  assets           text[],
  network          text default 'mainnet',
  confirmations    integer default 1,
  chain_id         bigint default null,
  tokens           jsonb default '{}'::jsonb,
  start_height     bigint default null,
  poll_interval_ms integer default 1000,
  active           boolean default true,
  mempool_grace_seconds integer default 30
) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('configure_chain');  -- first: the caller's scope
  errors jsonb := '[]';
  allowed text[] := case family when 'evm' then array['ETH', 'USDC'] when 'bitcoin' then array['BTC']
                                when 'kaspa' then array['KAS'] end;
  c invoices_internal.chains;
  t record;
begin
  if id is null or id !~ '^[a-z0-9][a-z0-9_-]{0,39}$' then
    errors := errors || '[{"field": "id", "message": "lowercase letters, digits, - and _ (at most 40)"}]';
  end if;
  if allowed is null then
    errors := errors || '[{"field": "family", "message": "must be evm, bitcoin or kaspa"}]';
  elsif assets is null or cardinality(assets) = 0 or not (assets <@ allowed) then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'assets',
      'message', format('a %s chain carries %s', family, array_to_string(allowed, ', '))));
  end if;
  if rpc_url is null or rpc_url !~ '^(https?|wss?)://[^\s/]+' then
    errors := errors || '[{"field": "rpc_url", "message": "must be an http(s) or ws(s) URL"}]';
  end if;
  if network is null or network not in ('mainnet', 'testnet', 'regtest', 'devnet', 'simnet') then
    errors := errors || '[{"field": "network", "message": "must be mainnet, testnet, regtest, devnet or simnet"}]';
  end if;
  if confirmations is null or confirmations not between 0 and 1000 then
    errors := errors || '[{"field": "confirmations", "message": "must be between 0 and 1000"}]';
  end if;
  if poll_interval_ms is null or poll_interval_ms not between 50 and 3600000 then
    errors := errors || '[{"field": "poll_interval_ms", "message": "must be between 50 and 3600000"}]';
  end if;
  if mempool_grace_seconds is null or mempool_grace_seconds not between 0 and 86400 then
    errors := errors || '[{"field": "mempool_grace_seconds", "message": "must be between 0 and 86400"}]';
  end if;
  if jsonb_typeof(tokens) is distinct from 'object' then
    errors := errors || '[{"field": "tokens", "message": "must be an object {\"USDC\": {\"contract\": \"0x…\", \"decimals\": 6}}"}]';
  else
    for t in select key, value from jsonb_each(tokens) loop
      if family <> 'evm' or t.key = 'ETH' or not (t.key = any (assets))
         or coalesce(t.value->>'contract', '') !~ '^0x[0-9a-fA-F]{40}$'
         or coalesce(t.value->>'decimals', '') !~ '^[0-9]{1,2}$' then
        errors := errors || jsonb_build_array(jsonb_build_object('field', 'tokens.' || t.key,
          'message', 'an ERC-20 asset of this chain''s assets with {"contract": "0x<40 hex>", "decimals": 0-99}'));
      end if;
    end loop;
  end if;
  if family = 'evm' and 'USDC' = any (assets) and not (tokens ? 'USDC') then
    errors := errors || '[{"field": "tokens.USDC", "message": "give the token contract: {\"USDC\": {\"contract\": \"0x…\", \"decimals\": 6}}"}]';
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023',
      format('invalid chain: %s', (select string_agg(x->>'field', ', ') from jsonb_array_elements(errors) x)),
      jsonb_build_object('errors', errors)::text,
      'configure_chain(''base'', ''evm'', ''http://127.0.0.1:8545'', ''{ETH,USDC}'', chain_id => 8453, tokens => ''{"USDC": {"contract": "0x…", "decimals": 6}}'')');
  end if;
  insert into invoices_internal.chains as ch (id, family, network, rpc_url, chain_id, assets, tokens,
                                              confirmations, poll_interval_ms, start_height, active,
                                              mempool_grace_seconds)
  values (configure_chain.id, family, network, rpc_url, chain_id, assets, tokens, confirmations,
          poll_interval_ms, start_height, active, mempool_grace_seconds)
  on conflict on constraint chains_pkey do update
     set family = excluded.family, network = excluded.network, rpc_url = excluded.rpc_url,
         chain_id = excluded.chain_id, assets = excluded.assets, tokens = excluded.tokens,
         confirmations = excluded.confirmations, poll_interval_ms = excluded.poll_interval_ms,
         start_height = excluded.start_height, active = excluded.active,
         mempool_grace_seconds = excluded.mempool_grace_seconds,
         -- another node, network or start height: scanning starts again
         cursor_height = case when (ch.rpc_url, ch.network, ch.start_height)
                                   is not distinct from (excluded.rpc_url, excluded.network, excluded.start_height)
                              then ch.cursor_height end,
         cursor_hash = case when (ch.rpc_url, ch.network, ch.start_height)
                                 is not distinct from (excluded.rpc_url, excluded.network, excluded.start_height)
                            then ch.cursor_hash end
  returning * into c;
  return jsonb_build_object('id', c.id, 'family', c.family, 'network', c.network, 'assets', to_jsonb(c.assets),
                            'confirmations', c.confirmations, 'active', c.active,
                            'cursor_height', c.cursor_height);
end
$$;
comment on function invoices.configure_chain(text, text, text, text[], text, integer, bigint, jsonb, bigint, integer, boolean, integer) is
  'Admin: add or change a chain the worker watches (taken into account at its next poll, no restart): family evm / bitcoin / kaspa, the node''s RPC URL, the network its wallets are on (only wallets of that network are credited; the node must be on it: EVM chain_id, Bitcoin/Kaspa network), the assets paid on it, required confirmations (0: a payment counts from the mempool), ERC-20 tokens {"USDC": {"contract", "decimals"}}, where the first poll starts (default: the tip), mempool_grace_seconds (a mempool payment the node no longer has, in 3 polls and at least this long, is reverted; default 30). Returns the chain.';

create function invoices.set_payment_tolerance(percent numeric) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('set_payment_tolerance');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
begin
  if percent is null or percent < 0 or percent >= 100 then
    perform invoices_internal.raise('22023', 'invalid payment tolerance',
      '{"errors":[{"field":"percent","message":"must be at least 0 and below 100"}]}',
      'set_payment_tolerance(0.5): an invoice missing at most 0.5 % counts as paid');
  end if;
  update invoices_internal.merchants set payment_tolerance_percent = percent where id = mid;
  return jsonb_build_object('merchant_id', mid, 'payment_tolerance_percent', percent);
end
$$;
comment on function invoices.set_payment_tolerance(numeric) is
  'The current merchant''s underpayment tolerance: an invoice missing at most this percentage of its asset amount counts as paid (default 0).';

-- The worker's side ------------------------------------------------------------------------

-- Active chains and their settings, read by the worker every second.
create function invoices_internal.active_chains() returns jsonb
language sql stable
as $$
  select coalesce(jsonb_agg(jsonb_build_object(
           'id', c.id, 'family', c.family, 'network', c.network, 'rpc_url', c.rpc_url,
           'chain_id', c.chain_id, 'assets', to_jsonb(c.assets), 'tokens', c.tokens,
           'poll_interval_ms', c.poll_interval_ms) order by c.id), '[]'::jsonb)
    from invoices_internal.chains c
   where c.active
$$;

-- The addresses a poll of the chain looks for: those of live invoices, those in their pause
-- window after an expiry, cancellation or confirmation (late payments), and those with
-- unconfirmed payments.
create function invoices_internal.watched_addresses(chain text) returns setof text
language plpgsql stable
as $$
begin
  return query
  with c as (select * from invoices_internal.chains x where x.id = watched_addresses.chain),
  w as (
    select w.merchant_id, w.id
      from invoices_internal.wallets w, c
     -- a chain credits only wallets of its own network (a testnet never pays a mainnet invoice)
     where w.asset = any (c.assets) and w.network = c.network
  )
  select a.address
    from invoices_internal.addresses a join w on a.merchant_id = w.merchant_id and a.wallet_id = w.id
   where a.invoice_id is not null
  union
  select a.address
    from invoices_internal.addresses a join w on a.merchant_id = w.merchant_id and a.wallet_id = w.id
   where a.invoice_id is null and a.available_at > now()
  union
  select p.address from invoices_internal.payments p
   where p.chain = watched_addresses.chain and p.status in ('mempool', 'in_block');
end
$$;

-- Addresses handed out while a poll ran were not in its watched set: the next poll scans the
-- last poll's new blocks again (rescan_from) when any was handed out since shortly before the
-- last poll read its set. A payment to such an address cannot be in an earlier block: it was
-- sent after the address existed, which was after the poll before began.
create index address_assignments_assigned_idx on invoices_internal.address_assignments (assigned_at);

-- What a poll starts from: the cursor, the recent block hashes, the watched addresses.
create function invoices_internal.chain_poll_input(chain text) returns jsonb
language plpgsql stable
as $$
begin
  return (
    select jsonb_build_object(
      'cursor', case when c.cursor_height is not null
                     then jsonb_build_object('height', c.cursor_height, 'hash', c.cursor_hash) end,
      'recent', coalesce((select jsonb_agg(jsonb_build_object('height', b.height, 'hash', b.hash) order by b.height)
                            from invoices_internal.chain_blocks b where b.chain = c.id), '[]'::jsonb),
      'start_height', c.start_height,
      'max_blocks', c.max_blocks_per_poll,
      'confirmations', c.confirmations,
      'watched', coalesce((select jsonb_agg(a) from invoices_internal.watched_addresses(c.id) a), '[]'::jsonb),
      'watch_at', now(),
      'rescan_from', case when c.last_watch_at is not null and exists (
                            select 1 from invoices_internal.address_assignments x
                             where x.assigned_at > c.last_watch_at - interval '10 seconds')
                          then c.last_scan_from end)
      from invoices_internal.chains c
     where c.id = chain_poll_input.chain);
end
$$;

-- A payment's row as events and views show it.
create function invoices_internal.payment_object(p invoices_internal.payments, tip bigint) returns jsonb
language sql immutable
as $$
  select jsonb_build_object(
    'id', p.id, 'chain', p.chain, 'txid', p.txid, 'output_index', p.output_index, 'address', p.address,
    'asset', p.asset, 'amount', p.amount::text, 'amount_base', p.amount_base::text, 'status', p.status,
    'block_height', p.block_height, 'block_hash', p.block_hash,
    'confirmations', case when p.block_height is null or p.status = 'reverted' then 0
                          else greatest(tip - p.block_height + 1, 0) end,
    'late', p.late)
$$;

-- The invoice's amounts and status follow its payments. The rule (tolerance, partial / paid /
-- confirmed, the fiat share, overpaid, paid_late) is domain::settlement::settle, described in
-- docs/money.md; here the invoice is locked, its rows read, the decision written. Every status
-- step goes through the status machine (the invoices trigger).
create function invoices_internal.settle_invoice(mid uuid, inv_id uuid) returns void
language plpgsql volatile
as $$
declare
  i invoices_internal.invoices;
  decision jsonb;
  step text;
begin
  -- lock
  select * into i from invoices_internal.invoices where merchant_id = mid and id = inv_id for update;
  if not found then
    return;
  end if;
  -- read and decide
  decision := invoices_internal.settlement(
    i.status, i.asset, i.currency, i.total, i.exponent,
    (select q.asset_amount from invoices_internal.quotes q
      where q.merchant_id = mid and q.invoice_id = inv_id order by q.created_at desc limit 1),
    (select m.payment_tolerance_percent from invoices_internal.merchants m where m.id = mid),
    (select jsonb_agg(jsonb_build_object('asset', p.asset, 'amount', p.amount::text, 'status', p.status,
                                         'late', p.late))
       from invoices_internal.payments p where p.merchant_id = mid and p.invoice_id = inv_id));
  if decision is null then
    return;   -- a draft, or a cancelled invoice (its money stays in payments, to refund)
  end if;
  -- write: the amounts first (no status change), so the status events carry them
  update invoices_internal.invoices
     set asset_paid = (decision->>'asset_paid')::numeric, amount_paid = (decision->>'amount_paid')::numeric,
         overpaid = (decision->>'overpaid')::boolean, paid_late = (decision->>'paid_late')::boolean
   where merchant_id = mid and id = inv_id
     and (asset_paid, amount_paid, overpaid, paid_late) is distinct from
         ((decision->>'asset_paid')::numeric, (decision->>'amount_paid')::numeric,
          (decision->>'overpaid')::boolean, (decision->>'paid_late')::boolean);
  for step in select jsonb_array_elements_text(decision->'steps') loop
    update invoices_internal.invoices set status = step where merchant_id = mid and id = inv_id;
  end loop;
end
$$;

-- A payment that is no more (its block left the chain and no mempool has it, or the mempool
-- lost it): reverted, with payment.reverted on its invoice. Returns that invoice (to settle
-- again), if the payment has one.
create function invoices_internal.revert_payment(p invoices_internal.payments, tip bigint, at timestamptz)
returns uuid
language plpgsql volatile
as $$
declare
  pay invoices_internal.payments;
  inv invoices_internal.invoices;
begin
  update invoices_internal.payments set status = 'reverted', reverted_at = at, confirmed_at = null, updated_at = at
   where merchant_id = p.merchant_id and id = p.id
  returning * into pay;
  select * into inv from invoices_internal.invoices where merchant_id = pay.merchant_id and id = pay.invoice_id;
  if inv.id is not null then
    perform invoices_internal.emit_events(inv, '{payment.reverted}', invoices_internal.payment_object(pay, tip));
  end if;
  return inv.id;
end
$$;

-- One poll's findings (domain::detect::PollResult as jsonb): the reorg, the blocks, the
-- transfers in them and in the mempool. Returns counts for worker_status.
create function invoices_internal.record_chain_poll(chain text, result jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  c invoices_internal.chains;
  tip bigint := (result->'tip'->>'height')::bigint;
  fork bigint := (result->>'fork_height')::bigint;
  mempool_known boolean := jsonb_typeof(result->'mempool') = 'array';
  last_block jsonb := result->'blocks'->-1;
  t record;
  pay invoices_internal.payments;
  a record;
  inv invoices_internal.invoices;
  required integer;
  confs integer;
  new_status text;
  orphaned bigint[] := '{}';
  touched bigint[] := '{}';
  invoices_touched uuid[] := '{}';
  is_late boolean;
  confirmed_time timestamptz;
  k record;
  r record;
  fork_hash text;
  watch_at timestamptz;
  received integer := 0;
  confirmed integer := 0;
  reverted integer := 0;
  in_mempool text[] := array(select m->>'txid' || ':' || (m->>'index')
                               from jsonb_array_elements(coalesce(result->'mempool', '[]')) m);
  whole_chain boolean;
  polled_at timestamptz := now();
begin
  select * into c from invoices_internal.chains where id = chain for update;
  if not found then
    return jsonb_build_object('skipped', 'chain removed');
  end if;
  -- 1. a reorg: blocks above the fork are gone; their payments wait to be seen again
  if fork is not null then
    delete from invoices_internal.chain_blocks b where b.chain = c.id and b.height > fork;
    for r in update invoices_internal.payments o
                set block_height = null, block_hash = null, status = 'mempool', updated_at = now()
              where o.chain = c.id and o.block_height > fork and o.status <> 'reverted'
              returning o.id
    loop
      orphaned := orphaned || r.id;
    end loop;
  end if;
  insert into invoices_internal.chain_blocks (chain, height, hash)
  select c.id, (b->>'height')::bigint, b->>'hash' from jsonb_array_elements(result->'blocks') b
  on conflict on constraint chain_blocks_pkey do update set hash = excluded.hash;
  delete from invoices_internal.chain_blocks b where b.chain = c.id and b.height < tip - 100;

  -- 2. transfers: in blocks first, then the mempool (a transaction in both is in its block)
  for t in
    select x.*, 0 as pass from jsonb_to_recordset(result->'transfers')
      as x(txid text, index bigint, address text, asset text, amount_base numeric, amount numeric, block jsonb,
           block_time bigint)
    union all
    select x.*, 1 from jsonb_to_recordset(coalesce(result->'mempool', '[]'))
      as x(txid text, index bigint, address text, asset text, amount_base numeric, amount numeric, block jsonb,
           block_time bigint)
    order by pass
  loop
    select * into pay from invoices_internal.payments q
     where q.chain = c.id and q.txid = t.txid and q.output_index = t.index
     limit 1;
    if found then
      if t.block is not null and (pay.block_hash is distinct from t.block->>'hash' or pay.status = 'reverted') then
        update invoices_internal.payments
           set block_height = (t.block->>'height')::bigint, block_hash = t.block->>'hash',
               status = case when status = 'reverted' then 'in_block' else status end,
               reverted_at = null, missing_polls = 0, missing_since = null, updated_at = now()
         where merchant_id = pay.merchant_id and id = pay.id;
        touched := touched || pay.id;
      elsif t.block is null and pay.status = 'reverted' then
        -- back in the mempool (e.g. re-broadcast after a reorg)
        update invoices_internal.payments
           set status = 'mempool', reverted_at = null, missing_polls = 0, missing_since = null, updated_at = now()
         where merchant_id = pay.merchant_id and id = pay.id;
        touched := touched || pay.id;
      end if;
      continue;
    end if;
    -- a new payment: to the address of which wallet of this chain's network (the asset tells
    -- ETH from USDC)? Which invoice it pays is domain::settlement::holder_when_seen: the one
    -- that held the address when the payment was first seen, so a late payment for an earlier
    -- holder never pays the next one.
    select ad.merchant_id, ad.id,
           (select invoices_internal.payment_holder(array_agg(x.invoice_id), array_agg(x.assigned_at),
                                                    t.block_time, t.block is not null,
                                                    ad.invoice_id, ad.last_invoice_id)
              from invoices_internal.address_assignments x
             where x.merchant_id = ad.merchant_id and x.address_id = ad.id) as invoice_id into a
      from invoices_internal.addresses ad
      join invoices_internal.wallets w on w.merchant_id = ad.merchant_id and w.id = ad.wallet_id
     where ad.address = t.address and w.asset = t.asset and w.network = c.network
     order by ad.invoice_id is null, ad.available_at desc, ad.id
     limit 1;
    if not found then
      continue;   -- watched a moment ago, since removed
    end if;
    -- locks in the order every other path takes them: the invoice, then its address
    select * into inv from invoices_internal.invoices where merchant_id = a.merchant_id and id = a.invoice_id
       for update;
    is_late := inv.id is not null and invoices_internal.payment_is_late(inv.status, inv.expires_at);
    insert into invoices_internal.payments (merchant_id, chain, txid, output_index, address, address_id, invoice_id,
                                            asset, amount_base, amount, block_height, block_hash, status, late)
    values (a.merchant_id, c.id, t.txid, t.index, t.address, a.id, a.invoice_id, t.asset, t.amount_base, t.amount,
            (t.block->>'height')::bigint, t.block->>'hash', case when t.block is null then 'mempool' else 'in_block' end,
            is_late)
    returning * into pay;
    update invoices_internal.addresses set first_paid_at = now()
     where merchant_id = a.merchant_id and id = a.id and first_paid_at is null;
    received := received + 1;
    if inv.id is not null then
      perform invoices_internal.emit_events(inv, '{payment.received}', invoices_internal.payment_object(pay, tip));
    end if;
    touched := touched || pay.id;
  end loop;

  -- 3. orphaned payments not seen again: back in the mempool if it still has them, else reverted
  for pay in
    select * from invoices_internal.payments q
     where q.id = any (orphaned) and q.block_height is null
       and not exists (select 1 from jsonb_array_elements(coalesce(result->'mempool', '[]')) m
                        where m->>'txid' = q.txid and (m->>'index')::bigint = q.output_index)
  loop
    invoices_touched := invoices_touched || invoices_internal.revert_payment(pay, tip, polled_at);
    reverted := reverted + 1;
  end loop;
  touched := touched || orphaned;

  -- 3b. mempool payments the node no longer has (dropped, replaced by fee or nonce, double-
  -- spent): gone once missing from 3 polls that saw the chain up to its tip and for
  -- mempool_grace_seconds; then reverted, and their invoice goes back to pending or partial.
  -- A node that is behind, or one without a mempool API, counts nothing.
  whole_chain := mempool_known and not coalesce((result->>'behind')::boolean, false)
                 and coalesce((last_block->>'height')::bigint, c.cursor_height, -1) >= tip;
  if whole_chain then
    for pay in
      select * from invoices_internal.payments q
       where q.chain = c.id and q.status = 'mempool' and q.block_height is null
    loop
      if pay.txid || ':' || pay.output_index = any (in_mempool) then
        if pay.missing_polls > 0 then
          update invoices_internal.payments set missing_polls = 0, missing_since = null
           where merchant_id = pay.merchant_id and id = pay.id;
        end if;
        continue;
      end if;
      update invoices_internal.payments
         set missing_polls = missing_polls + 1, missing_since = coalesce(missing_since, polled_at)
       where merchant_id = pay.merchant_id and id = pay.id
      returning * into pay;
      if pay.missing_polls >= 3 and pay.missing_since <= polled_at - make_interval(secs => c.mempool_grace_seconds) then
        invoices_touched := invoices_touched || invoices_internal.revert_payment(pay, tip, polled_at);
        reverted := reverted + 1;
      end if;
    end loop;
  end if;

  -- 4. confirmations: every payment not yet confirmed, and those touched by this poll
  for pay in
    select * from invoices_internal.payments q
     where q.chain = c.id and (q.status in ('mempool', 'in_block') or q.id = any (touched))
       and q.status <> 'reverted'
  loop
    select coalesce(i.confirmations, c.confirmations) into required
      from invoices_internal.invoices i where i.merchant_id = pay.merchant_id and i.id = pay.invoice_id;
    required := coalesce(required, c.confirmations);
    confs := case when pay.block_height is null then 0 else greatest(tip - pay.block_height + 1, 0) end;
    new_status := case when confs >= required then 'confirmed'
                       when pay.block_height is not null then 'in_block' else 'mempool' end;
    if new_status <> pay.status then
      confirmed_time := case when new_status = 'confirmed' then now() end;
      update invoices_internal.payments
         set status = new_status, updated_at = now(), confirmed_at = confirmed_time
       where merchant_id = pay.merchant_id and id = pay.id
      returning * into pay;
      invoices_touched := invoices_touched || pay.invoice_id;
      if new_status = 'confirmed' then
        confirmed := confirmed + 1;
        select * into inv from invoices_internal.invoices where merchant_id = pay.merchant_id and id = pay.invoice_id;
        if inv.id is not null then
          perform invoices_internal.emit_events(inv, '{payment.confirmed}', invoices_internal.payment_object(pay, tip));
        end if;
      end if;
    elsif pay.id = any (touched) then
      invoices_touched := invoices_touched || pay.invoice_id;
    end if;
  end loop;

  -- 5. the invoices follow their payments (locked in one order: no deadlocks with the sweeps)
  for k in select i.merchant_id, i.id from invoices_internal.invoices i
            where i.id = any (invoices_touched)
            order by i.merchant_id, i.id
  loop
    perform invoices_internal.settle_invoice(k.merchant_id, k.id);
  end loop;

  -- the chain's row: every value computed first (no subquery or function inside its CASEs)
  if fork is not null then
    fork_hash := (select b.hash from invoices_internal.chain_blocks b where b.chain = c.id and b.height = fork);
  end if;
  -- a lagging node's poll scanned nothing: the addresses handed out before it still need the
  -- rescan it did not do, so its watch time is not kept
  watch_at := case when coalesce((result->>'behind')::boolean, false) then null
                   else (result->>'watch_at')::timestamptz end;

  update invoices_internal.chains
     set tip_height = tip, tip_hash = result->'tip'->>'hash', last_poll_at = now(), last_error = null,
         last_watch_at = coalesce(watch_at, last_watch_at),
         last_scan_from = case when fork is not null then fork + 1
                               when (last_block->>'height')::bigint > coalesce(cursor_height, -1)
                               then coalesce(cursor_height + 1, (result->'blocks'->0->>'height')::bigint)
                               else last_scan_from end,
         cursor_height = coalesce((last_block->>'height')::bigint, case when fork is not null then fork else cursor_height end),
         cursor_hash = coalesce(last_block->>'hash', case when fork is not null then fork_hash else cursor_hash end)
   where id = c.id;
  return jsonb_build_object('tip', tip, 'blocks', jsonb_array_length(result->'blocks'), 'received', received,
                            'confirmed', confirmed, 'reverted', reverted, 'reorg', fork is not null);
end
$$;

create function invoices_internal.record_chain_error(chain text, error text) returns void
language plpgsql volatile
as $$
begin
  -- a node's URL may carry its API key (path, query, user info): errors keep its origin only
  update invoices_internal.chains c
     set last_error = invoices_internal.redact_urls(replace(record_chain_error.error, c.rpc_url, invoices_internal.url_origin(c.rpc_url))),
         last_error_at = now(), last_poll_at = now()
   where c.id = record_chain_error.chain;
end
$$;

-- Views ------------------------------------------------------------------------------------

create view invoices.chains as
select c.id, c.family, c.network, invoices_internal.url_origin(c.rpc_url) as rpc_url, c.chain_id,
       c.assets, c.tokens, c.confirmations, c.poll_interval_ms, c.active,
       c.tip_height, c.cursor_height, c.tip_height - c.cursor_height as blocks_behind,
       c.last_poll_at, invoices_internal.redact_urls(c.last_error) as last_error, c.last_error_at
  from invoices_internal.chains c
 where invoices_internal.may_read('chains', current_user);
comment on view invoices.chains is
  'The chains the worker watches: family, network, node URL (scheme, host and port only: never its path, query or credentials, where hosted nodes keep their key), assets, required confirmations, the node''s tip and how far scanning got, the last error. Change them with configure_chain.';

create view invoices.payments with (security_barrier) as
select p.merchant_id, p.id, p.invoice_id, i.invoice_number, p.chain, p.txid, p.output_index, p.address,
       p.asset, p.amount, p.amount_base, p.status,
       case when p.block_height is null or p.status = 'reverted' then 0
            else greatest(c.tip_height - p.block_height + 1, 0) end as confirmations,
       p.block_height, p.block_hash, p.late, p.detected_at, p.confirmed_at, p.reverted_at
  from invoices_internal.payments p
  join invoices_internal.chains c on c.id = p.chain
  left join invoices_internal.invoices i on i.merchant_id = p.merchant_id and i.id = p.invoice_id
 where p.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('payments', current_user);
comment on view invoices.payments is
  'Payments detected on chain to the current merchant''s addresses: txid and output, amount (exact, and in base units), status mempool / in_block / confirmed / reverted, live confirmations, late (after the invoice expired).';

-- Money that arrived but matched no open invoice is visible, not lost: a payment to a deposit
-- address whose invoice had been cancelled or had expired when the payment was first seen,
-- one in another asset than its invoice's, one that came after its invoice was already paid
-- in full, or one to an address no invoice held. Reverted payments are not money.
create view invoices.unmatched_payments with (security_barrier) as
select u.merchant_id, u.id, u.chain, u.txid, u.output_index, u.address, u.asset, u.amount, u.status,
       u.invoice_id, u.invoice_number, u.reason, u.detected_at
  from (select p.merchant_id, p.id, p.chain, p.txid, p.output_index, p.address, p.asset, p.amount, p.status,
               p.invoice_id, i.invoice_number, p.detected_at,
               case when i.id is null then 'no_invoice'
                    when i.asset is distinct from p.asset then 'other_asset'
                    when i.cancelled_at <= p.detected_at then 'invoice_cancelled'
                    when p.late then 'invoice_expired'
                    when (select coalesce(sum(e.amount), 0) from invoices_internal.payments e
                           where e.merchant_id = p.merchant_id and e.invoice_id = p.invoice_id and e.asset = p.asset
                             and e.status <> 'reverted' and e.id < p.id)
                         >= (select q.asset_amount from invoices_internal.quotes q
                              where q.merchant_id = p.merchant_id and q.invoice_id = p.invoice_id
                              order by q.created_at desc limit 1) then 'invoice_already_paid'
               end as reason
          from invoices_internal.payments p
          left join invoices_internal.invoices i on i.merchant_id = p.merchant_id and i.id = p.invoice_id
         where p.status <> 'reverted'
           and p.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[])
           and invoices_internal.may_read('unmatched_payments', current_user)) u
 where u.reason is not null;
comment on view invoices.unmatched_payments is
  'Payments that arrived but matched no open invoice, so none is lost: reason invoice_cancelled or invoice_expired (first seen after the invoice was cancelled or had expired: refund or apply them), invoice_already_paid (its invoice was paid in full before it), other_asset (not the asset its invoice asked for), no_invoice (an address no invoice held). Reverted payments are left out.';
