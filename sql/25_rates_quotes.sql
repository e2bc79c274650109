-- ============================================================================================
-- invoices — exchange rates, quotes and expiry
-- ============================================================================================
-- Rates come from set_rate (SQL) and from rate sources the background worker polls. The rate a
-- quote uses is the median of the fresh sources of its pair (invoices.rate_max_age_seconds).
-- Finalizing a fiat invoice that has an asset locks a quote; the worker expires unpaid invoices
-- past the quote's deadline and marks open invoices past their due date overdue.
--
-- Needs: 05_errors (raise); 10_tables (currencies, invoices, quotes); 15_tenancy (authorize,
--   readable_merchants, session_scope)
-- Provides (API): set_rate(), create_rate_source(), rate_sources, rates, quotes
-- Provides (internal): rate_sources, rate_observations, current_rate(), lock_quote(), expire_and_mark_overdue()

-- --------------------------------------------------------------------------------------------
-- Rates
-- --------------------------------------------------------------------------------------------
-- Sources the worker polls: URL + response format (CoinGecko simple/price, Kraken Ticker,
-- Coinbase prices/<pair>/spot). Each fetch's outcome is recorded here.
create table invoices_internal.rate_sources (
  id                   bigint generated always as identity primary key,
  name                 text not null unique check (length(name) between 1 and 100),
  format               text not null check (format in ('coingecko', 'kraken', 'coinbase')),
  url                  text not null check (url ~ '^https?://'),
  asset                text not null check (asset in ('BTC', 'ETH', 'USDC', 'KAS')),
  currency             text not null check (invoices_internal.is_currency(currency)),
  enabled              boolean not null default true,
  interval_seconds     integer not null default 60 check (interval_seconds between 1 and 86400),
  timeout_ms           integer not null default 5000 check (timeout_ms between 100 and 60000),
  created_at           timestamptz not null default now(),
  next_fetch_at        timestamptz not null default now(),
  last_fetch_at        timestamptz,
  last_success_at      timestamptz,
  last_rate            numeric,
  last_error           text,
  last_error_at        timestamptz,
  successes            bigint not null default 0,
  failures             bigint not null default 0,
  consecutive_failures integer not null default 0
);

-- Every rate ever seen: manual ones (set_rate) and fetched ones.
create table invoices_internal.rate_observations (
  asset       text not null check (asset in ('BTC', 'ETH', 'USDC', 'KAS')),
  currency    text not null check (invoices_internal.is_currency(currency)),
  source      text not null,
  id          bigint generated always as identity,
  rate        numeric not null check (rate > 0),
  observed_at timestamptz not null default now(),
  primary key (asset, currency, source, id)
);

create index rate_observations_latest_idx
  on invoices_internal.rate_observations (asset, currency, source, observed_at desc);

create function invoices.set_rate(asset text, currency text, rate numeric, source text default 'manual')
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('set_rate');  -- first: the caller's scope
  errors jsonb := '[]';
begin
  if asset is null or asset not in ('BTC', 'ETH', 'USDC', 'KAS') then
    errors := errors || '[{"field": "asset", "message": "must be one of BTC, ETH, USDC, KAS"}]';
  end if;
  if currency is null or not invoices_internal.is_currency(currency) then
    errors := errors || '[{"field": "currency", "message": "must be a known currency code such as USD"}]';
  end if;
  if rate is null or rate <= 0 then
    errors := errors || '[{"field": "rate", "message": "must be a positive number (currency per 1 asset)"}]';
  end if;
  if source is null or length(btrim(source)) not between 1 and 100 then
    errors := errors || '[{"field": "source", "message": "must be 1 to 100 characters"}]';
  end if;
  if jsonb_array_length(errors) > 0 then
    perform invoices_internal.raise('22023',
      format('invalid rate: %s', (select string_agg(e->>'field', ', ') from jsonb_array_elements(errors) e)),
      jsonb_build_object('errors', errors)::text, 'set_rate(''BTC'', ''USD'', 67187.33)');
  end if;
  insert into invoices_internal.rate_observations (asset, currency, source, rate)
  values (set_rate.asset, set_rate.currency, btrim(set_rate.source), set_rate.rate);
  return (select to_jsonb(r) from invoices.rates r
           where r.asset = set_rate.asset and r.currency = set_rate.currency and r.source = btrim(set_rate.source));
end
$$;

comment on function invoices.set_rate(text, text, numeric, text) is
  'Admin: record a rate (price of 1 asset in currency, e.g. set_rate(''BTC'', ''USD'', 67187.33)) from source (default manual). It counts as one source for the median while it is fresh (invoices.rate_max_age_seconds). Returns the row of the rates view.';

