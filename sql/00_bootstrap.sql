-- ============================================================================================
-- invoices — bootstrap: the private schema and the roles the API is granted to
-- ============================================================================================
--
-- Needs: nothing

-- ============================================================================================
-- invoices — bootstrap: the private schema and the roles the API is granted to.
-- ============================================================================================
-- Schema `invoices` (from invoices.control) is the public API: functions and views only.
-- Schema `invoices_internal` holds the tables; PostgREST never exposes it.
create schema if not exists invoices_internal;

comment on schema invoices_internal is
  'Private tables and helpers of the invoices extension. Use the functions and views of schema invoices instead.';

-- Convention: SECURITY DEFINER functions pin `set search_path = pg_catalog` and qualify every
-- object of the extension; helpers and triggers without that privilege omit the SET clause (it
-- costs a settings save/restore on every call, and they inherit the caller's pinned path).
-- invoices_admin: operators and data teams who may act for any merchant (invoices.act_as).
do $$
begin
  if not exists (select from pg_roles where rolname = 'invoices_admin') then
    create role invoices_admin nologin;
  end if;
end
$$;

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
