-- ============================================================================================
-- invoices — sending invoices by e-mail
-- ============================================================================================
-- send_invoice(ref) (and create_invoice(..., send => true) for an invoice with a customer
-- e-mail) queues one e-mail in the same transaction: the customer gets the hosted link and the
-- PDF. The worker delivers the queue through the relay in invoices.smtp_url with the webhooks'
-- machinery: a lease per attempt, retries after invoices.webhook_retry_schedule, dead after
-- the last one (a relay's permanent 5xx refusal is dead at once). The invoice's sent_at is
-- stamped when the relay accepts the first message. Without a relay the e-mails wait.
--
-- Needs: 05_errors (raise); 10_tables (invoices); 12_outbox (emails, queue_invoice_email,
--   retry_schedule); 15_tenancy (authorize, may_read, readable_merchants, require_merchant, session_scope);
--   50_invoices (finalize_invoice, resolve_invoice); 85_documents (invoice_document)
-- Provides (API): send_invoice(), emails, set_reminder_schedule(), invoice_reminders
-- Provides (internal): email_object(), database_setting(), claim_emails(), record_email(),
--   invoice_reminders, send_due_reminders()

create function invoices_internal.email_object(e invoices_internal.emails) returns jsonb
language plpgsql stable
as $$
begin
  return (select jsonb_build_object('id', e.id, 'invoice_id', e.invoice_id,
             'invoice_number', (select invoice_number from invoices_internal.invoices i
                                 where i.merchant_id = e.merchant_id and i.id = e.invoice_id),
             'to', e.recipient, 'status', e.status, 'attempts', e.attempts,
             'next_attempt_at', e.next_attempt_at, 'last_error', e.last_error,
             'created_at', e.created_at, 'sent_at', e.sent_at));
end
$$;

create function invoices.send_invoice(ref text, to_email text default null) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('send_invoice');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  iid uuid := invoices_internal.resolve_invoice(mid, ref);
  i invoices_internal.invoices;
  e invoices_internal.emails;
begin
  select * into i from invoices_internal.invoices v where v.merchant_id = mid and v.id = iid for update;
  if i.status = 'draft' then
    perform invoices.finalize_invoice(iid::text);
  elsif i.status in ('cancelled', 'expired') then
    perform invoices_internal.raise('23514', format('invoice %s is %s: there is nothing to pay', i.invoice_number, i.status),
      null, 'send an open invoice (draft, pending, partial or overdue) or a paid one as a receipt');
  end if;
  e := invoices_internal.queue_invoice_email(mid, iid, to_email);
  return invoices_internal.email_object(e);
end
$$;

comment on function invoices.send_invoice(text, text) is
  'E-mail the invoice to its customer (or to_email): the hosted link and the PDF, delivered by the worker through invoices.smtp_url with retries (the webhook schedule); a draft is finalized first. The invoice''s sent_at is stamped when the relay accepts it. Returns the queued e-mail {id, invoice_number, to, status, attempts, next_attempt_at, …}; follow it in the emails view.';

create view invoices.emails with (security_barrier) as
select e.merchant_id, e.id, e.invoice_id, i.invoice_number, e.recipient as "to", e.status, e.attempts,
       e.max_attempts, e.next_attempt_at, e.last_error, e.relay_response, e.created_at, e.sent_at,
       e.kind, e.reminder_days
  from invoices_internal.emails e
  join invoices_internal.invoices i on i.merchant_id = e.merchant_id and i.id = e.invoice_id
 where e.merchant_id = any ((select invoices_internal.readable_merchants('emails', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.emails is
  'Invoice e-mails of the current merchant: recipient, status (queued, sending, sent, failed = waiting for a retry, dead), attempts, the last error and the relay''s answer; kind invoice or reminder (reminder_days: its schedule entry).';

-- The worker's side: claim due e-mails with a lease, each with what the message needs (the
-- invoice document and its PDF, rendered here), then record each attempt.
-- A setting's value for this database as it is now: the worker's session began before a later
-- ALTER DATABASE … SET (such as invoices.public_base_url, in the e-mails' links) and would
-- otherwise keep the old one.
create function invoices_internal.database_setting(setting text) returns text
language sql stable
as $$
  select coalesce(
    (select substr(c, length(setting) + 2)
       from pg_catalog.pg_db_role_setting s, unnest(s.setconfig) c
      where s.setdatabase = (select oid from pg_catalog.pg_database where datname = current_database())
        and s.setrole = 0 and c like setting || '=%'
      limit 1),
    current_setting(setting, true))
$$;

create function invoices_internal.claim_emails(n integer, lease_seconds integer)
returns table (merchant_id uuid, id bigint, recipient text, merchant_name text, document jsonb, pdf bytea)
language plpgsql volatile
as $$
declare
  lease timestamptz := now() + make_interval(secs => lease_seconds);
  g record;
  k record;
  locked bigint[];
begin
  perform set_config('invoices.public_base_url', invoices_internal.database_setting('invoices.public_base_url'), true);
  -- as claim_deliveries: candidates without locks, then each merchant's locked and leased
  for g in select d.merchant_id as mid, array_agg(d.id) as ids
             from (select x.merchant_id, x.id from invoices_internal.emails x
                    where x.status in ('queued', 'failed', 'sending') and x.next_attempt_at <= now()
                      and (x.status <> 'sending' or x.lease_until < now())
                    order by x.next_attempt_at
                    limit n) d
            group by d.merchant_id
  loop
    locked := '{}';
    for k in select x.id, x.status, x.next_attempt_at, x.lease_until from invoices_internal.emails x
              where x.merchant_id = g.mid and x.id = any (g.ids)
              order by x.id
              for update skip locked
    loop
      if k.status in ('queued', 'failed', 'sending') and k.next_attempt_at <= now()
         and (k.status <> 'sending' or k.lease_until < now()) then
        locked := locked || k.id;
      end if;
    end loop;
    return query
    with claimed as (
      update invoices_internal.emails e
         set status = 'sending', lease_until = lease, next_attempt_at = lease
       where e.merchant_id = g.mid and e.id = any (locked)
      returning e.merchant_id, e.id, e.recipient, e.invoice_id, e.reminder_days)
    -- a reminder's document says so (reminder_days): the message is a reminder's
    select c.merchant_id, c.id, c.recipient, coalesce(i.merchant_snapshot ->> 'name', ''),
           d.doc || case when c.reminder_days is not null
                         then jsonb_build_object('reminder_days', c.reminder_days) else '{}' end,
           invoices_internal.render_invoice_pdf(d.doc)
      from claimed c
      join invoices_internal.invoices i on i.merchant_id = g.mid and i.id = c.invoice_id
      cross join lateral (select invoices_internal.invoice_document(g.mid, c.invoice_id) as doc) d;
  end loop;
end
$$;

create function invoices_internal.record_email(mid uuid, email_id bigint, error text, permanent boolean, relay_response text)
returns void
language plpgsql volatile
as $$
declare
  e invoices_internal.emails;
  inv invoices_internal.invoices;
  schedule interval[] := invoices_internal.retry_schedule();
  retry_at timestamptz;
begin
  select * into e from invoices_internal.emails x where x.merchant_id = mid and x.id = email_id for update;
  if not found or e.status <> 'sending' then
    return;  -- released or recorded already
  end if;
  if error is null then
    update invoices_internal.emails x
       set status = 'sent', attempts = x.attempts + 1, sent_at = now(), lease_until = null,
           last_error = null, relay_response = left(record_email.relay_response, 500)
     where x.merchant_id = mid and x.id = email_id;
    update invoices_internal.invoices i set sent_at = now()
     where i.merchant_id = mid and i.id = e.invoice_id and i.sent_at is null;
    if e.kind = 'reminder' then
      -- (read first: on Citus a function that writes must not run inside a distributed query)
      select * into inv from invoices_internal.invoices i where i.merchant_id = mid and i.id = e.invoice_id;
      perform invoices_internal.emit_events(inv, '{invoice.reminder_sent}');
    end if;
  elsif permanent or e.attempts + 1 >= e.max_attempts then
    update invoices_internal.emails x
       set status = 'dead', attempts = x.attempts + 1, lease_until = null, last_error = left(error, 500)
     where x.merchant_id = mid and x.id = email_id;
  else
    retry_at := now() + coalesce(schedule[e.attempts + 1], schedule[cardinality(schedule)]);
    update invoices_internal.emails x
       set status = 'failed', attempts = x.attempts + 1, lease_until = null, last_error = left(error, 500),
           next_attempt_at = retry_at
     where x.merchant_id = mid and x.id = email_id;
  end if;
end
$$;

-- --------------------------------------------------------------------------------------------
-- Reminders (dunning)
-- --------------------------------------------------------------------------------------------
-- Each merchant has a schedule: days relative to an invoice's due date (default -3, 0 and 7:
-- three days before, on the day, a week after), each falling due at reminder_time in the
-- merchant's time_zone. The worker's `reminders` sweep queues a reminder e-mail for an open
-- invoice (pending, partial, overdue) that was e-mailed to its customer, once per schedule
-- entry: the row of invoice_reminders is the proof (primary key), written in the same
-- transaction as the e-mail, so a crash or a restart never sends one twice. After downtime
-- only the latest entry that fell due is sent (one e-mail, not the backlog), and never one that
-- fell due before the invoice was finalized. A reminder still queued when its invoice is paid
-- or cancelled is withdrawn. The relay's acceptance emits invoice.reminder_sent.
create table invoices_internal.invoice_reminders (
  merchant_id uuid not null,
  invoice_id  uuid not null,
  days        integer not null,          -- the schedule entry
  due_at      timestamptz not null,      -- when it fell due
  email_id    bigint not null,
  created_at  timestamptz not null default now(),
  primary key (merchant_id, invoice_id, days),
  foreign key (merchant_id, invoice_id) references invoices_internal.invoices (merchant_id, id)
);

select pg_catalog.pg_extension_config_dump('invoices_internal.invoice_reminders', '');

create function invoices.set_reminder_schedule(days integer[], send_at time default null, time_zone text default null)
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('set_reminder_schedule');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  errors jsonb := '[]';
  m record;
begin
  if days is null or array_ndims(days) > 1 or cardinality(days) > 10 or array_position(days, null) is not null
     or exists (select 1 from unnest(days) d where d < -90 or d > 365)
     or (select count(distinct d) from unnest(days) d) <> cardinality(days) then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'days', 'message',
      'must list at most 10 distinct whole days from -90 to 365 (relative to the due date; [] turns reminders off)'));
  end if;
  if time_zone is not null and not exists (select 1 from pg_catalog.pg_timezone_names z where z.name = set_reminder_schedule.time_zone) then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'time_zone', 'message',
      'must be an IANA time zone name, such as Europe/Berlin or America/New_York'));
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023', 'invalid reminder schedule', jsonb_build_object('errors', errors)::text,
      'set_reminder_schedule(''{-3,0,7}'', ''09:00'', ''Europe/Berlin'')');
  end if;
  update invoices_internal.merchants x
     set reminder_days = (select coalesce(array_agg(d order by d), '{}') from unnest(days) d),
         reminder_time = coalesce(send_at, x.reminder_time),
         time_zone = coalesce(set_reminder_schedule.time_zone, x.time_zone)
   where x.id = mid
  returning x.reminder_days, x.reminder_time, x.time_zone into m;
  return jsonb_build_object('merchant_id', mid, 'reminder_days', to_jsonb(m.reminder_days),
                            'reminder_time', m.reminder_time, 'time_zone', m.time_zone);
