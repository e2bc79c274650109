-- ============================================================================================
-- invoices — the background worker's bookkeeping
-- ============================================================================================
-- The worker (src/worker/) runs its tasks on a loop; what happened is data, not log lines:
-- each task's runs, last success, last error and counters are in worker_tasks, each rate
-- source's in rate_sources.
--
-- Needs: 12_outbox (emails, release_delivery_leases); 15_tenancy (may_read); 20_api_keys
--   (api_keys, idempotency_keys); 25_rates_quotes (rate_observations, rate_sources)
-- Provides (API): worker_status
-- Provides (internal): worker_tasks, worker_task_report(), claim_due_rate_sources(), record_rate_fetch(), housekeeping(), worker_recovery()

create table invoices_internal.worker_tasks (
  task                 text primary key,
  runs                 bigint not null default 0,
  failures             bigint not null default 0,
  consecutive_failures integer not null default 0,
  last_run_at          timestamptz,
  last_success_at      timestamptz,
  last_error           text,
  last_error_at        timestamptz,
  last_result          jsonb,
  next_run_at          timestamptz,
  last_error_kind      text     -- spi, json, rpc, config, thread (src/worker/error.rs)
);

-- The worker reports a task's runs since its previous report.
create function invoices_internal.worker_task_report(task text, runs bigint, failures bigint,
                                                     consecutive_failures integer,
                                                     last_success_unix_ms bigint, last_error text,
                                                     last_error_kind text,
                                                     last_result jsonb, next_run_in_ms bigint)
returns void
language sql volatile
as $$
  insert into invoices_internal.worker_tasks as t
    (task, runs, failures, consecutive_failures, last_run_at, last_success_at, last_error, last_error_kind,
     last_error_at, last_result, next_run_at)
  values (task, runs, failures, consecutive_failures, now(), to_timestamp(last_success_unix_ms / 1000.0), last_error,
          last_error_kind, case when last_error is not null then now() end, last_result,
          now() + next_run_in_ms * interval '1 millisecond')
  on conflict on constraint worker_tasks_pkey do update set
    runs = t.runs + excluded.runs,
    failures = t.failures + excluded.failures,
    consecutive_failures = excluded.consecutive_failures,
    last_run_at = excluded.last_run_at,
    last_success_at = coalesce(excluded.last_success_at, t.last_success_at),
    last_error = coalesce(excluded.last_error, t.last_error),
    last_error_kind = case when excluded.last_error is not null then excluded.last_error_kind else t.last_error_kind end,
    last_error_at = coalesce(excluded.last_error_at, t.last_error_at),
    last_result = excluded.last_result,
    next_run_at = excluded.next_run_at
$$;

create view invoices.worker_status as
select t.task, w.pid as worker_pid, w.backend_start as worker_started_at,
       t.runs, t.failures, t.consecutive_failures, t.last_run_at, t.last_success_at,
       t.last_error, t.last_error_at, t.last_result, t.next_run_at, t.last_error_kind
  from invoices_internal.worker_tasks t
  left join lateral (select a.pid, a.backend_start from pg_catalog.pg_stat_activity a
                      where a.backend_type = 'invoices worker' limit 1) w on true
 where invoices_internal.may_read('worker_status', current_user);

comment on view invoices.worker_status is
  'The background worker''s tasks (expiry, rates, …): runs, failures, consecutive failures (the back-off), last run, last success, last error (and its kind: spi, json, rpc, config, thread) and result, next run, and the worker''s pid. A failing task is retried with back-off and never stops the others; the task recovery is what the worker found half done when it started.';

-- Rate sources whose fetch is due, claimed: their next fetch moves a full interval ahead so a
-- slow fetch is not started twice.
create function invoices_internal.claim_due_rate_sources()
returns setof invoices_internal.rate_sources
language plpgsql volatile
as $$
declare
  s invoices_internal.rate_sources;
  next_at timestamptz;
begin
  for s in select * from invoices_internal.rate_sources
            where enabled and next_fetch_at <= now()
            order by id
            for update skip locked
  loop
    next_at := now() + make_interval(secs => s.interval_seconds);
    update invoices_internal.rate_sources set next_fetch_at = next_at, last_fetch_at = now()
     where id = s.id
    returning * into s;
    return next s;
  end loop;
end
$$;

-- The outcome of one fetch: a rate (recorded as an observation) or an error (the source backs
-- off: interval x 2^failures, at most an hour). A bad answer never changes the rate.
create function invoices_internal.record_rate_fetch(source_id bigint, rate numeric, error text)
returns void
language plpgsql volatile
as $$
declare
  s invoices_internal.rate_sources;
  next_at timestamptz;
begin
  select * into s from invoices_internal.rate_sources where id = source_id for update;
  if not found then
    return;
  end if;
  if error is null and rate is not null and rate > 0 then
    next_at := now() + make_interval(secs => s.interval_seconds);
    update invoices_internal.rate_sources
       set last_success_at = now(), last_rate = rate, successes = successes + 1,
           consecutive_failures = 0, next_fetch_at = next_at
     where id = source_id;
    insert into invoices_internal.rate_observations (asset, currency, source, rate)
    values (s.asset, s.currency, s.name, rate);
  else
    next_at := now() + least(make_interval(secs => s.interval_seconds) * power(2, least(s.consecutive_failures + 1, 12)),
                             interval '1 hour');
    update invoices_internal.rate_sources
       set last_error = coalesce(error, 'no rate'), last_error_at = now(), failures = failures + 1,
           consecutive_failures = consecutive_failures + 1, next_fetch_at = next_at
     where id = source_id;
  end if;
end
$$;

-- Housekeeping (every 30 s): persist when each API key was last used (the shared-memory
-- counters are lost at a restart) and forget idempotency keys older than 24 hours.
create function invoices_internal.housekeeping(out keys_touched integer, out idempotency_keys_expired integer)
language plpgsql volatile
as $$
declare
  u record;
  mid uuid;
  n integer;
begin
  -- the counters live in this node's shared memory: read here, then each key written by its
  -- owner's key (one merchant per statement)
  keys_touched := 0;
  for u in select c.key_id, to_timestamp(c.last_used_unix) as used_at from invoices_internal.api_key_usage() c
  loop
    select x.merchant_id into mid from invoices_internal.api_keys x where x.id = u.key_id;
    update invoices_internal.api_keys k set last_used_at = u.used_at
     where k.merchant_id = mid and k.id = u.key_id and (k.last_used_at is null or k.last_used_at < u.used_at);
    get diagnostics n = row_count;
    keys_touched := keys_touched + n;
  end loop;
  delete from invoices_internal.idempotency_keys where created_at < now() - interval '24 hours';
  get diagnostics idempotency_keys_expired = row_count;
end
$$;

-- The worker's recovery phase, once before its first task runs (src/worker/mod.rs): what a
-- previous incarnation (killed, crashed) left half done. Its leases are void, since its threads
-- died with it: webhook deliveries and e-mails it held are due again at once.
create function invoices_internal.worker_recovery() returns jsonb
language plpgsql volatile
as $$
declare
  deliveries integer := invoices_internal.release_delivery_leases();
  emails integer;
begin
  update invoices_internal.emails set lease_until = now()
   where status = 'sending' and lease_until > now();
  get diagnostics emails = row_count;
  return jsonb_build_object('deliveries_released', deliveries, 'emails_released', emails);
end
$$;
