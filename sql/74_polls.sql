-- ============================================================================================
-- invoices — polls: what the worker reads before a poll and records after it
-- ============================================================================================
-- The worker polls each active chain on a thread (mempool, tip, reorg check, new blocks),
-- looking for transfers to the watched addresses: those of live invoices and those still in
-- their pause window (late payments). record_chain_poll records one poll's findings in one
-- transaction: reorgs, new payments (matched to the invoice that held the address when the
-- payment was first seen), vanished mempool payments, confirmations, then settlement.
--
-- Needs: 10_tables (invoices); 12_outbox (emit_events); 30_wallets (address_assignments,
--   addresses, wallets); 70_chains (chain_blocks, chains); 72_payments (payment_object,
--   payments, revert_payment, settle_invoice)
-- Provides (internal): active_chains(), watched_addresses(), chain_poll_input(), record_chain_poll(), record_chain_error()

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

-- What a poll starts from: the cursor and the recent block hashes. The watched addresses are
-- read by the worker as a text array in the same transaction (watched_addresses()): as jsonb,
-- 100,000 of them passed through jsonb, its text and a JSON tree on every poll (issue 24).
create function invoices_internal.chain_poll_input(chain text) returns jsonb
language plpgsql stable
as $$
declare
  c invoices_internal.chains;
  recent jsonb;
  rescan boolean;
begin
  -- one statement per question (on Citus: the chain's rows are on every node, the addresses
  -- and assignments on the workers, and a subquery may not mix the two)
  select * into c from invoices_internal.chains x where x.id = chain_poll_input.chain;
  if not found then
    return null;
  end if;
  select coalesce(jsonb_agg(jsonb_build_object('height', b.height, 'hash', b.hash) order by b.height), '[]'::jsonb)
    into recent from invoices_internal.chain_blocks b where b.chain = c.id;
  rescan := c.last_watch_at is not null and exists (
    select 1 from invoices_internal.address_assignments x where x.assigned_at > c.last_watch_at - interval '10 seconds');
  return jsonb_build_object(
    'cursor', case when c.cursor_height is not null
                   then jsonb_build_object('height', c.cursor_height, 'hash', c.cursor_hash) end,
    'recent', recent,
    'start_height', c.start_height,
    'max_blocks', c.max_blocks_per_poll,
    'confirmations', c.confirmations,
    'watch_at', now(),
    'rescan_from', case when rescan then c.last_scan_from end);
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
  -- on Citus the chain's rows (reference tables) change after reads across the shards in this
  -- transaction: one connection per node keeps that consistent
  perform set_config('citus.multi_shard_modify_mode', 'sequential', true);
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
  -- on Citus the chain's rows (reference tables) change after reads across the shards in this
  -- transaction: one connection per node keeps that consistent
  perform set_config('citus.multi_shard_modify_mode', 'sequential', true);
  -- a node's URL may carry its API key (path, query, user info): errors keep its origin only
  update invoices_internal.chains c
     set last_error = invoices_internal.redact_urls(replace(record_chain_error.error, c.rpc_url, invoices_internal.url_origin(c.rpc_url))),
         last_error_at = now(), last_poll_at = now()
   where c.id = record_chain_error.chain;
end
$$;
