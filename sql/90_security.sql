-- ============================================================================================
-- invoices — privileges and row-level security
-- ============================================================================================
-- Nobody but the owner touches invoices_internal directly; the API is the functions and views
-- of schema invoices. Functions that write are SECURITY DEFINER with a pinned search_path and
-- scope every statement to the caller's merchant.

revoke all on schema invoices_internal from public;
revoke all on all tables in schema invoices_internal from public;
revoke execute on all functions in schema invoices_internal from public;
revoke execute on all functions in schema invoices from public;

-- Views and policies call these as the querying user (no schema USAGE is needed for that).
grant execute on function invoices_internal.visible_merchants() to public;
grant execute on function invoices_internal.current_merchant_id() to public;
grant execute on function invoices_internal.admin_merchant_ids(name) to public;

-- Admins (data teams, operators) use the whole SQL door.
grant usage on schema invoices to invoices_admin;
grant select on all tables in schema invoices to invoices_admin;
grant execute on all functions in schema invoices to invoices_admin;

-- Row-level security on every tenant table: a role that is granted a table directly still
-- sees only its merchant's rows. (The owner, who runs the SECURITY DEFINER functions, scopes
-- its statements itself.)
alter table invoices_internal.merchants enable row level security;
create policy merchant_scope on invoices_internal.merchants
  using (id = any ((select invoices_internal.visible_merchants())::uuid[]));

alter table invoices_internal.invoices enable row level security;
create policy merchant_scope on invoices_internal.invoices
  using (merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]));

alter table invoices_internal.invoice_lines enable row level security;
create policy merchant_scope on invoices_internal.invoice_lines
  using (merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]));

alter table invoices_internal.audit_log enable row level security;
create policy merchant_scope on invoices_internal.audit_log
  using (merchant_id = any ((select invoices_internal.visible_merchants())::uuid[]));