create function invoices.create_rate_source(name text, format text, asset text, currency text,
                                            url text default null, interval_seconds integer default 60,
                                            timeout_ms integer default 5000)
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_rate_source');  -- first: the caller's scope
  s invoices_internal.rate_sources;
begin
  if format is null or format not in ('coingecko', 'kraken', 'coinbase') then
    perform invoices_internal.raise('22023', 'invalid rate source: format must be coingecko, kraken or coinbase',
      '{"errors":[{"field":"format","message":"must be coingecko, kraken or coinbase"}]}',
      'the format says how to read the response');
  end if;
  insert into invoices_internal.rate_sources (name, format, url, asset, currency, interval_seconds, timeout_ms)
  values (name, format,
          coalesce(url, invoices_internal.rate_source_url(format, null, asset, currency)),
          asset, currency, interval_seconds, timeout_ms)
  returning * into s;
  return to_jsonb(s);
end
$$;

comment on function invoices.create_rate_source(text, text, text, text, text, integer, integer) is
  'Admin: a rate source for the worker to poll every interval_seconds. format: coingecko (simple/price), kraken (Ticker) or coinbase (prices/<pair>/spot); url defaults to the public API of that format for the asset/currency pair. Outcomes show in invoices.rate_sources.';

create view invoices.rate_sources as
select id, name, format, url, asset, currency, enabled, interval_seconds, timeout_ms,
       next_fetch_at, last_fetch_at, last_success_at, last_rate, last_error, last_error_at,
       successes, failures, consecutive_failures
  from invoices_internal.rate_sources
 where invoices_internal.may_read('rate_sources', current_user);

comment on view invoices.rate_sources is
  'Rate sources polled by the worker, with the outcome of their fetches: last rate, last error, counters, next fetch (failures back off).';

-- The latest rate of each source of each pair, its age, whether it is fresh, and the median of
-- the fresh ones: the rate a quote would use now.
create view invoices.rates as
with latest as (
  select distinct on (o.asset, o.currency, o.source)
         o.asset, o.currency, o.source, o.rate, o.observed_at
    from invoices_internal.rate_observations o
   order by o.asset, o.currency, o.source, o.observed_at desc
), aged as (
  select l.*, extract(epoch from now() - l.observed_at)::numeric(12, 1) as age_seconds,
         l.observed_at > now() - current_setting('invoices.rate_max_age_seconds')::interval as fresh
    from latest l
)
select a.asset, a.currency, a.source, a.rate, a.observed_at, a.age_seconds, a.fresh,
       invoices_internal.median_rate(array_agg(a.rate) filter (where a.fresh)
                                       over (partition by a.asset, a.currency)) as median_rate
  from aged a
 where invoices_internal.may_read('rates', current_user);

comment on view invoices.rates is
  'Latest rate per source and pair (price of 1 asset in currency), its age, whether it is fresh (younger than invoices.rate_max_age_seconds), and median_rate: the median of the pair''s fresh sources, the rate a quote uses now.';

-- The rate a quote uses now: the median of the pair's fresh sources, and which sources.
create function invoices_internal.current_rate(asset text, currency text, out rate numeric, out sources text[])
language plpgsql stable
as $$
begin
  select invoices_internal.median_rate(array_agg(r.rate)), array_agg(r.source order by r.source)
    into current_rate.rate, current_rate.sources
    from invoices.rates r
   where r.asset = current_rate.asset and r.currency = current_rate.currency and r.fresh;
end
$$;

-- --------------------------------------------------------------------------------------------
-- Quotes
-- --------------------------------------------------------------------------------------------
-- Locks a new quote for an invoice (finalize, send => true, requote) and sets its deadline.
-- A fiat invoice without an asset is not quoted (it is settled outside the chains). No fresh
-- rate is an error, so the finalization that needed it does not happen either.
create function invoices_internal.lock_quote(mid uuid, inv_id uuid) returns void
language plpgsql volatile
as $$
declare
  inv invoices_internal.invoices;
  quote_rate numeric;
  sources text[] := '{}';
  asset_exponent int;
  amount numeric;
  deadline timestamptz;
