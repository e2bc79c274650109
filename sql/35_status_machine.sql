-- ============================================================================================
-- invoices — the status machine: every status change of an invoice, checked, stamped, audited, announced
-- ============================================================================================
-- The triggers of invoices_internal.invoices that make the status machine (domain::status) the
-- only way a status changes: an illegal transition is refused, a legal one stamps its
-- timestamp, writes the audit log and its event (the outbox), and an invoice that ends
-- releases its deposit address to the carousel.
--
-- Needs: 10_tables (check_invoice_row, invoices); 12_outbox (emit_events); 30_wallets
--   (release_address)
-- Provides (internal): invoice_before_update(), invoice_status_machine, invoice_before_insert(), invoice_starts_as_draft

-- The status machine, enforced by the database whichever door a change comes through.
-- check_transition (Rust, domain::status) raises 23514 for an illegal transition and says
-- which timestamp to stamp.
-- (On Citus these triggers run on the shards, whose rows have the shard's own type,
-- invoices_<shard id>: row(new.*)::invoices_internal.invoices hands the helpers the table's;
-- passing new itself fails there, "check_invoice_row(invoices_<shard id>) does not exist".)
create function invoices_internal.invoice_before_update() returns trigger
language plpgsql
as $$
declare
  t text[];
begin
  if new.id <> old.id or new.merchant_id <> old.merchant_id or new.invoice_number <> old.invoice_number
     or new.number_seq <> old.number_seq or new.slug <> old.slug or new.created_at <> old.created_at then
    raise exception 'invoice % cannot change its identity (id, merchant, number, slug)', old.invoice_number
      using errcode = '23514';
  end if;
  if old.status <> 'draft' and (new.currency, new.subtotal, new.discount_amount, new.tax_rate,
                                new.tax_amount, new.total)
      is distinct from (old.currency, old.subtotal, old.discount_amount, old.tax_rate,
                        old.tax_amount, old.total) then
    raise exception 'invoice % is %: its amounts are locked', old.invoice_number, old.status
      using errcode = '23514', hint = 'only draft invoices can change their amounts';
  end if;
  -- a statement that gives updated_at (the functions that change a status give now()) stamps
  -- the row with it: on Citus that is the coordinator's time, the one the transaction's other
  -- rows carry (quotes, the returned object), not the time this shard's transaction began
  if new.updated_at is not distinct from old.updated_at then
    new.updated_at := now();
  end if;
  if new.status is distinct from old.status then
    t := invoices_internal.check_transition(old.status, new.status);
    case t[1]
      when 'finalized_at' then new.finalized_at := new.updated_at;
      when 'partially_paid_at' then new.partially_paid_at := new.updated_at;
      when 'paid_at' then new.paid_at := new.updated_at;
      when 'confirmed_at' then new.confirmed_at := new.updated_at;
      when 'expired_at' then new.expired_at := new.updated_at;
      when 'overdue_at' then new.overdue_at := new.updated_at;
      when 'cancelled_at' then new.cancelled_at := new.updated_at;
      when 'voided_at' then new.voided_at := new.updated_at;
      when 'marked_uncollectible_at' then new.marked_uncollectible_at := new.updated_at;
      else null;
    end case;
    -- the audit row and the outbox, in the same transaction (one statement)
    perform invoices_internal.emit_events(row(new.*)::invoices_internal.invoices, array[t[2]], null, array[old.status], array[new.status]);
    -- expiry, cancellation and confirmation release the deposit address after its pause (the
    -- invoice's pause_minutes, else invoices.address_pause_minutes: a day), so a late payment
    -- to it still finds its invoice instead of the address's next holder
    -- (the invoice keeps showing deposit_address; address_id goes, so an invoice revived by
    -- a late payment or a reorg never claims an address the carousel has handed on)
    if new.status in ('expired', 'cancelled', 'confirmed', 'void') and old.address_id is not null then
      perform invoices_internal.release_address(new.merchant_id, new.id, old.address_id,
        coalesce(new.pause_minutes, current_setting('invoices.address_pause_minutes')::int));
      new.address_id := null;
    end if;
  end if;
  perform invoices_internal.check_invoice_row(row(new.*)::invoices_internal.invoices);
  return new;
end
$$;

create trigger invoice_status_machine
  before update on invoices_internal.invoices
  for each row execute function invoices_internal.invoice_before_update();

-- A new invoice starts as draft; create_invoice(send => true) inserts it finalized at once,
-- which is the draft -> pending transition and is audited as both events. Its audit rows and
-- outbox events are written here, before the row (a failing insert takes them back with it):
-- one trigger and one statement instead of an AFTER trigger's two (create_invoice is the hot
-- path). Invoices are never inserted with ON CONFLICT, which could skip the row after this.
create function invoices_internal.invoice_before_insert() returns trigger
language plpgsql
as $$
begin
  if new.status = 'pending' then
    new.finalized_at := new.created_at;   -- draft -> pending, always legal (the statement's time)
  elsif new.status <> 'draft' then
    raise exception 'a new invoice starts as draft, not %', new.status
      using errcode = '23514', hint = 'create it, then call invoices.finalize_invoice';
  end if;
  perform invoices_internal.check_invoice_row(row(new.*)::invoices_internal.invoices);
  if new.status = 'pending' then
    perform invoices_internal.emit_events(row(new.*)::invoices_internal.invoices, '{invoice.created,invoice.finalized}', null,
                                          '{NULL,draft}', '{draft,pending}');
  else
    perform invoices_internal.emit_events(row(new.*)::invoices_internal.invoices, '{invoice.created}', null, '{NULL}', '{draft}');
  end if;
  return new;
end
$$;

create trigger invoice_starts_as_draft
  before insert on invoices_internal.invoices
  for each row execute function invoices_internal.invoice_before_insert();
