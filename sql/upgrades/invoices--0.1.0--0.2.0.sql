-- invoices 0.1.0 -> 0.2.0 (ALTER EXTENSION invoices UPDATE TO '0.2.0')
--
-- Every change to the SQL of the extension after 0.1.0 is written here as well, by hand, so an
-- installed 0.1.0 becomes exactly what CREATE EXTENSION installs at 0.2.0 (tests/upgrade.sh
-- compares the two through the catalog).

-- Payment detection: a poll that ran while addresses were handed out scans its blocks again
-- in the next poll (those addresses were not in its watched set).
alter table invoices_internal.chains
  add column last_scan_from bigint,
  add column last_watch_at timestamptz;
create index address_assignments_assigned_idx on invoices_internal.address_assignments (assigned_at);

create or replace function invoices_internal.chain_poll_input(chain text) returns jsonb
language sql stable
as $$
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
   where c.id = chain
$$;

create or replace function invoices_internal.record_chain_poll(chain text, result jsonb) returns jsonb
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
  received integer := 0;
  confirmed integer := 0;
  reverted integer := 0;
begin
  select * into c from invoices_internal.chains where id = chain for update;
  if not found then
    return jsonb_build_object('skipped', 'chain removed');
  end if;
  -- 1. a reorg: blocks above the fork are gone; their payments wait to be seen again
  if fork is not null then
    delete from invoices_internal.chain_blocks b where b.chain = c.id and b.height > fork;
    with o as (
      update invoices_internal.payments o
         set block_height = null, block_hash = null, status = 'mempool', updated_at = now()
       where o.chain = c.id and o.block_height > fork and o.status <> 'reverted'
      returning o.id
    )
    select coalesce(array_agg(o.id), '{}') into orphaned from o;
  end if;
  insert into invoices_internal.chain_blocks (chain, height, hash)
  select c.id, (b->>'height')::bigint, b->>'hash' from jsonb_array_elements(result->'blocks') b
  on conflict on constraint chain_blocks_pkey do update set hash = excluded.hash;
  delete from invoices_internal.chain_blocks b where b.chain = c.id and b.height < tip - 100;

  -- 2. transfers: in blocks first, then the mempool (a transaction in both is in its block)
  for t in
    select x.*, 0 as pass from jsonb_to_recordset(result->'transfers')
      as x(txid text, index bigint, address text, asset text, amount_base numeric, amount numeric, block jsonb)
    union all
    select x.*, 1 from jsonb_to_recordset(coalesce(result->'mempool', '[]'))
      as x(txid text, index bigint, address text, asset text, amount_base numeric, amount numeric, block jsonb)
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
               reverted_at = null, updated_at = now()
         where merchant_id = pay.merchant_id and id = pay.id;
        touched := touched || pay.id;
      elsif t.block is null and pay.status = 'reverted' then
        -- back in the mempool (e.g. re-broadcast after a reorg)
        update invoices_internal.payments set status = 'mempool', reverted_at = null, updated_at = now()
         where merchant_id = pay.merchant_id and id = pay.id;
        touched := touched || pay.id;
      end if;
      continue;
    end if;
    -- a new payment: to the address of which wallet (the asset tells ETH from USDC)?
    select ad.merchant_id, ad.id, coalesce(ad.invoice_id, ad.last_invoice_id) as invoice_id into a
      from invoices_internal.addresses ad
      join invoices_internal.wallets w on w.merchant_id = ad.merchant_id and w.id = ad.wallet_id
     where ad.address = t.address and w.asset = t.asset
     -- the live holder, else the one released last (a late payment)
     order by ad.invoice_id is null, ad.available_at desc, ad.id
     limit 1;
    if not found then
      continue;   -- watched a moment ago, since removed
    end if;
    -- locks in the order every other path takes them: the invoice, then its address
    select * into inv from invoices_internal.invoices where merchant_id = a.merchant_id and id = a.invoice_id
       for update;
    insert into invoices_internal.payments (merchant_id, chain, txid, output_index, address, address_id, invoice_id,
                                            asset, amount_base, amount, block_height, block_hash, status, late)
    values (a.merchant_id, c.id, t.txid, t.index, t.address, a.id, a.invoice_id, t.asset, t.amount_base, t.amount,
            (t.block->>'height')::bigint, t.block->>'hash', case when t.block is null then 'mempool' else 'in_block' end,
            coalesce(inv.status in ('expired', 'cancelled') or inv.expires_at < now() and inv.status in ('pending', 'overdue'), false))
    returning * into pay;
    update invoices_internal.addresses set first_paid_at = coalesce(first_paid_at, now())
     where merchant_id = a.merchant_id and id = a.id;
    received := received + 1;
    if inv.id is not null then
      perform invoices_internal.emit_event(inv, 'payment.received', invoices_internal.payment_object(pay, tip));
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
    update invoices_internal.payments set status = 'reverted', reverted_at = now(), confirmed_at = null, updated_at = now()
     where merchant_id = pay.merchant_id and id = pay.id
    returning * into pay;
    reverted := reverted + 1;
    select * into inv from invoices_internal.invoices where merchant_id = pay.merchant_id and id = pay.invoice_id;
    if inv.id is not null then
      perform invoices_internal.emit_event(inv, 'payment.reverted', invoices_internal.payment_object(pay, tip));
      invoices_touched := invoices_touched || inv.id;
    end if;
  end loop;
  touched := touched || orphaned;

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
      update invoices_internal.payments
         set status = new_status, updated_at = now(),
             confirmed_at = case when new_status = 'confirmed' then now() end
       where merchant_id = pay.merchant_id and id = pay.id
      returning * into pay;
      invoices_touched := invoices_touched || pay.invoice_id;
      if new_status = 'confirmed' then
        confirmed := confirmed + 1;
        select * into inv from invoices_internal.invoices where merchant_id = pay.merchant_id and id = pay.invoice_id;
        if inv.id is not null then
          perform invoices_internal.emit_event(inv, 'payment.confirmed', invoices_internal.payment_object(pay, tip));
        end if;
      end if;
    elsif pay.id = any (touched) then
      invoices_touched := invoices_touched || pay.invoice_id;
    end if;
  end loop;

  -- 5. the invoices follow their payments (locked in one order: no deadlocks with the sweeps)
  perform invoices_internal.settle_invoice(i.merchant_id, i.id)
     from invoices_internal.invoices i
    where i.id = any (invoices_touched)
    order by i.merchant_id, i.id;

  update invoices_internal.chains
     set tip_height = tip, tip_hash = result->'tip'->>'hash', last_poll_at = now(), last_error = null,
         last_watch_at = coalesce((result->>'watch_at')::timestamptz, last_watch_at),
         last_scan_from = case when fork is not null then fork + 1
                               when (last_block->>'height')::bigint > coalesce(cursor_height, -1)
                               then coalesce(cursor_height + 1, (result->'blocks'->0->>'height')::bigint)
                               else last_scan_from end,
         cursor_height = coalesce((last_block->>'height')::bigint, case when fork is not null then fork else cursor_height end),
         cursor_hash = coalesce(last_block->>'hash',
                                case when fork is not null
                                     then (select b.hash from invoices_internal.chain_blocks b where b.chain = c.id and b.height = fork)
                                     else cursor_hash end)
   where id = c.id;
  return jsonb_build_object('tip', tip, 'blocks', jsonb_array_length(result->'blocks'), 'received', received,
                            'confirmed', confirmed, 'reverted', reverted, 'reorg', fork is not null);
end
$$;
