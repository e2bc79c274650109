-- ============================================================================================
-- invoices — the HTTP door: PostgREST, API keys, scopes, rate limits, idempotency
-- ============================================================================================
-- PostgREST connects as invoices_authenticator and runs every request as invoices_api, with or
-- without a key. Authorization is not the role's job: http_pre_request() finds the API key of
-- the request, counts it against its rate limit, checks its scope and sets invoices.merchant_id
-- for the transaction, which every view and function of schema invoices scopes to.
--
-- A key is a JWT signed with the secret PostgREST verifies bearer tokens with (domain::apikey),
-- so one key works as `Authorization: Bearer <key>` (PostgREST checks the signature) and as
-- `X-API-Key: <key>` (passed through). Either way only its SHA-256 is stored and looked up, so
-- revoking takes effect on the next request.

do $$
begin
  if not exists (select from pg_roles where rolname = 'invoices_api') then
    create role invoices_api nologin;
  end if;
  -- NOLOGIN here; the set-up script (or a DBA) gives it LOGIN and a password.
  if not exists (select from pg_roles where rolname = 'invoices_authenticator') then
    create role invoices_authenticator nologin noinherit;
  end if;
end
$$;
grant invoices_api to invoices_authenticator;

-- --------------------------------------------------------------------------------------------
-- Errors: one raise for every error a request can meet
-- --------------------------------------------------------------------------------------------
-- In SQL the error is raised as is. During a PostgREST request (request.method is set) it is
-- raised as PostgREST's PGRST error, which carries the HTTP status (http_status(code): 400
-- validation, 401 no/bad key, 403 scope, 404 not found, 409 state conflict, 429 rate limit)
-- and the X-RateLimit-* headers; details stays the JSON naming each bad field.
create function invoices_internal.raise(code text, message text, detail text default null,
                                        hint text default null) returns void
language plpgsql
as $$
begin
  if coalesce(current_setting('request.method', true), '') <> '' then
    raise sqlstate 'PGRST' using
      message = jsonb_build_object('code', code, 'message', message, 'details', detail, 'hint', hint)::text,
      detail = jsonb_build_object(
        'status', invoices_internal.http_status(code),
        'headers', coalesce(nullif(current_setting('invoices.response_headers', true), '')::jsonb, '{}'))::text;
  end if;
  if detail is not null and hint is not null then
    raise exception using errcode = code, message = message, detail = detail, hint = hint;
  elsif detail is not null then
    raise exception using errcode = code, message = message, detail = detail;
  elsif hint is not null then
    raise exception using errcode = code, message = message, hint = hint;
  else
    raise exception using errcode = code, message = message;
  end if;
end
$$;

