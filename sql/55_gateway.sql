-- ============================================================================================
-- invoices — the gateway: PostgREST's door into the API
-- ============================================================================================
-- PostgREST connects as invoices_authenticator and runs every request as invoices_api, with or
-- without a key. Authorization is not the role's job: http_pre_request() finds the API key of
-- the request, counts it against its rate limit, checks its scope (access_rules, on the path
-- as PostgREST decodes it: domain::gateway) and sets invoices.merchant_id for the transaction,
-- which every view and function of schema invoices scopes to.
--
-- Needs: 05_errors (raise); 15_tenancy (check_scope, may_read, needed_scope, scope_allows, session_scope, set_local);
--   20_api_keys (api_key_hashes, api_keys, server_secrets); 40_views (invoice_rows)
-- Provides (API): public_invoices
-- Provides (internal): required_scope(), count_request(), http_pre_request(), postgrest_config(), public_lookup_allowed()

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
  presented_hash text;
  k record;
  refusal text;
  refusal_detail text;
begin
  -- The seed APIs answer a refusal in their own shape ({"error": …}): for their entry point the
  -- check runs once more below, and what it raises is kept for invoices.seed_request to answer.
  if current_setting('request.path', true) in ('/rpc/seed_request', '/rpc/seed_pdf')
     and coalesce(current_setting('invoices.gateway_checking', true), '') = '' then
    perform set_config('invoices.gateway_checking', 'on', true);
    begin
      perform invoices_internal.http_pre_request();
    exception when sqlstate 'PGRST' then
      get stacked diagnostics refusal = message_text, refusal_detail = pg_exception_detail;
      perform set_config('invoices.gateway_refusal',
        (refusal::jsonb || jsonb_build_object('status', refusal_detail::jsonb->'status',
                                              'headers', refusal_detail::jsonb->'headers'))::text, true);
    end;
    return;
  end if;
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
    -- (SET LOCAL: on Citus the public views' reads on the worker nodes need it, public_doors)
    perform invoices_internal.set_local('invoices.api_key_scopes', 'anonymous');
    if need in ('anonymous', 'public_read') then
      return;
    end if;
    perform invoices_internal.raise('28000', 'an API key is required', null,
      'send it as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;

  -- the hash first, then the lookup by it (on Citus: the one shard that holds it)
  presented_hash := encode(sha256(convert_to(presented, 'UTF8')), 'hex');
  select h.merchant_id, h.key_id into owner
    from invoices_internal.api_key_hashes h
   where h.key_hash = presented_hash;
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

  -- the merchant and key with SET LOCAL: on Citus they reach the worker nodes (row-level
  -- security, the audit log's actor)
  perform invoices_internal.set_local('invoices.merchant_id', k.merchant_id::text),
          invoices_internal.set_local('invoices.api_key_id', k.id::text),
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
-- The public invoice page's data
-- --------------------------------------------------------------------------------------------
-- Over HTTP the public view answers lookups only: each scan of it must be filtered by exactly
-- one equality on id or slug (what PostgREST generates for ?id=eq.<uuid> / ?slug=eq.<slug>),
-- so nobody can list, range over or search other people's invoices. The check reads the
-- statement PostgREST sent; the SQL door (admins) is not limited.
-- The public views call it in a subquery over session_scope, so it is evaluated once, before
-- any row is read (a One-Time Filter; on Citus on the coordinator, which has the request): a
-- refused filter gets the same 400 whether or not a row would match it, so prefixes of slugs
-- (slug=like.a*) tell nothing.
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
   and (select invoices_internal.public_lookup_allowed() and invoices_internal.may_read('public_invoices', current_user)
          from invoices_internal.session_scope);

comment on view invoices.public_invoices is
  'What the payer of an invoice may see, readable without an API key, one invoice at a time: GET /public_invoices?id=eq.<uuid> or ?slug=eq.<slug> (any other filter, or none, is refused over HTTP). Invoices that were finalized only; no merchant id, customer contact, metadata, order id, callback URL or secret, redirect URLs or wallet.';
