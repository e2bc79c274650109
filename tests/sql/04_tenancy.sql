-- Each merchant sees only its own rows; numbers are per merchant; act_as is for admins.
\set SHOW_CONTEXT never
select invoices.create_merchant('Tenant A') ->> 'id' as a \gset
select invoices.create_merchant('Tenant B', invoice_prefix => 'B') ->> 'id' as b \gset
select invoices.act_as(:'a') ->> 'name' as acting;
select invoices.create_invoice(lines => '[{"description": "a1", "unit_price": 1}]') ->> 'invoice_number' as a_first;
select invoices.create_invoice(lines => '[{"description": "a2", "unit_price": 2}]') ->> 'id' as a2 \gset
select invoices.act_as(:'b') ->> 'name' as acting;
select invoices.create_invoice(lines => '[{"description": "b1", "unit_price": 1}]') ->> 'invoice_number' as b_first;
-- B sees only B's invoices, and A's invoice is "not found", never its data.
select invoice_number, customer_email from invoices.invoices order by invoice_number;
select count(*) as lines_visible from invoices.invoice_lines;
select set_config('regress.a2', :'a2', false) is not null as remembered;
do $$
begin
  perform invoices.invoice_status(current_setting('regress.a2'));
  raise notice 'B could read A''s invoice';
exception when no_data_found then
  raise notice 'invoice_status of A''s invoice as B: not found (%)', sqlstate;
end $$;
do $$
begin
  perform invoices.cancel_invoice(current_setting('regress.a2'));
  raise notice 'B could cancel A''s invoice';
exception when no_data_found then
  raise notice 'cancel_invoice of A''s invoice as B: not found (%)', sqlstate;
end $$;
-- A's counter is untouched by B: A continues at 0003.
select invoices.act_as(:'a') is not null as acting;
select invoices.create_invoice(lines => '[{"description": "a3", "unit_price": 3}]') ->> 'invoice_number' as a_third;
select count(*) as a_sees from invoices.invoices;
-- An admin acting for nobody sees every merchant (data teams).
select invoices.act_as(null);
select count(*) >= 4 as admin_sees_all from invoices.invoices;
-- Without a merchant, state changes are refused with a hint.
select invoices.create_invoice(lines => '[{"description": "x", "unit_price": 1}]');
-- act_as an unknown merchant
select invoices.act_as('00000000-0000-0000-0000-000000000000');

-- A non-admin role reaches neither the tables nor the admin functions, and its views are empty.
create role regress_outsider login;  -- (LOGIN: on Citus the coordinator connects to the workers as it)
grant usage on schema invoices to regress_outsider;
grant select on invoices.invoices to regress_outsider;
set role regress_outsider;
select count(*) as outsider_sees from invoices.invoices;
select * from invoices_internal.invoices;
select invoices.act_as(:'a');
select invoices.create_merchant('Sneaky');
-- nor can it switch merchants by hand
set invoices.merchant_id = :'a';
reset role;
-- Row-level security still scopes a role that was granted a table directly.
grant usage on schema invoices_internal to regress_outsider;
grant select on invoices_internal.invoices to regress_outsider;
set invoices.merchant_id = :'b';
set role regress_outsider;
select invoice_number from invoices_internal.invoices order by 1;
reset role;
reset invoices.merchant_id;
revoke all on invoices_internal.invoices from regress_outsider;
revoke all on schema invoices_internal from regress_outsider;
revoke all on invoices.invoices from regress_outsider;
revoke all on schema invoices from regress_outsider;
drop role regress_outsider;
-- Every SECURITY DEFINER function pins its search_path (helpers without the privilege do not
-- need to: a SET clause costs a GUC save/restore on every call).
select p.oid::regprocedure as definer_without_search_path
  from pg_proc p
 where p.pronamespace in ('invoices'::regnamespace, 'invoices_internal'::regnamespace)
   and p.prosecdef and not coalesce(p.proconfig @> '{search_path=pg_catalog}', false);
-- Row-level security is on for every tenant table (each has merchant_id, or is merchants).
select c.relname as tenant_table_without_rls
  from pg_class c
 where c.relnamespace = 'invoices_internal'::regnamespace and c.relkind = 'r'
   and (c.relname = 'merchants' or exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'merchant_id'))
   and not (c.relrowsecurity and exists (select 1 from pg_policy p where p.polrelid = c.oid));