end
$$;

comment on function invoices.set_reminder_schedule(integer[], time, text) is
  'The current merchant''s reminder e-mails: days relative to the due date (negative: before; default {-3,0,7}; {} turns them off), sent at send_at (default 09:00) in time_zone (an IANA name; default UTC). Each open invoice that was e-mailed gets each reminder once; after downtime only the latest one due. Returns {merchant_id, reminder_days, reminder_time, time_zone}.';

-- The worker's sweep: queue the reminders that fell due, withdraw those whose invoice closed.
create function invoices_internal.send_due_reminders(max_queued integer default 500) returns jsonb
language plpgsql volatile
as $$
declare
  k record;
  g record;
  n integer;
  e invoices_internal.emails;
  queued integer := 0;
  withdrawn integer := 0;
begin
  for k in
    select i.merchant_id, i.id, i.customer_email, r.days, r.due_at
      from invoices_internal.invoices i
      join invoices_internal.merchants m on m.id = i.merchant_id
      cross join lateral (
        select d as days, (i.due_date + d + m.reminder_time) at time zone m.time_zone as due_at
          from unnest(m.reminder_days) d
         where (i.due_date + d + m.reminder_time) at time zone m.time_zone <= now()
           and (i.due_date + d + m.reminder_time) at time zone m.time_zone > i.finalized_at
         order by d desc
         limit 1) r
     where i.status in ('pending', 'partial', 'overdue') and i.due_date is not null
       and i.due_date > current_date - 400 and i.sent_at is not null and i.customer_email is not null
       and not exists (select 1 from invoices_internal.invoice_reminders x
                        where x.merchant_id = i.merchant_id and x.invoice_id = i.id and x.days >= r.days)
     limit max_queued
  loop
    -- each statement names its merchant (on Citus: one shard); the reminder's row first, so a
    -- concurrent sweep (or a retry of this one) finds it taken and queues nothing
    insert into invoices_internal.emails (merchant_id, invoice_id, recipient, max_attempts, kind, reminder_days)
    values (k.merchant_id, k.id, k.customer_email, invoices_internal.retry_count() + 1, 'reminder', k.days)
    returning * into e;
    insert into invoices_internal.invoice_reminders (merchant_id, invoice_id, days, due_at, email_id)
    values (k.merchant_id, k.id, k.days, k.due_at, e.id)
    on conflict do nothing;
    if found then
      queued := queued + 1;
    else
      delete from invoices_internal.emails x where x.merchant_id = k.merchant_id and x.id = e.id;
    end if;
  end loop;
  -- withdrawn: found without locks, then written per merchant (on Citus: one shard each)
  for g in select x.merchant_id, array_agg(x.id) as ids
             from invoices_internal.emails x
             join invoices_internal.invoices i on i.merchant_id = x.merchant_id and i.id = x.invoice_id
            where x.kind = 'reminder' and x.status in ('queued', 'failed')
              and i.status not in ('pending', 'partial', 'overdue')
            group by x.merchant_id
  loop
    update invoices_internal.emails x
       set status = 'dead', lease_until = null, last_error = 'withdrawn: the invoice is no longer open'
     where x.merchant_id = g.merchant_id and x.id = any (g.ids) and x.status in ('queued', 'failed');
    get diagnostics n = row_count;
    withdrawn := withdrawn + n;
  end loop;
  return jsonb_build_object('queued', queued, 'withdrawn', withdrawn);
end
$$;

create view invoices.invoice_reminders with (security_barrier) as
select r.merchant_id, r.invoice_id, i.invoice_number, r.days, r.due_at, r.email_id, e.recipient as "to",
       e.status as email_status, e.sent_at, r.created_at
  from invoices_internal.invoice_reminders r
  join invoices_internal.invoices i on i.merchant_id = r.merchant_id and i.id = r.invoice_id
  join invoices_internal.emails e on e.merchant_id = r.merchant_id and e.id = r.email_id
 where r.merchant_id = any ((select invoices_internal.readable_merchants('invoice_reminders', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.invoice_reminders is
  'Reminder e-mails of the current merchant''s invoices: the schedule entry (days relative to the due date), when it fell due, the e-mail and its status (sent, or dead when withdrawn because the invoice was paid or cancelled first).';
