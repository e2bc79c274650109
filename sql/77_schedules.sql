-- ============================================================================================
-- invoices — recurring invoices
-- ============================================================================================
-- A schedule is an invoice template (lines, customer, currency, tax, asset) and a repetition:
-- every N days, every N weeks, or every N months on a day of the month (31: the month's last
-- day in a short month; domain::schedule). Each run falls due at the midnight that starts its
-- date in the merchant's time zone. The worker's `schedules` sweep creates the run's invoice
-- (and sends it when the schedule says so) in one transaction with the run's row and the
-- schedule's advance: a crash before the commit leaves nothing, after it the run is done, so
-- each run makes exactly one invoice. Runs missed while the worker was down are made when it
-- is back (each is an invoice owed); runs that fell due while the schedule was paused are
-- skipped on resume. A schedule ends after its end date or its count of invoices.
--
-- Needs: 05_errors (raise, raise_error); 10_tables (merchants, invoices); 12_outbox (events,
--   webhook_deliveries, retry_count); 15_tenancy (authorize, require_merchant, readable_merchants,
--   session_scope); 50_invoices (create_invoice, prepare_new_invoice)
-- Provides (API): create_schedule(), pause_schedule(), resume_schedule(), cancel_schedule(),
--   set_time_zone(), schedules, upcoming_runs
-- Provides (internal): schedules, schedule_runs, emit_merchant_events(), schedule_object(),
--   schedule_date(), run_due_schedules()

create table invoices_internal.schedules (
  merchant_id     uuid not null references invoices_internal.merchants (id),
  id              uuid not null default invoices_internal.uuid_v7(),
  status          text not null default 'active' check (status in ('active', 'paused', 'cancelled', 'completed')),
  frequency       text not null check (frequency in ('daily', 'weekly', 'monthly')),
  every           integer not null default 1 check (every >= 1),
  day_of_month    integer check (day_of_month between 1 and 31),
  start_date      date not null,
  end_date        date,
  max_invoices    integer check (max_invoices between 1 and 10000),
  send            boolean not null default true,
  due_days        integer check (due_days between 0 and 365),
  template        jsonb not null,             -- create_invoice's arguments for every run
  invoices_made   integer not null default 0,
  next_index      integer not null default 0, -- the position of the next run (0 = the first)
  next_run_date   date,                       -- null once it ended
  next_run_at     timestamptz,
  last_invoice_id uuid,
  last_error      text,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  primary key (merchant_id, id),
  check (end_date is null or end_date >= start_date)
);

create index schedules_due_idx on invoices_internal.schedules (next_run_at) where status = 'active';

create table invoices_internal.schedule_runs (
  merchant_id uuid not null,
  schedule_id uuid not null,
  run         integer not null,          -- 1 = the schedule's first invoice
  run_date    date not null,
  invoice_id  uuid not null,
  created_at  timestamptz not null default now(),
  primary key (merchant_id, schedule_id, run),
  foreign key (merchant_id, schedule_id) references invoices_internal.schedules (merchant_id, id),
  foreign key (merchant_id, invoice_id) references invoices_internal.invoices (merchant_id, id)
);

select pg_catalog.pg_extension_config_dump('invoices_internal.schedules', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.schedule_runs', '');

-- Events that are not about one invoice (schedule.*): written to the outbox like the
-- invoices' and delivered to the merchant's endpoints in the project's own format (the seeds'
-- formats describe invoices only).
create function invoices_internal.emit_merchant_events(mid uuid, events text[], data jsonb, inv_id uuid default null)
returns void
language plpgsql volatile
as $$
declare
  ids uuid[] := '{}';
begin
  for n in 1 .. cardinality(events) loop
    ids := ids || invoices_internal.uuid_v7();
  end loop;
  insert into invoices_internal.events (merchant_id, id, event, invoice_id, data)
  select mid, e.id, e.event, inv_id, data from unnest(ids, events) e(id, event);
  insert into invoices_internal.webhook_deliveries (merchant_id, event_id, endpoint_id, url, secret, max_retries)
  select mid, ev.id, w.id, w.url, null, invoices_internal.retry_count()
    from unnest(ids, events) with ordinality ev(id, event, n)
    join invoices_internal.webhook_endpoints w
      on w.merchant_id = mid and w.active and w.format = 'invoices' and ('*' = any (w.events) or ev.event = any (w.events))
   order by ev.n, w.id;
