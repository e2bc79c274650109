-- ============================================================================================
-- invoices — webhook endpoints and deliveries
-- ============================================================================================
-- The API over the outbox (12_outbox.sql): endpoints, redelivery, the views of events,
-- endpoints and deliveries, and the worker's side: claiming due deliveries with a lease and
-- recording every attempt. Deliveries are signed (X-Webhook-Signature, Webhook-Signature
-- t=…,v1=…) and retried on invoices.webhook_retry_schedule (1m, 5m, 15m, 1h, 2h), then
-- dead-lettered.
--
-- Needs: 05_errors (raise); 12_outbox (events, retry_schedule, webhook_attempts,
--   webhook_deliveries, …); 15_tenancy (authorize, may_read, readable_merchants,
--   require_merchant, session_scope)
-- Provides (API): create_webhook_endpoint(), delete_webhook_endpoint(), redeliver(), verify_webhook_signature(), events, webhook_endpoints, webhook_deliveries
-- Provides (internal): claim_merchant_deliveries(), claim_deliveries(), record_deliveries()

create function invoices.create_webhook_endpoint(url text, events text[] default '{*}', description text default null,
                                                  format text default 'invoices')
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_webhook_endpoint');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  known text[] := array['*', 'invoice.created', 'invoice.finalized', 'invoice.viewed', 'invoice.partial',
                        'invoice.paid', 'invoice.confirmed', 'invoice.expired', 'invoice.overdue',
                        'invoice.cancelled', 'invoice.reverted', 'invoice.reminder_sent',
                        'invoice.voided', 'invoice.marked_uncollectible', 'payment.received', 'payment.confirmed', 'payment.reverted',
                        'schedule.created', 'schedule.invoice_created', 'schedule.paused', 'schedule.resumed',
                        'schedule.cancelled', 'schedule.completed'];
  errors jsonb := '[]';
  problem text;
  e invoices_internal.webhook_endpoints;
begin
  problem := coalesce(invoices_internal.destination_problem(url), case when url is null then 'is required' end);
  if problem is not null then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'url', 'message', problem));
  end if;
  if events is null or cardinality(events) = 0 or not (events <@ known) then
    errors := errors || jsonb_build_array(jsonb_build_object('field', 'events', 'message',
      'must list events among ' || array_to_string(known, ', ')));
  end if;
  if format is null or format not in ('invoices', 'living_invoices', 'btpay') then
    errors := errors || '[{"field": "format", "message": "must be invoices, living_invoices or btpay"}]';
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023',
      pg_catalog.format('invalid webhook endpoint: %s', (select string_agg(x->>'field', ', ') from jsonb_array_elements(errors) x)),
      jsonb_build_object('errors', errors)::text, 'create_webhook_endpoint(''https://example.com/hooks'', ''{invoice.paid}'')');
  end if;
  insert into invoices_internal.webhook_endpoints (merchant_id, url, events, description, secret, format)
  values (mid, url, events, description, invoices_internal.new_webhook_secret(), create_webhook_endpoint.format)
  returning * into e;
  return jsonb_build_object('id', e.id, 'url', e.url, 'events', to_jsonb(e.events), 'description', e.description,
                            'active', e.active, 'created_at', e.created_at, 'format', e.format, 'secret', e.secret);
end
$$;

comment on function invoices.create_webhook_endpoint(text, text[], text, text) is
  'Register a webhook endpoint of the current merchant for events (default {*}: all). Returns {id, url, events, …, secret}: the signing secret (whsec_…) is shown this once. Deliveries carry X-Webhook-Signature (hex HMAC-SHA256 of the body) and Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">. format chooses the body: invoices (the project''s own {id, event, timestamp, data}), living_invoices (Living Invoices'' {event, timestamp, invoice}) or btpay (BTPay''s {event, data, timestamp}, signed in X-BTPay-Signature, named in X-BTPay-Event).';