-- Raises an error returned as data by a Rust helper: {"error": {code, message, detail, hint}}.
create function invoices_internal.raise_error(result jsonb) returns void
language sql
as $$
  select invoices_internal.raise(result #>> '{error,code}', result #>> '{error,message}',
                                 result #>> '{error,detail}', result #>> '{error,hint}')
$$;

-- --------------------------------------------------------------------------------------------
-- API keys
-- --------------------------------------------------------------------------------------------

-- The key-signing secret, created with the first key (not at CREATE EXTENSION, so a restored
-- dump brings back its secret and every key stays valid).
create table invoices_internal.server_secrets (
  name       text primary key,
  value      text not null,
  created_at timestamptz not null default now()
);

create function invoices_internal.jwt_secret() returns text
language plpgsql volatile
as $$
declare
  s text;
begin
  select value into s from invoices_internal.server_secrets where name = 'jwt_secret';
  if s is null then
    insert into invoices_internal.server_secrets (name, value)
    values ('jwt_secret', invoices_internal.new_secret())
    on conflict (name) do nothing;
    select value into s from invoices_internal.server_secrets where name = 'jwt_secret';
    -- PostgREST re-reads postgrest_config() when this commits
    notify pgrst, 'reload config';
  end if;
  return s;
end
$$;

create table invoices_internal.api_keys (
  merchant_id           uuid not null references invoices_internal.merchants (id),
  id                    uuid not null default invoices_internal.uuid_v7(),
  name                  text not null check (length(name) between 1 and 100),
  prefix                text not null,   -- the key's public id (inv_…), shown in listings
  key_hash              text not null,   -- lowercase hex SHA-256 of the whole key
  scopes                text[] not null
                        check (cardinality(scopes) > 0 and scopes <@ array['read', 'write', 'webhooks', 'admin']),
  rate_limit_per_minute integer check (rate_limit_per_minute > 0),   -- null: invoices.rate_limit_per_minute
  created_at            timestamptz not null default now(),
  created_by            text not null default invoices_internal.current_actor(),
  revoked_at            timestamptz,
  last_used_at          timestamptz,     -- persisted from the shared-memory counters
  primary key (merchant_id, id)
);

-- Every request finds its key by the key's hash alone. The hash's owner lives in a table of its
-- own, keyed by the hash (globally unique), so api_keys keeps merchant_id first in every key and
-- index; on Citus this table is distributed by key_hash and each lookup goes to one shard.
create table invoices_internal.api_key_hashes (
  key_hash    text primary key,
  merchant_id uuid not null,
  key_id      uuid not null
);

-- Creates a key for merchant mid; the only place a key exists in clear text is the result.
create function invoices_internal.insert_api_key(mid uuid, name text, scopes text[],
                                                 rate_limit_per_minute integer default null)
returns jsonb
language plpgsql volatile
as $$
declare
  prepared jsonb := invoices_internal.prepare_api_key(name, scopes);
  canonical text[];
  issued record;
  k invoices_internal.api_keys;
begin
  if prepared ? 'error' then
    perform invoices_internal.raise_error(prepared);
  end if;
  canonical := array(select jsonb_array_elements_text(prepared->'scopes'));
  if rate_limit_per_minute is not null and rate_limit_per_minute < 1 then
    perform invoices_internal.raise('22023', 'invalid API key: rate_limit_per_minute must be at least 1',
      '{"errors":[{"field":"rate_limit_per_minute","message":"must be at least 1"}]}',
      'leave it null to use the invoices.rate_limit_per_minute setting');
  end if;
  select * into issued from invoices_internal.issue_api_key(invoices_internal.jwt_secret(), 'invoices_api');
  insert into invoices_internal.api_keys (merchant_id, name, prefix, key_hash, scopes, rate_limit_per_minute)
  values (mid, btrim(name), issued.prefix, issued.key_hash, canonical, rate_limit_per_minute)
  returning * into k;
  insert into invoices_internal.api_key_hashes (key_hash, merchant_id, key_id)
  values (k.key_hash, k.merchant_id, k.id);
  return jsonb_build_object(
    'id', k.id, 'merchant_id', k.merchant_id, 'name', k.name, 'prefix', k.prefix,
    'scopes', to_jsonb(k.scopes), 'rate_limit_per_minute', k.rate_limit_per_minute,
    'created_at', k.created_at, 'api_key', issued.key);
end
$$;

create function invoices.create_api_key(name text default 'API key',
                                        scopes text[] default '{read,write}',
                                        rate_limit_per_minute integer default null)
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('create_api_key');
begin
  -- a key cannot lift its own rate limit: the operator's ceiling bounds every key made here
  if rate_limit_per_minute > current_setting('invoices.max_rate_limit_per_minute')::int then
    perform invoices_internal.raise('22023',
      format('invalid API key: rate_limit_per_minute must be at most %s',
             current_setting('invoices.max_rate_limit_per_minute')),
      jsonb_build_object('errors', jsonb_build_array(jsonb_build_object('field', 'rate_limit_per_minute',
        'message', format('must be at most %s (invoices.max_rate_limit_per_minute)',
                          current_setting('invoices.max_rate_limit_per_minute')))))::text,
      'leave it null to use invoices.rate_limit_per_minute, or ask the operator to raise invoices.max_rate_limit_per_minute');
  end if;
  return invoices_internal.insert_api_key(invoices_internal.require_merchant(), name, scopes,
                                          rate_limit_per_minute);
end
$$;
comment on function invoices.create_api_key(text, text[], integer) is
  'Create an API key for the current merchant (admin scope). scopes: any of read, write, webhooks, admin (default {read,write}). rate_limit_per_minute overrides the invoices.rate_limit_per_minute setting for this key, up to the operator''s invoices.max_rate_limit_per_minute. Returns {id, name, prefix, scopes, created_at, api_key}: api_key is shown this once (only its SHA-256 is stored). Send it as X-API-Key: <key> or Authorization: Bearer <key>.';

create function invoices.revoke_api_key(id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('revoke_api_key');  -- first: the caller's scope
  mid uuid := invoices_internal.require_merchant();
  k invoices_internal.api_keys;
begin
  update invoices_internal.api_keys
     set revoked_at = now()
   where merchant_id = mid and api_keys.id = revoke_api_key.id and revoked_at is null
  returning * into k;
  if not found then   -- revoked before, or not this merchant's
    select * into k from invoices_internal.api_keys where merchant_id = mid and api_keys.id = revoke_api_key.id;
  end if;
  if not found then
    perform invoices_internal.raise('P0002', format('API key %s not found', revoke_api_key.id), null,
      'list your keys with GET /api_keys or select * from invoices.api_keys');
  end if;
  return jsonb_build_object('id', k.id, 'name', k.name, 'prefix', k.prefix,
                            'scopes', to_jsonb(k.scopes), 'revoked_at', k.revoked_at);
end
$$;
comment on function invoices.revoke_api_key(uuid) is
  'Revoke one of the current merchant''s API keys by id. The next request with it gets 401. Revoking twice keeps the first revoked_at. Returns {id, name, prefix, scopes, revoked_at}.';

create view invoices.api_keys with (security_barrier) as
select k.merchant_id, k.id, k.name, k.prefix, k.scopes, k.rate_limit_per_minute,
       k.created_at, k.created_by, k.revoked_at, k.revoked_at is null as active,
       greatest(k.last_used_at, to_timestamp(u.last_used_unix)) as last_used_at
  from invoices_internal.api_keys k
  left join invoices_internal.api_key_usage() u on u.key_id = k.id
 where k.merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]) and invoices_internal.may_read('api_keys', current_user);
