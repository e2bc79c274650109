-- ============================================================================================
-- invoices — tenancy and scopes: which merchant the caller acts for, and what it may call
-- ============================================================================================
-- HTTP requests act for the merchant of their API key; SQL sessions call invoices.act_as().
-- Views and row-level security policies show only visible_merchants().
--
-- Needs: 05_errors (raise); 10_tables (merchants)
-- Provides (API): act_as()
-- Provides (internal): set_local(), session_scope, readable_merchants(), current_merchant_id(), is_admin(), admin_merchant_ids(), may_see(), anonymous_request(), visible_merchants(), require_merchant(), access_rules, http_scopes(), needed_scope(), scope_allows(), check_scope(), authorize(), may_read()

-- SQL-standard bodies (BEGIN ATOMIC) are resolved when created, so views and policies can call
-- these for roles that have no USAGE on schema invoices_internal.
create function invoices_internal.current_merchant_id() returns uuid
language sql stable parallel safe
begin atomic
  select nullif(current_setting('invoices.merchant_id', true), '')::uuid;
end;

-- Superusers and members of invoices_admin may act for any merchant and, when acting for
-- none, see every merchant's rows (data teams, operators). `caller` is the querying role; it
-- counts only if the session may act as it, so nobody can claim another role's rights. Reads
-- the catalog only, so a Citus worker can answer it inside a query on a shard.
create function invoices_internal.is_admin(caller name) returns boolean
language sql stable security definer
set search_path = pg_catalog
as $$
  select pg_has_role(session_user, caller, 'MEMBER')
         and (coalesce((select rolsuper from pg_roles where rolname = caller), false)
              or pg_has_role(caller, 'invoices_admin', 'MEMBER'))
$$;

create function invoices_internal.admin_merchant_ids(caller name) returns uuid[]
language plpgsql stable security definer
set search_path = pg_catalog
as $$
begin
  if not invoices_internal.is_admin(caller) then
    return '{}'::uuid[];
  end if;
  return (select coalesce(array_agg(id), '{}') from invoices_internal.merchants);
end
$$;

-- May the caller see this merchant's rows? The row-level security policies' test: no subquery
-- and no table read, so Citus can send it with every query on a shard.
create function invoices_internal.may_see(merchant uuid) returns boolean
language sql stable parallel safe
begin atomic
  select merchant = invoices_internal.current_merchant_id()
      or (invoices_internal.current_merchant_id() is null and invoices_internal.is_admin(current_user));
end;

-- Is this an HTTP request without an API key? (On Citus: the API role's public doors, policy
-- public_doors, read what the public views show; the pre-request check passes the setting on.)
create function invoices_internal.anonymous_request() returns boolean
language sql stable parallel safe
begin atomic
  select invoices_internal.current_merchant_id() is null
     and current_setting('invoices.api_key_scopes', true) = 'anonymous';
end;

-- The merchants whose rows the caller may see: the one it acts for, every one for an admin
-- acting for none, else none.
create function invoices_internal.visible_merchants() returns uuid[]
language sql stable parallel safe
begin atomic
  select case when invoices_internal.current_merchant_id() is not null
              then array[invoices_internal.current_merchant_id()]
              else invoices_internal.admin_merchant_ids(current_user) end;
end;

-- The merchant a state-changing call acts for; an error if there is none.
create function invoices_internal.require_merchant() returns uuid
language plpgsql stable
as $$
declare
  mid uuid := invoices_internal.current_merchant_id();
begin
  if mid is null then
    perform invoices_internal.raise('42501', 'no merchant selected', null,
      'over HTTP send an API key (X-API-Key or Authorization: Bearer); in SQL call invoices.act_as(merchant_id) first');
  end if;
  return mid;
end
$$;