create function invoices.delete_webhook_endpoint(id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('delete_webhook_endpoint');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  e invoices_internal.webhook_endpoints;
begin
  update invoices_internal.webhook_endpoints
     set active = false, deleted_at = now()
   where merchant_id = mid and webhook_endpoints.id = delete_webhook_endpoint.id and deleted_at is null
  returning * into e;
  if not found then   -- deleted before, or not this merchant's
    select * into e from invoices_internal.webhook_endpoints
     where merchant_id = mid and webhook_endpoints.id = delete_webhook_endpoint.id;
  end if;
  if not found then
    perform invoices_internal.raise('P0002', format('webhook endpoint %s not found', delete_webhook_endpoint.id), null,
      'list them with GET /webhook_endpoints');
  end if;
  -- its queued deliveries stop now (one being sent finishes, and is not retried)
  update invoices_internal.webhook_deliveries
     set status = 'dead', last_error = 'not sent: the endpoint was deleted'
   where merchant_id = mid and endpoint_id = e.id and status = 'pending';
  return jsonb_build_object('id', e.id, 'url', e.url, 'active', e.active, 'deleted_at', e.deleted_at);
end
$$;

comment on function invoices.delete_webhook_endpoint(uuid) is
  'Stop delivering to one of the current merchant''s webhook endpoints: its queued deliveries end at once, dead with last_error "not sent: the endpoint was deleted" (its history stays). Returns {id, url, active, deleted_at}.';

create function invoices.redeliver(delivery_id bigint) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('redeliver');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  d invoices_internal.webhook_deliveries;
begin
  update invoices_internal.webhook_deliveries
     set status = 'pending', next_attempt_at = now(), lease_until = null,
         max_retries = greatest(max_retries, attempts)
   where merchant_id = mid and id = delivery_id and status <> 'delivering'
     and (endpoint_id is null or exists (select 1 from invoices_internal.webhook_endpoints e
                                          where e.merchant_id = mid and e.id = endpoint_id and e.active))
  returning * into d;
  if not found then
    perform invoices_internal.raise('P0002',
      format('delivery %s not found (or being delivered, or its endpoint was deleted)', delivery_id), null,
      'list deliveries with GET /webhook_deliveries');
  end if;
  return jsonb_build_object('id', d.id, 'status', d.status, 'attempts', d.attempts, 'next_attempt_at', d.next_attempt_at);
end
$$;

comment on function invoices.redeliver(bigint) is
  'Queue a delivery again now (dead-lettered ones included): one more attempt, then the usual retry schedule if it fails.';

create function invoices.verify_webhook_signature(body text, signature_header text, secret text,
                                                  tolerance_seconds integer default 300)
returns boolean
language sql stable
as $$
  select invoices_internal.authorize('verify_webhook_signature');
  select invoices_internal.verify_signature(body, signature_header, secret, tolerance_seconds)
$$;

comment on function invoices.verify_webhook_signature(text, text, text, integer) is
  'The check a receiver runs: true if signature_header is the hex HMAC-SHA256 of body under secret (X-Webhook-Signature), or a Webhook-Signature t=<unix>,v1=<hex> whose timestamp is within tolerance_seconds (default 300) of now.';

create view invoices.events with (security_barrier) as
select v.merchant_id, v.id, v.event, v.invoice_id, v.data, v.created_at
  from invoices_internal.events v
 where v.merchant_id = any ((select invoices_internal.readable_merchants('events', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.events is
  'Every event of the current merchant (invoice.created, invoice.paid, …), written in the same transaction as the change it reports. Immutable.';

create view invoices.webhook_endpoints with (security_barrier) as
select e.merchant_id, e.id, e.url, e.events, e.description, e.active, e.created_at, e.deleted_at, e.format
  from invoices_internal.webhook_endpoints e
 where e.merchant_id = any ((select invoices_internal.readable_merchants('webhook_endpoints', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.webhook_endpoints is
  'Webhook endpoints of the current merchant: url, subscribed events, active. Never the secret.';

create view invoices.webhook_deliveries with (security_barrier) as
select d.merchant_id, d.id, d.event_id, v.event, d.endpoint_id, d.endpoint_id is null as invoice_callback,
       d.url, d.status, d.attempts, d.max_retries, d.next_attempt_at, d.last_status_code, d.last_error,
       d.delivered_at, d.created_at,
       (select jsonb_agg(jsonb_build_object('attempt', a.attempt, 'started_at', a.started_at,
                                            'latency_ms', a.latency_ms, 'status_code', a.status_code,
                                            'response', a.response_excerpt, 'error', a.error) order by a.attempt)
          from invoices_internal.webhook_attempts a
         where a.merchant_id = d.merchant_id and a.delivery_id = d.id) as attempt_log
  from invoices_internal.webhook_deliveries d
  join invoices_internal.events v on v.merchant_id = d.merchant_id and v.id = d.event_id
 where d.merchant_id = any ((select invoices_internal.readable_merchants('webhook_deliveries', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.webhook_deliveries is
  'One row per (event, endpoint or invoice callback): status pending / delivering / delivered / dead, attempts, next attempt, and the log of every attempt (status code, latency, first 1 KiB of the response, error).';

-- The worker's side ------------------------------------------------------------------------
-- Leases these deliveries of one merchant (locked by the caller) and returns them ready to
-- send: every statement names the merchant, so on Citus it runs on that merchant's shard.
create function invoices_internal.claim_merchant_deliveries(mid uuid, ids bigint[], lease timestamptz)
returns table (merchant_id uuid, id bigint, url text, secret text, event text, event_id uuid, body text, attempt integer,
               format text)
language plpgsql volatile
as $$
begin
  update invoices_internal.webhook_deliveries d
     set status = 'delivering', lease_until = lease
   where d.merchant_id = mid and d.id = any (ids);
  return query
  select c.merchant_id, c.id, c.url, coalesce(c.secret, e.secret), v.event, v.id,
         case when fmt = 'invoices' then envelope::text
              -- a seed's format (domain::seeds::webhooks), with what it prints beside the event
              else invoices_internal.webhook_body(fmt, envelope || jsonb_build_object(
                     'secret_key', case when fmt = 'apiforcrypto' then c.secret end,
                     'latest_txid', (select p.txid from invoices_internal.payments p
                                      where p.merchant_id = mid and p.invoice_id = v.invoice_id
                                        and p.status <> 'reverted' order by p.id desc limit 1),
                     'asset_amount', (select q.asset_amount::text from invoices_internal.quotes q
                                       where q.merchant_id = mid and q.invoice_id = v.invoice_id
                                       order by q.created_at desc limit 1)))::text end,
         c.attempts + 1,
         fmt
    from invoices_internal.webhook_deliveries c
    join invoices_internal.events v on v.merchant_id = mid and v.id = c.event_id
    left join invoices_internal.webhook_endpoints e on e.merchant_id = mid and e.id = c.endpoint_id
    cross join lateral (select jsonb_build_object('id', v.id, 'event', v.event,
                            'timestamp', to_char(v.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                            'data', v.data) as envelope,
                               -- an endpoint's format, or for an invoice's own callback the one
                               -- its creator asked for (apiforcrypto's invoices)
                               case when c.endpoint_id is null
                                    then case when v.data->'metadata'->>'callback_format' in ('apiforcrypto', 'kibble')
                                              then v.data->'metadata'->>'callback_format' else 'invoices' end
                                    else coalesce(e.format, 'invoices') end as fmt) x
   where c.merchant_id = mid and c.id = any (ids);
end
$$;

-- Claims up to n due deliveries with a lease (a crashed worker's leases expire and are taken
-- again), with everything needed to send them.
create function invoices_internal.claim_deliveries(n integer, lease_seconds integer)
returns table (merchant_id uuid, id bigint, url text, secret text, event text, event_id uuid, body text, attempt integer,
               format text)
language plpgsql volatile
as $$
declare
  lease timestamptz := now() + make_interval(secs => lease_seconds);
  g record;
  k record;
  locked bigint[];
  ended bigint[];
  inactive uuid[];
begin
  -- the n most overdue deliveries are read without locks; each merchant's are then locked with
  -- SKIP LOCKED (another worker may hold some) and leased in statements naming that merchant
  for g in select d.merchant_id as mid, array_agg(d.id) as ids
             from (select x.merchant_id, x.id from invoices_internal.webhook_deliveries x
                    where (x.status = 'pending' and x.next_attempt_at <= now())
                       or (x.status = 'delivering' and x.lease_until < now())
                    order by x.next_attempt_at
                    limit n) d
            group by d.merchant_id
  loop
    locked := '{}';
    ended := '{}';
    -- a deleted or deactivated endpoint gets nothing more: its queued deliveries end here
    inactive := array(select e.id from invoices_internal.webhook_endpoints e where e.merchant_id = g.mid and not e.active);
    -- locked by key (the due index would scan every due row), then checked again: a row that
    -- changed since the read above is locked in its latest version
    for k in select x.id, x.status, x.next_attempt_at, x.lease_until, x.endpoint_id from invoices_internal.webhook_deliveries x
              where x.merchant_id = g.mid and x.id = any (g.ids)
              order by x.id
              for update skip locked
    loop
      if (k.status = 'pending' and k.next_attempt_at <= now()) or (k.status = 'delivering' and k.lease_until < now()) then
        if k.endpoint_id = any (inactive) then
          ended := ended || k.id;
        else
          locked := locked || k.id;
        end if;
      end if;
    end loop;
    if cardinality(ended) > 0 then
      update invoices_internal.webhook_deliveries d
         set status = 'dead', lease_until = null, last_error = 'not sent: the endpoint was deleted or deactivated'
       where d.merchant_id = g.mid and d.id = any (ended);
    end if;
    return query select * from invoices_internal.claim_merchant_deliveries(g.mid, locked, lease);
  end loop;
end
$$;

-- The outcomes of a batch of attempts (a jsonb array of {merchant_id, id, attempt,
-- started_unix_ms, latency_ms, status_code, excerpt, error}): 2xx delivers; anything else
-- retries on the schedule, then dead. Returns how many deliveries were updated.
create function invoices_internal.record_deliveries(outcomes jsonb) returns integer
language plpgsql volatile
as $$
declare
  at_now timestamptz := now();
  -- when each retry is due if it fails now (the schedule's steps from now)
  retry_at timestamptz[] := array(select at_now + x from unnest(invoices_internal.retry_schedule()) with ordinality u(x, n) order by n);
  fallback timestamptz := at_now + interval '1 minute';
  g record;
  m integer;
  n integer := 0;
begin
  insert into invoices_internal.webhook_attempts (merchant_id, delivery_id, attempt, started_at, latency_ms,
                                                  status_code, response_excerpt, error)
  select a.merchant_id, a.id, a.attempt, timestamptz 'epoch' + a.started_unix_ms * interval '1 millisecond',
         a.latency_ms, a.status_code, a.excerpt, a.error
    from jsonb_to_recordset(outcomes) as a(merchant_id uuid, id bigint, attempt integer, started_unix_ms bigint,
                                           latency_ms integer, status_code integer, excerpt text, error text)
  on conflict do nothing;
  -- one UPDATE per merchant (on Citus: routed to its shard); times are computed here, not in
  -- the statement (Citus refuses a mutable function inside CASE: format() and now() are)
  for g in select distinct x.merchant_id as mid from jsonb_to_recordset(outcomes) as x(merchant_id uuid)
  loop
    update invoices_internal.webhook_deliveries d
       set status = case when o.ok then 'delivered' when o.attempt > d.max_retries then 'dead' else 'pending' end,
           attempts = o.attempt,
           lease_until = null,
           last_status_code = o.status_code,
           last_error = case when o.ok then null else coalesce(o.error, 'HTTP ' || o.status_code::text) end,
           delivered_at = case when o.ok then at_now else d.delivered_at end,
           next_attempt_at = case when o.ok or o.attempt > d.max_retries then d.next_attempt_at
                                  else coalesce(retry_at[least(o.attempt, cardinality(retry_at))], fallback) end
      from (select x.*, x.error is null and coalesce(x.status_code between 200 and 299, false) as ok
              from jsonb_to_recordset(outcomes) as x(merchant_id uuid, id bigint, attempt integer,
                                                     status_code integer, error text)
             where x.merchant_id = g.mid) o
     where d.merchant_id = g.mid and d.id = o.id and d.status = 'delivering';
    get diagnostics m = row_count;
    n := n + m;
  end loop;
  return n;
end
$$;