end
$$;

create function invoices.set_time_zone(time_zone text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('set_time_zone');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
begin
  if time_zone is null or not exists (select 1 from pg_catalog.pg_timezone_names z where z.name = set_time_zone.time_zone) then
    perform invoices_internal.raise('22023', 'invalid time zone',
      '{"errors":[{"field":"time_zone","message":"must be an IANA time zone name, such as Europe/Berlin or America/New_York"}]}',
      'set_time_zone(''Europe/Berlin'')');
  end if;
  update invoices_internal.merchants x set time_zone = set_time_zone.time_zone where x.id = mid;
  -- the active schedules' next runs move to midnight in the new zone
  update invoices_internal.schedules x set next_run_at = x.next_run_date::timestamp at time zone set_time_zone.time_zone
   where x.merchant_id = mid and x.status = 'active';
  return jsonb_build_object('merchant_id', mid, 'time_zone', time_zone);
end
$$;

comment on function invoices.set_time_zone(text) is
  'The current merchant''s time zone (an IANA name; default UTC): recurring invoices fall due at midnight there, reminders at their time there. Returns {merchant_id, time_zone}.';

-- The date of run `idx` of a schedule that has made `made` invoices, or null when it has
-- ended by then. (Its columns, not its row: on Citus a view's row would have a shard's type.)
create function invoices_internal.schedule_date(frequency text, every integer, day_of_month integer, start_date date,
                                                end_date date, max_invoices integer, idx integer, made integer)
returns date
language plpgsql immutable
as $$
declare
  d date;
begin
  if max_invoices is not null and made >= max_invoices then
    return null;
  end if;
  d := invoices_internal.schedule_run_date(frequency, every, day_of_month, start_date, idx);
  if d is null or (end_date is not null and d > end_date) then
    return null;
  end if;
  return d;
end
$$;

create function invoices_internal.schedule_object(s invoices_internal.schedules) returns jsonb
language sql immutable
as $$
  select jsonb_build_object(
    'id', s.id, 'merchant_id', s.merchant_id, 'status', s.status, 'frequency', s.frequency, 'every', s.every,
    'day_of_month', s.day_of_month, 'start_date', s.start_date, 'end_date', s.end_date,
    'count', s.max_invoices, 'send', s.send, 'due_days', s.due_days, 'template', s.template,
    'invoices_made', s.invoices_made, 'next_run_date', s.next_run_date, 'next_run_at', s.next_run_at,
    'last_invoice_id', s.last_invoice_id, 'last_error', s.last_error,
    'created_at', s.created_at, 'updated_at', s.updated_at)
$$;

create function invoices.create_schedule(
  lines            jsonb,
  frequency        text,
  every            integer default null,
  day_of_month     integer default null,
  start_date       date    default null,
  end_date         date    default null,
  count            integer default null,
  send             boolean default true,
  due_days         integer default null,
  customer_email   text    default null,
  customer_name    text    default null,
  customer_company text    default null,
  customer_address text    default null,
  currency         text    default null,
  tax_rate         numeric default null,
  discount_amount  numeric default null,
  asset            text    default null,
  notes            text    default null,
  metadata         jsonb   default null
) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_schedule');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  m invoices_internal.merchants;
  today date;
  start date;
  template jsonb;
  p jsonb;
  problem jsonb;
  errors jsonb := '[]';
  s invoices_internal.schedules;
begin
  select * into m from invoices_internal.merchants x where x.id = mid;
  today := (now() at time zone m.time_zone)::date;
  start := coalesce(start_date, today);
  problem := invoices_internal.check_schedule_rule(coalesce(frequency, ''), every, day_of_month, start);
  if problem is not null then
    errors := errors || ((problem->'error'->>'detail')::jsonb->'errors');
  end if;
  if start < today then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'start_date',
      'message', format('must not be before today in the merchant''s time zone (%s)', m.time_zone)));
  end if;
  if end_date is not null and end_date < start then
    errors := errors || '[{"field": "end_date", "message": "must not be before start_date"}]';
  end if;
  if count is not null and (count < 1 or count > 10000) then
    errors := errors || '[{"field": "count", "message": "must be from 1 to 10000 invoices"}]';
  end if;
  if due_days is not null and (due_days < 0 or due_days > 365) then
    errors := errors || '[{"field": "due_days", "message": "must be from 0 to 365 days after the run"}]';
  end if;
  if send is null then
    errors := errors || '[{"field": "send", "message": "must be true or false"}]';
  end if;
  -- the template is checked as create_invoice checks an invoice (its fields named the same)
  template := jsonb_strip_nulls(jsonb_build_object(
    'lines', lines, 'currency', coalesce(currency, m.default_currency), 'customer_email', customer_email,
    'customer_name', customer_name, 'customer_company', customer_company, 'customer_address', customer_address,
    'tax_rate', tax_rate, 'discount_amount', discount_amount, 'asset', asset, 'notes', notes, 'metadata', metadata));
  p := invoices_internal.prepare_new_invoice(template || jsonb_build_object('issue_date', start));
  if p ? 'error' then
    errors := errors || coalesce((p->'error'->>'detail')::jsonb->'errors', '[]');
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023', 'invalid schedule', jsonb_build_object('errors', errors)::text,
      'create_schedule(lines => …, frequency => ''monthly'', day_of_month => 1): fix the fields listed in the detail');
  end if;

  insert into invoices_internal.schedules (merchant_id, frequency, every, day_of_month, start_date, end_date,
                                           max_invoices, send, due_days, template)
  values (mid, btrim(frequency), coalesce(every, 1),
          case when btrim(frequency) = 'monthly' then coalesce(day_of_month, extract(day from start)::int) end,
          start, end_date, count, send, due_days, template)
  returning * into s;
  s.next_run_date := invoices_internal.schedule_date(s.frequency, s.every, s.day_of_month, s.start_date, s.end_date, s.max_invoices, 0, 0);
  update invoices_internal.schedules x
     set next_run_date = s.next_run_date,
         next_run_at = s.next_run_date::timestamp at time zone m.time_zone,
         status = case when s.next_run_date is null then 'completed' else x.status end
   where x.merchant_id = mid and x.id = s.id
  returning * into s;
  perform invoices_internal.emit_merchant_events(mid, '{schedule.created}', invoices_internal.schedule_object(s));
  return invoices_internal.schedule_object(s);
