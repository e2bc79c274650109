-- ============================================================================================
-- invoices — chains: which nodes the worker watches
-- ============================================================================================
-- A chain is a row: its family (evm, bitcoin, kaspa), the node's RPC URL, the network, the
-- assets it carries, required confirmations. Changing a chain row takes effect at the next
-- poll, without a restart.
--
-- Needs: 05_errors (raise); 15_tenancy (authorize, may_read)
-- Provides (API): configure_chain(), chains
-- Provides (internal): chains, chain_blocks

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
