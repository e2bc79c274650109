-- ============================================================================================
-- invoices — security: grants, row-level security, dump configuration
-- ============================================================================================
-- Nobody but the owner touches invoices_internal directly; the API is the functions and views
-- of schema invoices. Functions that write are SECURITY DEFINER with a pinned search_path and
-- scope every statement to the caller's merchant.
--
-- Needs: every file before (it grants on, and checks, all of them)

revoke all on schema invoices_internal from public;

revoke all on all tables in schema invoices_internal from public;

revoke execute on all functions in schema invoices_internal from public;

revoke execute on all functions in schema invoices from public;

-- Views and policies call these as the querying user (no schema USAGE is needed for that).
grant execute on function invoices_internal.visible_merchants() to public;

grant execute on function invoices_internal.current_merchant_id() to public;

grant execute on function invoices_internal.admin_merchant_ids(name), invoices_internal.is_admin(name),
  invoices_internal.may_see(uuid), invoices_internal.anonymous_request() to public;

grant execute on function invoices_internal.may_read(text, name), invoices_internal.authorize(text) to public;

grant execute on function invoices_internal.readable_merchants(text, name) to public;

-- Pure date arithmetic the upcoming_runs view calls as the querying user.
grant execute on function invoices_internal.schedule_date(text, integer, integer, date, date, integer, integer, integer),
  invoices_internal.schedule_run_date(text, integer, integer, date, integer) to public;

-- Admins (data teams, operators) use the whole SQL door.
grant usage on schema invoices to invoices_admin;

grant select on all tables in schema invoices to invoices_admin;

grant execute on all functions in schema invoices to invoices_admin;

-- Row-level security on every tenant table: a role that is granted a table directly still
-- sees only its merchant's rows. (The owner, who runs the SECURITY DEFINER functions, scopes
-- its statements itself.)
alter table invoices_internal.merchants enable row level security;

create policy merchant_scope on invoices_internal.merchants
  using (invoices_internal.may_see(id));

-- ... and every table that carries merchant_id, today's and tomorrow's alike.
do $$
declare
  t regclass;
begin
  for t in select c.oid::regclass
             from pg_class c
             join pg_attribute a on a.attrelid = c.oid and a.attname = 'merchant_id' and not a.attisdropped
            where c.relnamespace = 'invoices_internal'::regnamespace and c.relkind = 'r'
            order by c.relname
  loop
    execute format('alter table %s enable row level security', t);
    execute format('create policy merchant_scope on %s using (invoices_internal.may_see(merchant_id))', t);
  end loop;
end
$$;

-- The HTTP door. PostgREST logs in as invoices_authenticator, reads its configuration from
-- postgrest_config() and runs every request as invoices_api behind http_pre_request(). The
-- role can read the views and call the functions a key's scopes may use; the pre-request check
-- decides which key, merchant and scope a request has.
grant usage on schema invoices_internal to invoices_api, invoices_authenticator;

grant execute on function invoices_internal.postgrest_config() to invoices_authenticator;

grant execute on function invoices_internal.http_pre_request() to invoices_api;

grant execute on function invoices_internal.api_key_usage(), invoices_internal.public_lookup_allowed()
  to invoices_api, invoices_admin;

grant usage on schema invoices to invoices_api;

grant select on invoices.invoices, invoices.invoice_lines, invoices.audit_log, invoices.api_keys,
                invoices.public_invoices
   to invoices_api;

grant execute on function
  invoices.create_invoice(jsonb, text, text, text, text, text, numeric, numeric, date, date, text, jsonb, text, numeric, integer, integer, integer, text, text, integer, text, text, text, boolean, jsonb, text, text),
  invoices.finalize_invoice(text),
  invoices.cancel_invoice(text),
  invoices.void_invoice(text),
  invoices.mark_uncollectible(text),
  invoices.invoice_status(text),
  invoices.create_api_key(text, text[], integer),
  invoices.revoke_api_key(uuid)
  to invoices_api;

-- Extension tables are left out of pg_dump unless marked: these hold the users' data.
select pg_catalog.pg_extension_config_dump('invoices_internal.merchants', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.invoices', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.invoice_lines', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.invoice_slugs', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.audit_log', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.api_keys', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.api_key_hashes', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.server_secrets', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.idempotency_keys', '');

-- Rates, quotes and the worker.
grant execute on function invoices_internal.median_rate(numeric[]) to invoices_api, invoices_admin;

grant select on invoices.quotes, invoices.rates to invoices_api;

grant execute on function invoices.requote_invoice(text) to invoices_api;

select pg_catalog.pg_extension_config_dump('invoices_internal.quotes', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.rate_sources', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.rate_observations', '');

-- Wallets and the address carousel.
grant select on invoices.wallets, invoices.addresses to invoices_api;

grant execute on function invoices.create_wallet(text, text, text, integer, text) to invoices_api;