end
$$;

comment on function invoices.create_schedule(jsonb, text, integer, integer, date, date, integer, boolean, integer, text, text, text, text, text, numeric, numeric, text, text, jsonb) is
  'A recurring invoice: the template (lines, customer, currency, tax, discount, asset, notes, metadata: as create_invoice takes them) and the repetition: frequency daily / weekly / monthly, every N of them, day_of_month for monthly (31: the last day of a short month; default the start''s day), from start_date (default today in the merchant''s time zone) to end_date and/or count invoices. Each run falls due at the midnight of its date in the merchant''s time zone; the worker then creates its invoice (issue_date the run''s date, due_date due_days later) exactly once, and finalizes and sends it when send (default true). Events schedule.created, schedule.invoice_created, schedule.completed. Returns the schedule.';

-- The schedule of the current merchant, locked, or the P0002 "not found".
create function invoices_internal.lock_schedule(mid uuid, schedule_id text) returns invoices_internal.schedules
language plpgsql volatile
as $$
declare
  s invoices_internal.schedules;
begin
  if schedule_id ~* '^[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}$' then
    select * into s from invoices_internal.schedules x where x.merchant_id = mid and x.id = schedule_id::uuid for update;
  end if;
  if s.id is null then
    perform invoices_internal.raise('P0002', format('schedule "%s" not found', schedule_id),
      '{"errors":[{"field":"id","message":"is not a schedule of this merchant"}]}', 'list them in invoices.schedules');
  end if;
  return s;
end
$$;

