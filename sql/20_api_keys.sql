-- ============================================================================================
-- invoices — API keys and idempotency keys
-- ============================================================================================
-- A key is a JWT signed with the secret PostgREST verifies bearer tokens with (domain::apikey),
-- so one key works as `Authorization: Bearer <key>` (PostgREST checks the signature) and as
-- `X-API-Key: <key>` (passed through). Either way only its SHA-256 is stored and looked up, so
-- revoking takes effect on the next request. An Idempotency-Key replays the first answer.
--
-- Needs: 05_errors (raise, raise_error); 10_tables (current_actor, merchants); 15_tenancy
--   (authorize, may_read, readable_merchants, require_merchant, session_scope)
-- Provides (API): create_api_key(), revoke_api_key(), api_keys
-- Provides (internal): server_secrets, jwt_secret(), api_keys, api_key_hashes, insert_api_key(), idempotency_keys, idempotent_replay(), idempotent_store()

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
 where k.merchant_id = any ((select invoices_internal.readable_merchants('api_keys', current_user) from invoices_internal.session_scope)::uuid[]);

comment on view invoices.api_keys is
  'API keys of the current merchant: name, prefix (the key''s public id), scopes, rate limit, created/revoked/last used. Never the key itself.';

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
