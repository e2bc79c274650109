-- ============================================================================================
-- invoices — tenancy: which merchant the caller acts for
-- ============================================================================================
-- HTTP requests act for the merchant of their API key; SQL sessions call invoices.act_as().
-- Views and row-level security policies show only visible_merchants().


-- SQL-standard bodies (BEGIN ATOMIC) are resolved when created, so views and policies can call
-- these for roles that have no USAGE on schema invoices_internal.
create function invoices_internal.current_merchant_id() returns uuid
language sql stable parallel safe
begin atomic
  select nullif(current_setting('invoices.merchant_id', true), '')::uuid;
end;

-- Superusers and members of invoices_admin may act for any merchant and, when acting for
-- none, see every merchant's rows (data teams, operators). `caller` is the querying role; it
-- counts only if the session may act as it, so nobody can claim another role's rights.
create function invoices_internal.admin_merchant_ids(caller name) returns uuid[]
language sql stable security definer
set search_path = pg_catalog
as $$
  select case
    when pg_has_role(session_user, caller, 'MEMBER')
         and (coalesce((select rolsuper from pg_roles where rolname = caller), false)
              or pg_has_role(caller, 'invoices_admin', 'MEMBER'))
    then (select coalesce(array_agg(id), '{}') from invoices_internal.merchants)
    else '{}'::uuid[]
  end
$$;

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

create function invoices.act_as(merchant_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  m invoices_internal.merchants;
begin
  if act_as.merchant_id is null then
    perform set_config('invoices.merchant_id', '', false);
    return null;
  end if;
  select * into m from invoices_internal.merchants where id = act_as.merchant_id;
  if not found then
    raise exception 'merchant % not found', act_as.merchant_id
      using errcode = 'P0002', hint = 'list merchants with: select id, name from invoices_internal.merchants';
  end if;
  perform set_config('invoices.merchant_id', m.id::text, false);
  return jsonb_build_object('id', m.id, 'name', m.name);
end
$$;
comment on function invoices.act_as(uuid) is
  'SQL door (admins only): act for this merchant for the rest of the session; row-level security and every invoices.* function then scope to it. act_as(null) stops. Returns {id, name}.';