create function invoices.pause_schedule(id text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('pause_schedule');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  s invoices_internal.schedules := invoices_internal.lock_schedule(mid, pause_schedule.id);
begin
  if s.status <> 'active' then
    perform invoices_internal.raise('23514', format('the schedule is %s: only an active one can be paused', s.status),
      '{"errors":[{"field":"id","message":"is not active"}]}', null);
  end if;
  update invoices_internal.schedules x set status = 'paused', updated_at = now()
   where x.merchant_id = mid and x.id = s.id returning * into s;
  perform invoices_internal.emit_merchant_events(mid, '{schedule.paused}', invoices_internal.schedule_object(s));
  return invoices_internal.schedule_object(s);
end
$$;

comment on function invoices.pause_schedule(text) is
  'Pause an active schedule: no invoice is made while it is paused (event schedule.paused). Returns the schedule.';

create function invoices.resume_schedule(id text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('resume_schedule');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  s invoices_internal.schedules := invoices_internal.lock_schedule(mid, resume_schedule.id);
  tz text := (select x.time_zone from invoices_internal.merchants x where x.id = mid);
  today date := (now() at time zone tz)::date;
  idx integer;
  d date;
begin
  if s.status <> 'paused' then
    perform invoices_internal.raise('23514', format('the schedule is %s: only a paused one can be resumed', s.status),
      '{"errors":[{"field":"id","message":"is not paused"}]}', null);
  end if;
  -- the runs that fell due while it was paused are skipped
  idx := s.next_index;
  loop
    d := invoices_internal.schedule_date(s.frequency, s.every, s.day_of_month, s.start_date, s.end_date, s.max_invoices, idx, s.invoices_made);
    exit when d is null or d >= today or idx > s.next_index + 100000;
    idx := idx + 1;
  end loop;
  update invoices_internal.schedules x
     set status = case when d is null then 'completed' else 'active' end, next_index = idx, next_run_date = d,
         next_run_at = d::timestamp at time zone tz, updated_at = now()
   where x.merchant_id = mid and x.id = s.id returning * into s;
  perform invoices_internal.emit_merchant_events(mid,
    case when s.status = 'completed' then '{schedule.resumed,schedule.completed}'::text[] else '{schedule.resumed}' end,
    invoices_internal.schedule_object(s));
  return invoices_internal.schedule_object(s);
end
$$;

comment on function invoices.resume_schedule(text) is
  'Resume a paused schedule from its next run on or after today (runs that fell due while it was paused are skipped; event schedule.resumed). Returns the schedule.';

create function invoices.cancel_schedule(id text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('cancel_schedule');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  s invoices_internal.schedules := invoices_internal.lock_schedule(mid, cancel_schedule.id);
begin
  if s.status in ('cancelled', 'completed') then
    perform invoices_internal.raise('23514', format('the schedule is already %s', s.status),
      '{"errors":[{"field":"id","message":"has ended"}]}', null);
  end if;
  update invoices_internal.schedules x
     set status = 'cancelled', next_run_date = null, next_run_at = null, updated_at = now()
   where x.merchant_id = mid and x.id = s.id returning * into s;
  perform invoices_internal.emit_merchant_events(mid, '{schedule.cancelled}', invoices_internal.schedule_object(s));
  return invoices_internal.schedule_object(s);
end
$$;

comment on function invoices.cancel_schedule(text) is
  'Cancel a schedule for good: no further invoice (the invoices made stay as they are; event schedule.cancelled). Returns the schedule.';

-- The worker's sweep: each due run in a transaction of its own (a subtransaction here): the
-- schedule locked, the invoice created (and sent), the run recorded, the schedule advanced. A
-- run that fails (a template a change made invalid, no rate for its asset) is retried ten
-- minutes later, its error kept on the schedule.
create function invoices_internal.run_due_schedules(max_runs integer default 100) returns jsonb
language plpgsql volatile
as $$
declare
  k record;
  s invoices_internal.schedules;
  t jsonb;
  tz text;
  inv jsonb;
  d date;
  made integer := 0;
  failed integer := 0;
  retry_at timestamptz;
begin
  for k in select x.merchant_id, x.id from invoices_internal.schedules x
            where x.status = 'active' and x.next_run_at <= now()
            order by x.next_run_at
            limit max_runs
  loop
    begin
      select * into s from invoices_internal.schedules x
       where x.merchant_id = k.merchant_id and x.id = k.id for update skip locked;
      continue when s.id is null or s.status <> 'active' or s.next_run_at > now();
      perform set_config('invoices.merchant_id', k.merchant_id::text, true);
      t := s.template;
      inv := invoices.create_invoice(
        lines => t->'lines', currency => t->>'currency', customer_email => t->>'customer_email',
        customer_name => t->>'customer_name', customer_company => t->>'customer_company',
        customer_address => t->>'customer_address', tax_rate => (t->>'tax_rate')::numeric,
        discount_amount => (t->>'discount_amount')::numeric, issue_date => s.next_run_date,
        due_date => s.next_run_date + s.due_days, notes => t->>'notes',
        metadata => coalesce(t->'metadata', '{}') || jsonb_build_object('schedule_id', s.id, 'schedule_run', s.invoices_made + 1),
        asset => t->>'asset', send => s.send);
      insert into invoices_internal.schedule_runs (merchant_id, schedule_id, run, run_date, invoice_id)
      values (s.merchant_id, s.id, s.invoices_made + 1, s.next_run_date, (inv->>'id')::uuid);
      tz := (select x.time_zone from invoices_internal.merchants x where x.id = s.merchant_id);
      d := invoices_internal.schedule_date(s.frequency, s.every, s.day_of_month, s.start_date, s.end_date, s.max_invoices, s.next_index + 1, s.invoices_made + 1);
      update invoices_internal.schedules x
         set invoices_made = x.invoices_made + 1, next_index = x.next_index + 1, next_run_date = d,
             next_run_at = d::timestamp at time zone tz, last_invoice_id = (inv->>'id')::uuid, last_error = null,
             status = case when d is null then 'completed' else x.status end, updated_at = now()
       where x.merchant_id = s.merchant_id and x.id = s.id
      returning * into s;
      perform invoices_internal.emit_merchant_events(s.merchant_id,
        case when s.status = 'completed' then '{schedule.invoice_created,schedule.completed}'::text[]
             else '{schedule.invoice_created}' end,
        invoices_internal.schedule_object(s) || jsonb_build_object('invoice', inv - 'lines'), (inv->>'id')::uuid);
      made := made + 1;
    exception when others then
      retry_at := now() + interval '10 minutes';
      update invoices_internal.schedules x
         set last_error = left(sqlerrm, 500), next_run_at = retry_at, updated_at = now()
       where x.merchant_id = k.merchant_id and x.id = k.id;
      failed := failed + 1;
    end;
  end loop;
  return jsonb_build_object('invoices_made', made, 'failed', failed);
end
$$;

create view invoices.schedules with (security_barrier) as
select s.merchant_id, s.id, s.status, s.frequency, s.every, s.day_of_month, s.start_date, s.end_date,
       s.max_invoices as count, s.send, s.due_days, s.template, s.invoices_made, s.next_run_date, s.next_run_at,
       s.last_invoice_id, s.last_error, s.created_at, s.updated_at
  from invoices_internal.schedules s
 where s.merchant_id = any ((select invoices_internal.readable_merchants('schedules', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.schedules is
  'Recurring invoices of the current merchant: the template, the repetition, status (active, paused, cancelled, completed), invoices made so far, the next run''s date and instant, and the last run''s error if it failed (retried ten minutes later).';

create view invoices.upcoming_runs with (security_barrier) as
select s.merchant_id, s.id as schedule_id, s.invoices_made + g.k + 1 as run, d.run_date,
       d.run_date::timestamp at time zone m.time_zone as run_at
  from invoices_internal.schedules s
  join invoices_internal.merchants m on m.id = s.merchant_id
  cross join generate_series(0, 4) g(k)
  cross join lateral (select invoices_internal.schedule_date(s.frequency, s.every, s.day_of_month, s.start_date, s.end_date, s.max_invoices,
                                                                  s.next_index + g.k, s.invoices_made + g.k) as run_date) d
 where s.status = 'active' and d.run_date is not null
   and s.merchant_id = any ((select invoices_internal.readable_merchants('upcoming_runs', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.upcoming_runs is
  'The next five runs of each active schedule of the current merchant (fewer when it ends sooner): the number of the invoice it will make, its date and the instant it falls due (midnight in the merchant''s time zone).';