comment on view invoices.api_keys is
  'API keys of the current merchant: name, prefix (the key''s public id), scopes, rate limit, created/revoked/last used. Never the key itself.';

-- --------------------------------------------------------------------------------------------
-- Every request: key, rate limit, scope, merchant
-- --------------------------------------------------------------------------------------------
-- The scope a request needs by its path, decoded as PostgREST routes it, from the same rules
-- the functions and views check themselves (invoices_internal.access_rules): the second line.
create function invoices_internal.required_scope(method text, path text) returns text
language plpgsql stable
as $$
declare
  r record;
begin
  select * into r from invoices_internal.http_route(method, path);
  return case r.kind
           when 'root' then 'anonymous'
           when 'view_write' then 'method_not_allowed'
           when 'unreadable' then 'admin'
           else invoices_internal.needed_scope(r.kind, r.object)
         end;
end
$$;

-- Counts one request against a rate-limit bucket (an API key, or an anonymous client address)
-- and sets the X-RateLimit-* headers; over the limit, 429 with Retry-After.
create function invoices_internal.count_request(bucket uuid, per_minute integer, who text) returns void
language plpgsql volatile
as $$
declare
  -- counted in shared memory: the 429 below rolls this transaction back, the count stays
  rl bigint[] := invoices_internal.rate_limit_hit(bucket, per_minute);  -- {allowed, limit, remaining, reset_at, retry_after}
  limits text := format('"X-RateLimit-Limit": "%s", "X-RateLimit-Remaining": "%s", "X-RateLimit-Reset": "%s"',
                        rl[2], rl[3], rl[4]);
begin
  if rl[1] = 0 then
    perform set_config('invoices.response_headers',
                       format('{%s, "Retry-After": "%s"}', limits, rl[5]), true);
    perform invoices_internal.raise('54000',
      format('rate limit exceeded: %s requests per minute for %s', rl[2], who), null,
      format('retry after %s seconds (Retry-After)', rl[5]));
  end if;
  perform set_config('invoices.response_headers', '{' || limits || '}', true),
          set_config('response.headers', '[{' || replace(limits, ', ', '}, {') || '}]', true);
end
$$;

create function invoices_internal.http_pre_request() returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  headers json := coalesce(nullif(current_setting('request.headers', true), ''), '{}')::json;
  need text := invoices_internal.required_scope(coalesce(current_setting('request.method', true), 'GET'),
                                                coalesce(current_setting('request.path', true), '/'));
  presented text := nullif(btrim(headers->>'x-api-key'), '');
  client text;
  owner record;
  k record;
