-- ============================================================================================
-- invoices — the outbox: events, webhook deliveries and e-mails, in the transaction that causes them
-- ============================================================================================
-- Every status change writes its event in the same transaction (the status machine calls
-- emit_events), and the event fans out to one delivery per matching endpoint and to the
-- invoice's own callback_url; an invoice sent by e-mail queues its e-mail the same way. The
-- worker drains both queues outside any transaction (webhooks: 65_webhooks.sql; e-mails:
-- 87_email.sql), with leases, retries on invoices.webhook_retry_schedule and dead letters.
--
-- Needs: 05_errors (raise); 10_tables (audit_log, current_actor, invoices, merchants, …)
-- Provides (internal): events, events_immutable, webhook_endpoints, webhook_deliveries, webhook_attempts, emit_events(), retry_count(), retry_schedule(), release_delivery_leases(), emails, queue_invoice_email()

create table invoices_internal.events (
  merchant_id uuid not null,
  id          uuid not null default invoices_internal.uuid_v7(),
  event       text not null,
  invoice_id  uuid,
  data        jsonb not null,
  created_at  timestamptz not null default clock_timestamp(),
  primary key (merchant_id, id)
);

create trigger events_immutable
  before update or delete on invoices_internal.events
  for each row execute function invoices_internal.refuse_change(
    'events are immutable (%s refused)', 'events are written by the status changes that caused them');

create table invoices_internal.webhook_endpoints (
  merchant_id uuid not null references invoices_internal.merchants (id),
  id          uuid not null default invoices_internal.uuid_v7(),
  url         text not null check (url ~ '^https?://[^\s/]+'),
  events      text[] not null default '{*}',
  description text,
  secret      text not null,
  active      boolean not null default true,
  created_at  timestamptz not null default now(),
  deleted_at  timestamptz,
  -- the body and headers deliveries take: the project's own, or a seed's (domain::seeds::webhooks)
  format      text not null default 'invoices' check (format in ('invoices', 'living_invoices', 'btpay')),
  primary key (merchant_id, id)
);

create table invoices_internal.webhook_deliveries (
  merchant_id      uuid not null,
  id               bigint generated always as identity,
  event_id         uuid not null,
  endpoint_id      uuid,                   -- null: the invoice's callback_url
  url              text not null,
  secret           text,
  max_retries      integer not null,
  status           text not null default 'pending'
                   check (status in ('pending', 'delivering', 'delivered', 'dead')),
  attempts         integer not null default 0,
  next_attempt_at  timestamptz not null default now(),
  lease_until      timestamptz,
  last_status_code integer,
  last_error       text,
  delivered_at     timestamptz,
  created_at       timestamptz not null default clock_timestamp(),
  primary key (merchant_id, id)
);

create index webhook_deliveries_due_idx on invoices_internal.webhook_deliveries (next_attempt_at)
  where status in ('pending', 'delivering');

create table invoices_internal.webhook_attempts (
  merchant_id      uuid not null,
  delivery_id      bigint not null,
  attempt          integer not null,
  started_at       timestamptz not null,
  latency_ms       integer,
  status_code      integer,
  response_excerpt text,                   -- first 1 KiB of the response body
  error            text,
  primary key (merchant_id, delivery_id, attempt)
);

-- The events of a status change (one, or created + finalized for an invoice created finalized)
-- and their deliveries, in the caller's transaction, in one statement. Payment events carry the
-- payment too (data.payment). A status change passes its audit rows too (audit_from/audit_to,
-- one per event), written by the same statement.
create function invoices_internal.emit_events(i invoices_internal.invoices, events text[], payment jsonb default null,
                                              audit_from text[] default null, audit_to text[] default null)
returns void
language plpgsql volatile
as $$
declare
  data jsonb := jsonb_build_object(
    'id', i.id, 'invoice_number', i.invoice_number, 'status', i.status, 'currency', i.currency,
    'total', i.total::text, 'amount_paid', i.amount_paid::text, 'asset', i.asset,
    'asset_paid', i.asset_paid::text, 'address', i.deposit_address, 'overpaid', i.overpaid,
    'paid_late', i.paid_late, 'order_id', i.order_id, 'metadata', i.metadata);
  ids uuid[] := '{}';
  retries integer;
