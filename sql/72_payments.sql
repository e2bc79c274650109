-- ============================================================================================
-- invoices — payments and how they settle an invoice
-- ============================================================================================
-- Each transfer to a watched address becomes one row of payments, unique per (chain, txid,
-- output index), so a replay never counts twice. The invoice's status follows the sum of its
-- payments in the quoted asset: the rule is domain::settlement (docs/money.md); settle_invoice
-- locks, reads, calls it and writes, through the status machine.
--
-- Needs: 05_errors (raise); 10_tables (invoices, merchants, quotes); 12_outbox (emit_events);
--   15_tenancy (authorize, may_read, readable_merchants, require_merchant, session_scope); 70_chains (chains)
-- Provides (API): set_payment_tolerance(), payments, unmatched_payments
-- Provides (internal): payments, payment_object(), settle_invoice(), revert_payment()

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
    update invoices_internal.invoices set status = step, updated_at = now() where merchant_id = mid and id = inv_id;
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

create view invoices.payments with (security_barrier) as
select p.merchant_id, p.id, p.invoice_id, i.invoice_number, p.chain, p.txid, p.output_index, p.address,
       p.asset, p.amount, p.amount_base, p.status,
       case when p.block_height is null or p.status = 'reverted' then 0
            else greatest(c.tip_height - p.block_height + 1, 0) end as confirmations,
       p.block_height, p.block_hash, p.late, p.detected_at, p.confirmed_at, p.reverted_at
  from invoices_internal.payments p
  join invoices_internal.chains c on c.id = p.chain
  left join invoices_internal.invoices i on i.merchant_id = p.merchant_id and i.id = p.invoice_id
 where p.merchant_id = any ((select invoices_internal.readable_merchants('payments', current_user) from invoices_internal.session_scope)::uuid[]);

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
                    -- late: the invoice was cancelled when the payment was recorded (its
                    -- detected_at may precede a cancel that committed during the poll)
                    when i.cancelled_at <= p.detected_at or i.cancelled_at is not null and p.late then 'invoice_cancelled'
                    -- a late payment to an expired invoice pays it (paid_late): unmatched only
                    -- while the invoice stays expired
                    when p.late and i.status = 'expired' then 'invoice_expired'
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
           and p.merchant_id = any ((select invoices_internal.readable_merchants('unmatched_payments', current_user) from invoices_internal.session_scope)::uuid[])) u
 where u.reason is not null;

comment on view invoices.unmatched_payments is
  'Payments that arrived but matched no open invoice, so none is lost: reason invoice_cancelled or invoice_expired (first seen after the invoice was cancelled or had expired: refund or apply them), invoice_already_paid (its invoice was paid in full before it), other_asset (not the asset its invoice asked for), no_invoice (an address no invoice held). Reverted payments are left out.';