-- Sets a setting of the extension for the rest of the transaction with SET LOCAL, which
-- Citus passes on to the worker nodes a statement touches (citus.propagate_set_commands =
-- 'local'); set_config() would stay on this node. Callers name the setting themselves.
create function invoices_internal.set_local(setting text, value text) returns void
language plpgsql volatile
as $$
begin
  if setting not in ('invoices.merchant_id', 'invoices.api_key_id', 'invoices.api_key_scopes', 'invoices.actor') then
    raise exception 'set_local: % is not a setting it passes on', setting using errcode = '22023';
  end if;
  execute format('set local %s = %L', setting, coalesce(value, ''));
end
$$;

create function invoices.act_as(merchant_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  authorized boolean := invoices_internal.authorize('act_as');  -- first: the caller's scope
  m invoices_internal.merchants;
begin
  if act_as.merchant_id is null then
    perform set_config('invoices.merchant_id', '', false);
    perform invoices_internal.set_local('invoices.merchant_id', '');
    return null;
  end if;
  select * into m from invoices_internal.merchants where id = act_as.merchant_id;
  if not found then
    raise exception 'merchant % not found', act_as.merchant_id
      using errcode = 'P0002', hint = 'list merchants with: select id, name from invoices_internal.merchants';
  end if;
  perform set_config('invoices.merchant_id', m.id::text, false);
  -- (on Citus, inside BEGIN … COMMIT the workers learn it too: row-level security there)
  perform invoices_internal.set_local('invoices.merchant_id', m.id::text);
  return jsonb_build_object('id', m.id, 'name', m.name);
end
$$;

comment on function invoices.act_as(uuid) is
  'SQL door (admins only): act for this merchant for the rest of the session; row-level security and every invoices.* function then scope to it. act_as(null) stops. Returns {id, name}.';

-- --------------------------------------------------------------------------------------------
-- Scopes: what the caller's API key may use
-- --------------------------------------------------------------------------------------------
-- One table says which scope each function and view of schema invoices needs over HTTP. The
-- functions (invoices_internal.authorize) and the views (invoices_internal.may_read) check it
-- themselves, so what a key may do cannot depend on how a URL spells a name
-- (/rpc/create%5Fapi%5Fkey is create_api_key to PostgREST). The pre-request check applies the
-- same table to the decoded path as a second line. A SQL session is governed by its role's
-- grants instead (admins, data teams).
create table invoices_internal.access_rules (
  kind   text not null check (kind in ('function', 'view')),
  object text not null,   -- the function's or view's name in schema invoices
  scope  text not null check (scope in ('anonymous', 'public_read', 'read', 'write', 'webhooks', 'admin', 'sql')),
  primary key (kind, object)
);

comment on table invoices_internal.access_rules is
  'The scope each function and view of schema invoices needs over HTTP: anonymous (anyone), public_read (anyone; with a key, read), read, write, webhooks, admin (a key with admin may use everything but sql), sql (never over HTTP).';

insert into invoices_internal.access_rules (kind, object, scope) values
  -- SQL door only: operators and data teams
  ('function', 'act_as', 'sql'), ('function', 'create_merchant', 'sql'), ('function', 'set_rate', 'sql'),
  ('function', 'create_rate_source', 'sql'), ('function', 'configure_chain', 'sql'),
  ('function', 'distribute_on_citus', 'sql'),
  -- who controls the merchant's money and keys
  ('function', 'create_api_key', 'admin'), ('function', 'revoke_api_key', 'admin'),
  ('function', 'create_wallet', 'admin'), ('function', 'set_payment_tolerance', 'admin'),
  ('function', 'set_bank_instructions', 'admin'), ('function', 'set_reminder_schedule', 'admin'), ('function', 'set_time_zone', 'admin'),
  ('view', 'api_keys', 'admin'),
  -- webhooks: the endpoints receive every event, signed with their secrets
  ('function', 'create_webhook_endpoint', 'webhooks'), ('function', 'delete_webhook_endpoint', 'webhooks'),
  ('function', 'redeliver', 'webhooks'),
  ('view', 'webhook_endpoints', 'webhooks'), ('view', 'webhook_deliveries', 'webhooks'),
  -- invoices and payment links
  ('function', 'create_invoice', 'write'), ('function', 'finalize_invoice', 'write'),
  ('function', 'cancel_invoice', 'write'), ('function', 'void_invoice', 'write'), ('function', 'mark_uncollectible', 'write'), ('function', 'requote_invoice', 'write'),
  ('function', 'send_invoice', 'write'), ('function', 'create_payment_link', 'write'),
  ('function', 'deactivate_payment_link', 'write'),
  ('function', 'create_schedule', 'write'), ('function', 'pause_schedule', 'write'),
  ('function', 'resume_schedule', 'write'), ('function', 'cancel_schedule', 'write'),
  -- the payer's side: by slug, without a key
  ('function', 'invoice_status', 'public_read'), ('function', 'invoice_pdf', 'public_read'), ('function', 'receipt_pdf', 'public_read'),
  ('function', 'hosted_invoice', 'anonymous'), ('function', 'invoice_viewed', 'anonymous'),
  ('function', 'pay_payment_link', 'anonymous'), ('function', 'verify_webhook_signature', 'anonymous'),
  ('view', 'public_invoices', 'anonymous'), ('view', 'public_payment_links', 'anonymous'),
  -- the seed APIs' entry point: each of its routes checks its own scope (domain::seeds::ROUTES)
  ('function', 'seed_request', 'anonymous'), ('function', 'seed_pdf', 'anonymous'),
  ('function', 'widget_js', 'anonymous'), ('function', 'requote_expired', 'anonymous'),
  ('function', 'allow_public_requote', 'admin'),
  -- everything a merchant reads
  ('view', 'invoices', 'read'), ('view', 'invoice_lines', 'read'), ('view', 'audit_log', 'read'),
  ('view', 'quotes', 'read'), ('view', 'rates', 'read'), ('view', 'rate_sources', 'read'),
  ('view', 'wallets', 'read'), ('view', 'addresses', 'read'), ('view', 'events', 'read'),
  ('view', 'chains', 'read'), ('view', 'payments', 'read'), ('view', 'unmatched_payments', 'read'), ('view', 'payment_links', 'read'),
  ('view', 'emails', 'read'), ('view', 'invoice_reminders', 'read'), ('view', 'schedules', 'read'), ('view', 'upcoming_runs', 'read'), ('view', 'worker_status', 'read'),
  ('view', 'receivables_aging', 'read'), ('view', 'revenue_by_month', 'read'),
  ('view', 'payment_conversion', 'read'), ('view', 'days_to_pay', 'read'),
  ('view', 'open_exposure', 'read'), ('view', 'fx_gain_loss', 'read'), ('view', 'journal_entries', 'read');

-- The scopes of the HTTP caller: its API key's, or {anonymous}; null in a SQL session.
create function invoices_internal.http_scopes() returns text[]
language sql stable
begin atomic
  select case when coalesce(current_setting('request.method', true), '') <> ''
                   or session_user = 'invoices_authenticator'::name
              then string_to_array(coalesce(nullif(current_setting('invoices.api_key_scopes', true), ''),
                                            'anonymous'), ',')
         end;

end;

-- The scope an object needs: its rule, else write for a function and read for a view.
-- (plpgsql: its plan is cached per session; every request asks twice)
create function invoices_internal.needed_scope(kind text, object text) returns text
language plpgsql stable
as $$
declare
  need text;
begin
  select a.scope into need from invoices_internal.access_rules a
   where a.kind = needed_scope.kind and a.object = needed_scope.object;
  return coalesce(need, case kind when 'function' then 'write' else 'read' end);
end
$$;

-- Do `scopes` grant `need`? (admin grants everything but the SQL door; public_read is open to
-- anyone without a key, and needs read with one)
create function invoices_internal.scope_allows(need text, scopes text[]) returns boolean
language sql immutable
return need = 'anonymous'
    or (need = 'public_read' and (scopes = '{anonymous}' or scopes && '{read,admin}'))
    or (need not in ('sql', 'public_read') and scopes && array[need, 'admin']);

-- Raises 401 (no key) or 403 (the key lacks the scope) unless `scopes` grant `need`.
create function invoices_internal.check_scope(need text, scopes text[], what text) returns void
language plpgsql stable
as $$
begin
  if invoices_internal.scope_allows(need, scopes) then
    return;
  end if;
  if need = 'sql' then
    perform invoices_internal.raise('42501', format('%s is not available over HTTP', what), null,
      'operators call it in SQL, as a member of invoices_admin');
  elsif scopes = '{anonymous}' then
    perform invoices_internal.raise('28000', 'an API key is required', null,
      'send it as X-API-Key: <key> or Authorization: Bearer <key>');
  end if;
  need := replace(need, 'public_', '');
  perform invoices_internal.raise('42501', format('this API key lacks the %s scope', need), null,
    format('create a key with scopes => ''{%s}'' (this one has %s)', need, array_to_string(scopes, ', ')));
end
$$;

-- The first declaration of every public function (authorized boolean := authorize('name')), so
-- it runs before anything else the function does: over HTTP the caller's key must hold the
-- function's scope. A function that passed lets the functions it calls run for it
-- (pay_payment_link, anonymous, creates the link's invoice with create_invoice).
create function invoices_internal.authorize(object text) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  scopes text[] := invoices_internal.http_scopes();
  need text;
begin
  if scopes is null or coalesce(current_setting('invoices.authorized_call', true), '') <> '' then
    return true;
  end if;
  need := invoices_internal.needed_scope('function', object);
  if not invoices_internal.scope_allows(need, scopes) then
    perform invoices_internal.check_scope(need, scopes, format('invoices.%s()', object));
  end if;
  perform set_config('invoices.authorized_call', object, true);
  return true;
end
$$;

-- In the WHERE of every view, with caller => current_user: over HTTP the caller's key must
-- hold the view's scope. Reads by the extension's own functions (caller is the owner) pass.
-- Stable with constant arguments, so PostgreSQL evaluates it once, before any row is read.
create function invoices_internal.may_read(object text, caller name) returns boolean
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  scopes text[] := invoices_internal.http_scopes();
  need text;
begin
  if scopes is null or caller = current_user then
    return true;
  end if;
  need := invoices_internal.needed_scope('view', object);
  if not invoices_internal.scope_allows(need, scopes) then
    perform invoices_internal.check_scope(need, scopes, format('invoices.%s', object));
  end if;
  return true;
end
$$;

-- --------------------------------------------------------------------------------------------
-- The views' filter: evaluated once per query, where the caller's session is
-- --------------------------------------------------------------------------------------------
-- One row, never distributed (distribution_plan: local). Each view of schema invoices filters
-- merchant_id = any ((select readable_merchants(...) from session_scope)): an init-plan, so
-- the check runs once per query, and on Citus a subquery over a coordinator-only table is
-- evaluated on the coordinator, whose session knows the merchant (invoices.act_as, the API
-- key). The worker nodes receive the answer, a list of merchant ids, never the question.
create table invoices_internal.session_scope (
  one boolean primary key default true check (one)
);

insert into invoices_internal.session_scope default values;

comment on table invoices_internal.session_scope is
  'One row that stays on the coordinator: the views'' merchant filter reads it so that, on Citus, the filter is evaluated in the caller''s session and only its answer is sent to the worker nodes.';

-- The merchants whose rows of view `object` the caller may read: visible_merchants(), once
-- the caller's API key may read the view (else may_read raises 42501).
create function invoices_internal.readable_merchants(object text, caller name) returns uuid[]
language sql stable
begin atomic
  select case when invoices_internal.may_read(object, caller) then invoices_internal.visible_merchants() end;
end;