begin
  select * into inv from invoices_internal.invoices where merchant_id = mid and id = inv_id;
  if inv.asset is null then
    return;
  end if;
  -- computed here, not in the UPDATE (Citus: no stable function with arithmetic in a SET list)
  deadline := now() + make_interval(mins => inv.expiry_minutes);
  select exponent into asset_exponent from invoices_internal.currencies where code = inv.asset;
  if inv.asset <> inv.currency then
    select c.rate, c.sources into quote_rate, sources from invoices_internal.current_rate(inv.asset, inv.currency) c;
    if quote_rate is null then
      perform invoices_internal.raise('55000',
        format('no fresh %s/%s rate: invoice %s cannot be quoted', inv.asset, inv.currency, inv.invoice_number),
        jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
          'field', 'asset', 'message', format('no rate for %s in %s younger than %s', inv.asset, inv.currency,
                                             current_setting('invoices.rate_max_age_seconds')))))::text,
        'set one with invoices.set_rate(asset, currency, rate) or add a rate source; the invoice stays a draft');
    end if;
  end if;
  insert into invoices_internal.quotes (merchant_id, invoice_id, asset, currency, amount, rate, rate_sources,
                                        markup_percent, asset_amount, expires_at)
  values (mid, inv_id, inv.asset, inv.currency, inv.total, quote_rate, sources,
          coalesce(inv.markup_percent, 0),
          invoices_internal.quote_asset_amount(inv.total, quote_rate, coalesce(inv.markup_percent, 0), asset_exponent),
          deadline)
  returning quotes.asset_amount into amount;
  -- the invoice shows its latest quote (invoice_rows reads the row alone)
  update invoices_internal.invoices
     set expires_at = deadline, asset_amount = amount, rate = quote_rate
   where merchant_id = mid and id = inv_id;
end
$$;

create view invoices.quotes with (security_barrier) as
select q.merchant_id, q.invoice_id, i.invoice_number, q.id, q.asset, q.currency, q.amount, q.rate,
       q.rate_sources, q.markup_percent, q.asset_amount, q.created_at, q.expires_at,
       q.id = (select q2.id from invoices_internal.quotes q2
                where q2.merchant_id = q.merchant_id and q2.invoice_id = q.invoice_id
                order by q2.created_at desc limit 1) as current
  from invoices_internal.quotes q
  join invoices_internal.invoices i on i.merchant_id = q.merchant_id and i.id = q.invoice_id
 where q.merchant_id = any ((select invoices_internal.readable_merchants('quotes', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.quotes is
  'Locked quotes of the current merchant''s invoices: asset, rate (currency per 1 asset; null when the invoice is in the asset itself), the sources of the median, markup_percent, the crypto amount rounded up to the asset unit, and the deadline. current marks the one in force.';

-- --------------------------------------------------------------------------------------------
-- Expiry and overdue (run by the worker on every tick; callable by hand)
-- --------------------------------------------------------------------------------------------
create function invoices_internal.expire_and_mark_overdue(out expired integer, out overdue integer)
language plpgsql volatile
as $$
declare
  g record;
  k record;
  locked uuid[];
  n integer;
begin
  -- each row changes through the status trigger: stamped and audited. Candidates are read
  -- without locks, then each merchant's are locked with SKIP LOCKED (rows being paid, cancelled
  -- or swept by someone else are left for the next tick) in one order, so sweeps never wait on
  -- or deadlock with other work; every statement that locks or writes names one merchant (on
  -- Citus: routed to one shard).
  expired := 0;
  overdue := 0;
  for g in select i.merchant_id, array_agg(i.id) as ids from invoices_internal.invoices i
            where i.status in ('pending', 'overdue') and i.amount_paid = 0 and i.expires_at <= now()
            group by i.merchant_id order by i.merchant_id
  loop
    locked := '{}';
    for k in select i.id, i.status, i.amount_paid, i.expires_at from invoices_internal.invoices i
              where i.merchant_id = g.merchant_id and i.id = any (g.ids)
              order by i.id
              for update skip locked
    loop
      -- checked again on the locked (latest) version
      if k.status in ('pending', 'overdue') and k.amount_paid = 0 and k.expires_at <= now() then
        locked := locked || k.id;
      end if;
    end loop;
    update invoices_internal.invoices i set status = 'expired', updated_at = now()
     where i.merchant_id = g.merchant_id and i.id = any (locked);
    get diagnostics n = row_count;
    expired := expired + n;
  end loop;
  for g in select i.merchant_id, array_agg(i.id) as ids from invoices_internal.invoices i
            where i.status in ('pending', 'partial') and i.due_date < current_date
            group by i.merchant_id order by i.merchant_id
  loop
    locked := '{}';
    for k in select i.id, i.status, i.due_date from invoices_internal.invoices i
              where i.merchant_id = g.merchant_id and i.id = any (g.ids)
              order by i.id
              for update skip locked
    loop
      if k.status in ('pending', 'partial') and k.due_date < current_date then
        locked := locked || k.id;
      end if;
    end loop;
    update invoices_internal.invoices i set status = 'overdue', updated_at = now()
     where i.merchant_id = g.merchant_id and i.id = any (locked);
    get diagnostics n = row_count;
    overdue := overdue + n;
  end loop;
end
$$;