begin
  if presented is null and headers->>'authorization' ~* '^bearer\s' then
    presented := nullif(btrim(substr(headers->>'authorization', 8)), '');
  end if;
  if presented is null then
    -- Anonymous: counted per client address. The web front sets X-Real-IP to the peer's
    -- address; PostgREST itself listens on loopback only, and calls made to it directly share
    -- the bucket "local".
    client := coalesce(nullif(btrim(split_part(headers->>'x-real-ip', ',', 1)), ''), 'local');
    perform invoices_internal.count_request(md5('anonymous ' || client)::uuid,
      current_setting('invoices.anonymous_rate_limit_per_minute')::int, 'this client address');
    perform set_config('invoices.api_key_scopes', 'anonymous', true);
    if need in ('anonymous', 'public_read') then
      return;
    end if;
    perform invoices_internal.raise('28000', 'an API key is required', null,
      'send it as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;

  select h.merchant_id, h.key_id into owner
    from invoices_internal.api_key_hashes h
   where h.key_hash = encode(sha256(convert_to(presented, 'UTF8')), 'hex');
  select id, merchant_id, scopes, rate_limit_per_minute, revoked_at into k
    from invoices_internal.api_keys
   where merchant_id = owner.merchant_id and id = owner.key_id;
  if not found or k.revoked_at is not null then
    perform invoices_internal.raise('28000',
      case when found then 'this API key was revoked' else 'invalid API key' end, null,
      'send an active key as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;
  perform invoices_internal.count_request(k.id,
    coalesce(k.rate_limit_per_minute, current_setting('invoices.rate_limit_per_minute')::int), 'this API key');

  if need = 'method_not_allowed' then
    perform invoices_internal.raise('0A000',
      format('%s %s is not allowed: the views are read-only', current_setting('request.method', true),
             current_setting('request.path', true)), null,
      'change data through the functions under /rpc/ (create_invoice, cancel_invoice, ...)');
  end if;
  -- the functions and views check the scope themselves; this is the second line
  if not invoices_internal.scope_allows(need, k.scopes) then
    perform invoices_internal.check_scope(need, k.scopes, current_setting('request.path', true));
  end if;

  perform set_config('invoices.merchant_id', k.merchant_id::text, true),
          set_config('invoices.api_key_id', k.id::text, true),
          set_config('invoices.api_key_scopes', array_to_string(k.scopes, ','), true),
          set_config('invoices.idempotency_key', coalesce(headers->>'idempotency-key', ''), true);
end
$$;

-- PostgREST's in-database configuration (db-pre-config): the extension owns the settings that
-- must agree with it, so the config file only says where to connect and listen.
create function invoices_internal.postgrest_config() returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  perform set_config('pgrst.db_schemas', 'invoices', true);
  perform set_config('pgrst.db_anon_role', 'invoices_api', true);
  perform set_config('pgrst.db_pre_request', 'invoices_internal.http_pre_request', true);
  -- Runs read-only: before the first key exists any random secret will do (no token is valid).
  perform set_config('pgrst.jwt_secret',
    coalesce((select value from invoices_internal.server_secrets where name = 'jwt_secret'),
             invoices_internal.new_secret()), true);
  perform set_config('pgrst.db_max_rows', '100', true);
end
$$;

-- --------------------------------------------------------------------------------------------
-- Idempotency keys
-- --------------------------------------------------------------------------------------------
-- A POST with Idempotency-Key reserves (merchant, key) with the hash of its operation and
-- arguments, in the same transaction as its effect: a replay gets the stored response, another
-- request with the same key gets 409, a failed request leaves nothing behind. Keys expire
-- after 24 hours.
create table invoices_internal.idempotency_keys (
  merchant_id  uuid not null,
  key          text not null,
  operation    text not null,
  request_hash text not null,
  response     jsonb,
  created_at   timestamptz not null default now(),
  primary key (merchant_id, key)
);
create index idempotency_keys_created_at_idx on invoices_internal.idempotency_keys (created_at);

-- Null: go ahead (no key, or the key is now reserved for this request); else the response of
-- the first request with this key.
create function invoices_internal.idempotent_replay(mid uuid, operation text, args jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  k text := nullif(current_setting('invoices.idempotency_key', true), '');
  h text;
  prior invoices_internal.idempotency_keys;
begin
  if k is null then
    return null;
  end if;
  if length(k) > 255 then
    perform invoices_internal.raise('22023', 'invalid Idempotency-Key: longer than 255 characters',
      '{"errors":[{"field":"Idempotency-Key","message":"must be at most 255 characters"}]}',
      'use a UUID per logical request');
  end if;
  h := encode(sha256(convert_to(operation || ' ' || args::text, 'UTF8')), 'hex');
  delete from invoices_internal.idempotency_keys
   where merchant_id = mid and key = k and created_at < now() - interval '24 hours';
  -- waits for a concurrent request holding the same key, then sees its committed row
  insert into invoices_internal.idempotency_keys (merchant_id, key, operation, request_hash)
  values (mid, k, operation, h)
  on conflict do nothing;
  if found then
    return null;
  end if;
  select * into prior from invoices_internal.idempotency_keys where merchant_id = mid and key = k;
  if prior.request_hash <> h then
    perform invoices_internal.raise('23505',
      format('Idempotency-Key %s was already used for a different request', k),
      jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
        'field', 'Idempotency-Key', 'message', 'was used with other arguments (' || prior.operation || ')')))::text,
      'send a new Idempotency-Key for a new request');
  end if;
  perform set_config('response.headers',
    (coalesce(nullif(current_setting('response.headers', true), '')::jsonb, '[]')
       || '[{"Idempotent-Replayed": "true"}]'::jsonb)::text, true);
  return prior.response;