begin
  if payment is not null then
    data := data || jsonb_build_object('payment', payment);
  end if;
  for n in 1 .. cardinality(events) loop
    ids := ids || invoices_internal.uuid_v7();   -- in the order of the events
  end loop;
  -- a statement per table, each naming the merchant (on Citus: its shard); the deliveries'
  -- statement only when someone listens (an endpoint of the merchant, or the invoice's callback)
  if audit_to is not null then
    insert into invoices_internal.audit_log (merchant_id, invoice_id, from_status, to_status, event, actor)
    select i.merchant_id, i.id, t.from_status, t.to_status, t.event, invoices_internal.current_actor()
      from unnest(audit_from, audit_to, events) t(from_status, to_status, event);
  end if;
  insert into invoices_internal.events (merchant_id, id, event, invoice_id, data)
  select i.merchant_id, e.id, e.event, i.id, data
    from unnest(ids, events) e(id, event);
  if i.callback_url is not null
     or exists (select 1 from invoices_internal.webhook_endpoints w where w.merchant_id = i.merchant_id and w.active) then
    retries := invoices_internal.retry_count();
    insert into invoices_internal.webhook_deliveries (merchant_id, event_id, endpoint_id, url, secret, max_retries)
    select i.merchant_id, d.event_id, d.endpoint_id, d.url, d.secret, d.max_retries
      from (select ev.id as event_id, ev.event, ev.n, w.id as endpoint_id, w.url, null::text as secret,
                   retries as max_retries, 1 as kind
              from unnest(ids, events) with ordinality ev(id, event, n)
              join invoices_internal.webhook_endpoints w
                on w.merchant_id = i.merchant_id and w.active and ('*' = any (w.events) or ev.event = any (w.events))
            union all
            select ev.id, ev.event, ev.n, null, i.callback_url, i.callback_secret, coalesce(i.attempts_callback, retries), 2
              from unnest(ids, events) with ordinality ev(id, event, n)
             where i.callback_url is not null
               -- an invoice may name the events its callback takes (Kibble's: paid, partial)
               and (i.metadata->'callback_events' is null or i.metadata->'callback_events' ? ev.event)) d
     order by d.n, d.kind, d.endpoint_id;
  end if;
end
$$;

-- How many retries invoices.webhook_retry_schedule allows (a delivery's max_retries), without
-- parsing the intervals; inlined into the statements that use it.
create function invoices_internal.retry_count() returns integer
language sql stable
as $$
  select cardinality(string_to_array(current_setting('invoices.webhook_retry_schedule'), ','))
$$;

-- invoices.webhook_retry_schedule as intervals ('1min,5min,15min,1h,2h').
create function invoices_internal.retry_schedule() returns interval[]
language sql stable
as $$
  select array(select btrim(x)::interval
                 from unnest(string_to_array(current_setting('invoices.webhook_retry_schedule'), ',')) x)
$$;

-- At the worker's start: leases of a previous incarnation (killed mid-delivery) are void.
create function invoices_internal.release_delivery_leases() returns integer
language plpgsql volatile
as $$
declare
  n integer;
begin
  update invoices_internal.webhook_deliveries
     set status = 'pending', lease_until = null, next_attempt_at = least(next_attempt_at, now())
   where status = 'delivering';
  get diagnostics n = row_count;
  return n;
end
$$;

create table invoices_internal.emails (
  merchant_id      uuid not null,
  id               bigint generated always as identity,
  invoice_id       uuid not null,
  recipient        text not null check (invoices_internal.is_email(recipient)),
  status           text not null default 'queued' check (status in ('queued', 'sending', 'sent', 'failed', 'dead')),
  attempts         integer not null default 0,
  max_attempts     integer not null,
  next_attempt_at  timestamptz not null default now(),
  lease_until      timestamptz,
  last_error       text,
  relay_response   text,
  created_at       timestamptz not null default now(),
  sent_at          timestamptz,
  -- the invoice itself, or a reminder (its schedule entry: days relative to the due date)
  kind             text not null default 'invoice' check (kind in ('invoice', 'reminder')),
  reminder_days    integer check ((kind = 'reminder') = (reminder_days is not null)),
  primary key (merchant_id, id),
  foreign key (merchant_id, invoice_id) references invoices_internal.invoices (merchant_id, id)
);

create index emails_due_idx on invoices_internal.emails (next_attempt_at) where status in ('queued', 'failed', 'sending');

create index emails_invoice_idx on invoices_internal.emails (merchant_id, invoice_id);

-- Queues the e-mail of one invoice to `recipient` (default: its customer).
create function invoices_internal.queue_invoice_email(mid uuid, invoice_id uuid, recipient text default null)
returns invoices_internal.emails
language plpgsql volatile
as $$
declare
  i invoices_internal.invoices;
  e invoices_internal.emails;
  to_addr text;
begin
  select * into i from invoices_internal.invoices v where v.merchant_id = mid and v.id = invoice_id;
  to_addr := btrim(coalesce(nullif(btrim(recipient), ''), i.customer_email, ''));
  if to_addr = '' then
    perform invoices_internal.raise('22023', format('invoice %s has no customer e-mail to send it to', i.invoice_number),
      '{"errors":[{"field":"customer_email","message":"is required to send the invoice (or pass to_email)"}]}',
      'create the invoice with customer_email, or call send_invoice(ref, to_email => ''…'')');
  end if;
  if not invoices_internal.is_email(to_addr) then
    perform invoices_internal.raise('22023', format('invalid e-mail address %s', to_addr),
      '{"errors":[{"field":"to_email","message":"is not an e-mail address"}]}', 'pass an address such as bob@example.com');
  end if;
  insert into invoices_internal.emails (merchant_id, invoice_id, recipient, max_attempts)
  values (mid, i.id, to_addr, invoices_internal.retry_count() + 1)
  returning * into e;
  return e;
end
$$;
