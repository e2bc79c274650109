-- API keys in the SQL door: created with the merchant, shown once, stored hashed, scoped,
-- revoked; the pre-request check of the HTTP door; idempotency keys.
\set SHOW_CONTEXT never
select invoices.create_merchant('Keys Inc') as m \gset
select (:'m'::jsonb ->> 'api_key') ~ '^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' as first_key_is_a_jwt;
select (:'m'::jsonb ->> 'id') as mid \gset
select invoices.act_as(:'mid') ->> 'name' as acting;
-- only the hash is stored, and it is the SHA-256 of the key
select count(*) as keys, bool_and(key_hash = encode(sha256(convert_to(:'m'::jsonb ->> 'api_key', 'UTF8')), 'hex')) as hashed,
       bool_and(key_hash <> :'m'::jsonb ->> 'api_key') as not_clear
  from invoices_internal.api_keys where merchant_id = :'mid';
select name, scopes, active, prefix ~ '^inv_[0-9a-f]{12}$' as prefix_ok from invoices.api_keys;
-- a new key: scopes deduplicated in canonical order
select invoices.create_api_key('CI deploy', '{write,read,write}') as k \gset
select :'k'::jsonb - 'api_key' - 'id' - 'created_at' - 'prefix' - 'merchant_id' as created;
select (:'k'::jsonb ? 'api_key') as shown_once;
-- bad input: every bad field named, no row written
select count(*) as keys_before from invoices.api_keys \gset
select invoices.create_api_key('', '{read,root}');
select invoices.create_api_key('ok', '{}');
select invoices.create_api_key('ok', '{read}', 0);
select count(*) = :keys_before as nothing_written from invoices.api_keys;
-- revoke: once, twice (keeps the first time), unknown id
select invoices.revoke_api_key((:'k'::jsonb ->> 'id')::uuid) ->> 'name' as revoked;
select revoked_at as first_revoked_at from invoices.api_keys where id = (:'k'::jsonb ->> 'id')::uuid \gset
select (invoices.revoke_api_key((:'k'::jsonb ->> 'id')::uuid) ->> 'revoked_at')::timestamptz = :'first_revoked_at' as kept_first;
select invoices.revoke_api_key('00000000-0000-7000-8000-000000000000');
select name, active from invoices.api_keys order by created_at;
-- another merchant cannot see or revoke them
select invoices.create_merchant('Other Keys') ->> 'id' as other \gset
select invoices.act_as(:'other') ->> 'name' as acting;
select count(*) as other_sees from invoices.api_keys where merchant_id = :'mid';
select id as default_key from invoices_internal.api_keys where merchant_id = :'mid' and name = 'Default key' \gset
select set_config('regress.default_key', :'default_key', false) is not null as remembered;
do $$
begin
  perform invoices.revoke_api_key(current_setting('regress.default_key')::uuid);
  raise notice 'Other Keys revoked a key of Keys Inc';
exception when no_data_found then
  raise notice 'revoke_api_key of another merchant''s key: not found (%)', sqlstate;
end $$;
select invoices.act_as(null);

-- The pre-request check, as PostgREST runs it (request.* settings are set per transaction).
create function pg_temp.request(method text, path text, headers jsonb) returns text
language plpgsql as $$
begin
  perform set_config('request.method', method, true);
  perform set_config('request.path', path, true);
  perform set_config('request.headers', headers::text, true);
  perform invoices_internal.http_pre_request();
  return format('merchant=%s key=%s', current_setting('invoices.merchant_id', true) is not null
                and current_setting('invoices.merchant_id', true) <> '',
                current_setting('invoices.api_key_id', true) <> '');
exception when others then
  return format('%s %s', sqlstate, sqlerrm);
end $$;
select set_config('regress.key', :'m'::jsonb ->> 'api_key', false) is not null as remembered;
begin;
select pg_temp.request('GET', '/invoices', jsonb_build_object('x-api-key', current_setting('regress.key'))) as x_api_key;
rollback;
begin;
select pg_temp.request('GET', '/invoices', jsonb_build_object('authorization', 'Bearer ' || current_setting('regress.key'))) as bearer;
rollback;
begin;
-- during a PostgREST request errors are raised as PGRST, carrying the SQLSTATE and the HTTP status
select pg_temp.request('GET', '/invoices', '{}') as no_key;
select pg_temp.request('GET', '/public_invoices', '{}') as anonymous_public_view;
select pg_temp.request('GET', '/invoices', '{"x-api-key": "eyJ.nope.nope"}') as unknown_key;
select pg_temp.request('POST', '/rpc/create_invoice',
  jsonb_build_object('x-api-key', (select invoices_internal.insert_api_key(:'mid', 'reader', '{read}') ->> 'api_key'))) as wrong_scope;
rollback;
-- scopes a request needs
select m, p, invoices_internal.required_scope(m, p)
  from (values ('GET', '/invoices'), ('POST', '/rpc/create_invoice'), ('POST', '/rpc/invoice_status'),
               ('POST', '/rpc/create_api_key'), ('GET', '/api_keys'), ('GET', '/public_invoices'),
               ('GET', '/')) v(m, p);