end
$$;

-- Stores the response of the request that reserved the key (no-op without a key).
create function invoices_internal.idempotent_store(mid uuid, response jsonb) returns jsonb
language plpgsql volatile
as $$
declare
  k text := nullif(current_setting('invoices.idempotency_key', true), '');
begin
  if k is not null then
    update invoices_internal.idempotency_keys set response = idempotent_store.response
     where merchant_id = mid and key = k;
  end if;
  return response;
end
$$;

-- --------------------------------------------------------------------------------------------
-- The public invoice page's data
-- --------------------------------------------------------------------------------------------
-- Over HTTP the public view answers lookups only: each scan of it must be filtered by exactly
-- one equality on id or slug (what PostgREST generates for ?id=eq.<uuid> / ?slug=eq.<slug>),
-- so nobody can list, range over or search other people's invoices. The check reads the
-- statement PostgREST sent; the SQL door (admins) is not limited.
-- Stable with no arguments, so PostgreSQL evaluates it once, before any row is read (a
-- One-Time Filter): a refused filter gets the same 400 whether or not a row would match it,
-- so prefixes of slugs (slug=like.a*) tell nothing.
create function invoices_internal.public_lookup_allowed() returns boolean
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  q text;
begin
  if coalesce(current_setting('request.method', true), '') = '' then
    return true;
  end if;
  q := current_query();
  -- the public views answer a single id= / slug= lookup over HTTP, never a listing
  if q ~ 'FROM "invoices"\."public_(invoices|payment_links)"'
     and not exists (
       select 1 from regexp_matches(q, 'FROM "invoices"\."(public_invoices|public_payment_links)"(.{0,200})', 'g') m
        where m[2] !~ ('^\s+WHERE\s+"invoices"\."' || m[1] || '"\."(id|slug)" = \$\d+\s+(LIMIT|ORDER BY|\))')) then
    return true;
  end if;
  perform invoices_internal.raise('22023', 'public invoices and payment links are read one at a time, by id or slug',
    '{"errors":[{"field":"id","message":"filter by id=eq.<uuid> or slug=eq.<slug>, and nothing else"}]}',
    'GET /public_invoices?slug=eq.<slug> (the slug is in the hosted URL)');
  return false;
end
$$;

create view invoices.public_invoices as
select r.id, r.slug, r.invoice_number, r.status, r.currency,
       r.subtotal, r.tax_rate, r.tax_amount, r.discount_amount, r.total, r.amount_paid, r.amount_due,
       r.lines, r.merchant ->> 'name' as merchant_name, r.issue_date, r.due_date, r.notes,
       r.hosted_url, r.pdf_url, r.asset, r.asset_amount, r.rate, r.address, r.expires_at,
       r.confirmations, r.overpaid, r.paid_late,
       r.created_at, r.finalized_at, r.partially_paid_at, r.paid_at, r.confirmed_at,
       r.expired_at, r.overdue_at, r.cancelled_at
  from invoices_internal.invoice_rows r
 where r.finalized_at is not null
   and invoices_internal.public_lookup_allowed() and invoices_internal.may_read('public_invoices', current_user);
comment on view invoices.public_invoices is
  'What the payer of an invoice may see, readable without an API key, one invoice at a time: GET /public_invoices?id=eq.<uuid> or ?slug=eq.<slug> (any other filter, or none, is refused over HTTP). Invoices that were finalized only; no merchant id, customer contact, metadata, order id, callback URL or secret, redirect URLs or wallet.';