select pg_catalog.pg_extension_config_dump('invoices_internal.wallets', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.addresses', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.address_assignments', '');

-- Events and webhooks (row-level security comes from the merchant_id loop above).
grant select on invoices.events, invoices.webhook_endpoints, invoices.webhook_deliveries to invoices_api;

grant execute on function invoices.create_webhook_endpoint(text, text[], text, text), invoices.delete_webhook_endpoint(uuid),
  invoices.redeliver(bigint), invoices.verify_webhook_signature(text, text, text, integer) to invoices_api;

grant execute on function invoices_internal.verify_signature(text, text, text, integer) to invoices_api, invoices_admin;

select pg_catalog.pg_extension_config_dump('invoices_internal.events', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.webhook_endpoints', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.webhook_deliveries', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.webhook_attempts', '');

-- Chains and payments. configure_chain is for admins only (SQL); merchants read the chains'
-- progress without their node credentials.
grant select on invoices.chains, invoices.payments, invoices.unmatched_payments to invoices_api;

grant execute on function invoices_internal.url_origin(text), invoices_internal.redact_urls(text) to invoices_api, invoices_admin;

grant execute on function invoices.set_payment_tolerance(numeric) to invoices_api;

grant execute on function invoices.set_bank_instructions(text) to invoices_api;

select pg_catalog.pg_extension_config_dump('invoices_internal.chains', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.payments', '');

-- Analytics views (read scope over HTTP).
grant select on invoices.receivables_aging, invoices.revenue_by_month, invoices.payment_conversion,
  invoices.days_to_pay, invoices.open_exposure, invoices.fx_gain_loss, invoices.journal_entries to invoices_api;

grant execute on function invoices_internal.current_rate(text, text) to invoices_api, invoices_admin;

-- Payment links: merchants manage theirs (write scope); anyone may read an active one by slug
-- and pay it (the pre-request check lets these through without a key).
grant select on invoices.payment_links, invoices.public_payment_links to invoices_api;

grant execute on function invoices.create_payment_link(text, text, text, numeric, text, text, text, jsonb),
  invoices.deactivate_payment_link(text), invoices.pay_payment_link(text, numeric) to invoices_api;

select pg_catalog.pg_extension_config_dump('invoices_internal.payment_links', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.payment_link_slugs', '');

select pg_catalog.pg_extension_config_dump('invoices_internal.wallet_keys', '');

-- Documents: the PDF and the hosted page (public by slug, see the pre-request check).
grant execute on function invoices.seed_request(text), invoices.seed_pdf(text), invoices.widget_js(),
  invoices.requote_expired(text), invoices.allow_public_requote(boolean) to invoices_api;

grant execute on function invoices.invoice_pdf(text), invoices.receipt_pdf(text), invoices.hosted_invoice(text),
  invoices.invoice_viewed(text) to invoices_api;

-- E-mail: merchants send (write scope) and follow their e-mails (read).
grant select on invoices.emails to invoices_api;

grant execute on function invoices.send_invoice(text, text) to invoices_api;

-- Reminders: the schedule is the merchant's setting (admin scope); the sent ones are read.
grant select on invoices.invoice_reminders to invoices_api;

grant execute on function invoices.set_reminder_schedule(integer[], time, text) to invoices_api;

-- Recurring invoices: made and changed with the write scope, read with read.
grant select on invoices.schedules, invoices.upcoming_runs to invoices_api;

grant execute on function invoices.create_schedule(jsonb, text, integer, integer, date, date, integer, boolean, integer,
  text, text, text, text, text, numeric, numeric, text, text, jsonb), invoices.pause_schedule(text),
  invoices.resume_schedule(text), invoices.cancel_schedule(text), invoices.set_time_zone(text) to invoices_api;

select pg_catalog.pg_extension_config_dump('invoices_internal.emails', '');

-- Every function and view of schema invoices has its scope in invoices_internal.access_rules,
-- and every function checks it first: a new one cannot be exposed over HTTP unchecked.
do $$
declare
  missing text;
begin
  select string_agg(o.kind || ' ' || o.name, ', ') into missing
    from (select 'function' as kind, p.proname::text as name, p.prosrc from pg_proc p
           where p.pronamespace = 'invoices'::regnamespace
          union all
          select 'view', c.relname::text, pg_get_viewdef(c.oid) from pg_class c
           where c.relnamespace = 'invoices'::regnamespace and c.relkind = 'v') o
   where not exists (select 1 from invoices_internal.access_rules a where a.kind = o.kind and a.object = o.name)
      or (o.kind = 'function' and o.prosrc not like format('%%invoices_internal.authorize(%L)%%', o.name))
      or (o.kind = 'view' and o.prosrc not like format('%%may_read(%L%%', o.name)
                          and o.prosrc not like format('%%readable_merchants(%L%%', o.name));
  if missing is not null then
    raise exception 'objects of schema invoices without a scope rule or its check: %', missing;
  end if;
end
$$;
