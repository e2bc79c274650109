-- Fresh database per run (pg_regress creates it): install the extension.
create extension invoices;
select extname, extversion ~ '^[0-9]+\.[0-9]+\.[0-9]+$' as versioned from pg_extension where extname = 'invoices';
-- Every function and view of the public schema has a COMMENT ON.
select p.proname as function_without_comment
  from pg_proc p
 where p.pronamespace = 'invoices'::regnamespace and obj_description(p.oid, 'pg_proc') is null;
select c.relname as view_without_comment
  from pg_class c
 where c.relnamespace = 'invoices'::regnamespace and c.relkind = 'v'
   and obj_description(c.oid, 'pg_class') is null;
-- Schema invoices holds functions and views only.
select relname, relkind from pg_class
 where relnamespace = 'invoices'::regnamespace and relkind not in ('v');