-- ... read the way PostgREST routes: decoded, so no spelling of a name needs less
select m, p, invoices_internal.required_scope(m, p)
  from (values ('POST', '/rpc/create%5Fapi%5Fkey'), ('POST', '/rpc/create%5fapi%5fkey'),
               ('POST', '/rpc/%63reate_api_key'), ('POST', '/rpc/create_api%00key'), ('POST', '/rpc%2Fcreate_api_key'),
               ('GET', '/api%5Fkeys'), ('GET', '/webhook%5Fdeliveries'), ('GET', '/API_KEYS'),
               ('DELETE', '/invoices'), ('GET', '/rpc/create_invoice')) v(m, p);
-- The functions and views check the key's scope themselves: a request the path check let
-- through (here: GET /, open to anyone) still cannot call what its key lacks.
-- The keys are minted first (as PostgREST finds them: already there); each call then runs as
-- a request does: the API role, the pre-request check, the statement.
create temporary table scoped_keys as
select s::text[] as scopes, invoices_internal.insert_api_key(:'mid', 'scoped', s::text[]) ->> 'api_key' as key
  from (values ('{write}'), ('{read,write,webhooks}'), ('{admin}'), ('{read}'), ('{webhooks}')) v(s);
create function pg_temp.call_with(key_scopes text[], statement text) returns text
language plpgsql as $$
declare
  key text := (select k.key from scoped_keys k where k.scopes = key_scopes);
begin
  perform set_config('role', 'invoices_api', true);   -- as PostgREST runs requests
  perform set_config('request.method', 'GET', true), set_config('request.path', '/', true),
          set_config('request.headers', jsonb_build_object('x-api-key', key)::text, true);
  perform invoices_internal.http_pre_request();
  execute statement;
  raise exception 'allowed' using errcode = 'P0001';  -- undoes the request, as its end would
exception when others then
  return case when sqlerrm = 'allowed' then 'allowed'
              when sqlstate = 'PGRST' then format('PGRST %s', sqlerrm::jsonb ->> 'code')
              else format('%s %s', sqlstate, sqlerrm) end;
end $$;
-- (each call in a transaction of its own, as each request is)
select format('select %L as s, %L as q, pg_temp.call_with(%L, %L)', s, q, s, q)
  from (values ('{write}', 'select invoices.create_api_key(''minted'', ''{admin}'')'),
               ('{read,write,webhooks}', 'select invoices.create_api_key(''minted'', ''{admin}'')'),
               ('{admin}', 'select invoices.create_api_key(''minted'', ''{admin}'')'),
               ('{write}', 'select invoices.create_wallet(''BTC'', address => ''bc1q'')'),
               ('{read}', 'select count(*) from invoices.api_keys'),
               ('{read}', 'select count(*) from invoices.webhook_deliveries'),
               ('{webhooks}', 'select count(*) from invoices.webhook_deliveries'),
               ('{read}', 'select invoices.cancel_invoice(''INV-9999'')'),
               ('{write}', 'select count(*) from invoices.invoices'),
               ('{read}', 'select count(*) from invoices.invoices'),
               ('{read}', 'select invoices.create_merchant(''via HTTP'')'),
               ('{write}', 'select invoices.verify_webhook_signature(''{}'', ''x'', ''y'')'),
               ('{write}', 'select invoices.invoice_status(''INV-9999'')')) v(s, q) \gexec
-- a key cannot lift its own rate limit past the operator's ceiling
select invoices.act_as(:'mid') ->> 'name' as acting;
select invoices.create_api_key('fast', '{read}', 1001);
select invoices.create_api_key('fast', '{read}', 1000) ->> 'rate_limit_per_minute' as at_the_ceiling;
-- anonymous requests are counted per client address (the web front's X-Real-IP); each run
-- uses fresh addresses, as the counters live in shared memory
select 'client-' || gen_random_uuid() as client, 'other-' || gen_random_uuid() as other \gset
create function pg_temp.anonymous(client text) returns text
language plpgsql as $$
begin
  return regexp_replace(pg_temp.request('GET', '/public_invoices', jsonb_build_object('x-real-ip', client)),
                        'retry after [0-9]+ seconds', 'retry after N seconds');
end $$;
begin;
set local invoices.anonymous_rate_limit_per_minute = 2;
select pg_temp.anonymous(:'client') as first, pg_temp.anonymous(:'client') as second;
select pg_temp.anonymous(:'client') as third_refused;
select pg_temp.anonymous(:'other') as another_client;
rollback;
-- HTTP statuses of the extension's SQLSTATEs
select c, invoices_internal.http_status(c)
  from unnest(array['22023', '23514', '23505', '28000', '42501', 'P0002', '54000']) c;

-- Idempotency keys (the HTTP door copies the Idempotency-Key header into this setting).
select invoices.act_as(:'mid') ->> 'name' as acting;
begin;
set local invoices.idempotency_key = 'order-42';
select invoices.create_invoice(lines => '[{"description": "Once", "unit_price": 10}]') ->> 'id' as first_id \gset
select invoices.create_invoice(lines => '[{"description": "Once", "unit_price": 10}]') ->> 'id' = :'first_id' as replayed;
select count(*) as invoices_created from invoices.invoices where lines @> '[{"description": "Once"}]';
select invoices.create_invoice(lines => '[{"description": "Twice", "unit_price": 10}]');
rollback;
